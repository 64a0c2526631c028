"""MGCN backbone: toy runs (ID and --motor), parameter count by hand, evaluation reads the current
parameters, both modalities required, InfoNCE and the user-item block."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from mmrec_motor.cli import main
from mmrec_motor.config import Config
from mmrec_motor.models.mgcn import info_nce
from mmrec_motor.quick_start import build_model, count_parameters, load_data
from mmrec_motor.trainer import build_optimizer

MODEL = "MGCN"
PINNED = {"cl_loss": 0.01}


def make_config(tmp_path, run_dirs, motor=False, **extra):
    values = {"data_path": str(tmp_path / "data"), "motor": motor, "seed": 999, **run_dirs, **PINNED,
              **extra}
    return Config(MODEL, "toy", values)


@pytest.mark.parametrize("motor", [False, True])
def test_trains_two_epochs_on_toy(tmp_path, run_dirs, motor):
    out = tmp_path / "r.json"
    args = ["run", "-m", MODEL, "-d", "toy", "--epochs=2", f"--data_path={tmp_path / 'data'}",
            f"--result_file={out}"] + [f"--{k}={v}" for k, v in {**run_dirs, **PINNED}.items()]
    assert main(args + (["--motor"] if motor else [])) == 0
    result = json.loads(out.read_text())
    combo = result["combinations"][0]
    assert len(result["combinations"]) == 1 and combo["parameters"] == {"seed": 999, **PINNED}
    assert math.isfinite(combo["valid"]["recall@20"]) and math.isfinite(combo["test"]["recall@20"])
    item = result["item_representation"]
    assert item["kind"] == ("motor" if motor else "id")
    assert item["id_table_params"] == 300 * 64
    if not motor:
        assert item["params"] == 300 * 64


def test_parameter_count_by_hand(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    data = load_data(config)
    model, item = build_model(config, data)
    U, I, d, Dv, Dt = data.n_users, data.n_items, 64, 64, 32
    expected = (U * d + I * d                  # user and item ID tables
                + I * Dv + I * Dt              # raw feature tables (trainable)
                + (Dv * d + d) + (Dt * d + d)  # image_trs, text_trs
                + (d * d + d) + d              # query_common: Linear(d, d), Linear(d, 1, no bias)
                + 4 * (d * d + d))             # gate_v, gate_t, gate_image_prefer, gate_text_prefer
    assert count_parameters(model) == {"total": expected, "trainable": expected}
    assert item["id_table_params"] == I * d

    mmodel, mitem = build_model(make_config(tmp_path, run_dirs, motor=True), data)
    extra = mitem["motor"]["extra_params"]
    assert extra == 0
    assert count_parameters(mmodel)["total"] == expected - mitem["id_table_params"] + mitem["params"] + extra
    assert mmodel.item_id_embedding.weight.shape == (I, d)


@pytest.mark.parametrize("motor", [False, True])
def test_evaluation_uses_current_parameters(tmp_path, run_dirs, motor):
    config = make_config(tmp_path, run_dirs, motor=motor)
    data = load_data(config)
    model, _ = build_model(config, data)
    optimizer = build_optimizer(config, model)
    batch = torch.tensor([[0, 1, 2, 3], data.train.items[:4].tolist(), [5, 6, 7, 8]])
    for _ in range(3):
        optimizer.zero_grad()
        loss = model.calculate_loss(batch)
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
    model.eval()
    users = torch.arange(10)
    with torch.no_grad():
        before = model.full_sort_predict((users,))
        assert before.shape == (10, data.n_items) and torch.isfinite(before).all()
        model.user_embedding.weight.add_(0.1)
        after_user = model.full_sort_predict((users,))
        model.gate_v[0].weight.mul_(-1.0)
        after_gate = model.full_sort_predict((users,))
    assert not torch.allclose(before, after_user)
    assert not torch.allclose(after_user, after_gate)


def test_needs_both_modalities(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs, text_feature_file="absent.npy")
    data = load_data(config)
    with pytest.raises(ValueError, match="MGCN needs both image and text"):
        build_model(config, data)


def test_user_item_block_and_info_nce(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    data = load_data(config)
    model, _ = build_model(config, data)
    U = data.n_users
    assert torch.allclose(model.R.to_dense(), model.norm_adj.to_dense()[:U, U:])
    a, b = torch.randn(6, 8), torch.randn(6, 8)
    sims = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    expected = -torch.log(torch.exp(sims.diagonal() / 0.2) / torch.exp(sims / 0.2).sum(1)).mean()
    assert torch.allclose(info_nce(a, b, 0.2), expected, atol=1e-6)
