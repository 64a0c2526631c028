"""POP and ContentKNN: hand-computed scores on a 3-user, 4-item dataset, the runtime's single
evaluation of an untrained model, and --motor refused."""
import json

import numpy as np
import pytest
import torch

from mmrec_motor.cli import main
from mmrec_motor.config import Config
from mmrec_motor.quick_start import build_model, load_data
from tests.conftest import write_inter

# user: train items / valid / test
ROWS = [(0, 0, 0, 0, 0), (0, 1, 0, 0, 0), (0, 2, 0, 0, 1), (0, 3, 0, 0, 2),
        (1, 1, 0, 0, 0), (1, 0, 0, 0, 1), (1, 3, 0, 0, 2),
        (2, 1, 0, 0, 0), (2, 2, 0, 0, 0), (2, 0, 0, 0, 2), (2, 3, 0, 0, 1)]
TEXT = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0]], np.float32)


@pytest.fixture
def tiny(tmp_path, run_dirs):
    write_inter(tmp_path / "data" / "tiny", "tiny", ROWS)
    np.save(tmp_path / "data" / "tiny" / "text_feat.npy", TEXT)
    return {"data_path": str(tmp_path / "data"), "vision_feature_file": "", **run_dirs}


def scores(model_name, overrides):
    config = Config(model_name, "tiny", overrides)
    data = load_data(config)
    model, item = build_model(config, data)
    with torch.no_grad():
        return model.full_sort_predict(torch.arange(3).unsqueeze(0)).numpy(), item


def test_pop_scores_are_training_counts(tiny):
    s, item = scores("POP", tiny)
    np.testing.assert_array_equal(s, [[1, 3, 1, 0]] * 3)       # item 1 trained by all three users
    assert item == {"kind": "id", "params": 0, "id_table_params": 0}


def test_content_knn_scores_by_hand(tiny):
    s, _ = scores("ContentKNN", tiny)
    x = TEXT - TEXT.mean(axis=0)          # centred, then each row to unit length
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    train = {0: [0, 1], 1: [1], 2: [1, 2]}
    for u, items in train.items():
        p = x[items].mean(axis=0)
        np.testing.assert_allclose(s[u], x @ (p / np.linalg.norm(p)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="content_modality='v': no feature file"):
        scores("ContentKNN", {**tiny, "content_modality": "v"})
    with pytest.raises(ValueError, match="expected one of all, v, t"):
        scores("ContentKNN", {**tiny, "content_modality": "audio"})


def test_untrained_models_are_evaluated_once(tiny, tmp_path):
    out = tmp_path / "pop.json"
    args = ["run", "-m", "POP", "-d", "tiny", f"--result_file={out}", "--topk=[1,2]", "--valid_metric=Recall@2"] + [f"--{k}={v}" for k, v in tiny.items()]
    assert main(args) == 0
    run = json.loads(out.read_text())["combinations"][0]
    assert (run["best_epoch"], run["epochs_run"], run["train_seconds"]) == (0, 0, [])
    # counts [1, 3, 1, 0]; training items masked: user 0 ranks [2, 3] (test item 3 second), user 1
    # {0, 2} tied then 3 (test item 3 third), user 2 [0, 3] (test item 0 first)
    assert run["test"]["recall@1"] == pytest.approx(1 / 3, abs=1e-4)
    assert run["test"]["recall@2"] == pytest.approx(2 / 3, abs=1e-4)
    assert main(args + ["--motor=True"]) == 2
