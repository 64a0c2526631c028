"""LGMRec backbone: toy runs (ID and --motor), parameter count by hand, evaluation reads the current
parameters, both modalities required, the contrastive term."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from mmrec_motor.cli import main
from mmrec_motor.config import Config
from mmrec_motor.models.lgmrec import _info_nce
from mmrec_motor.quick_start import build_model, count_parameters, load_data
from mmrec_motor.trainer import build_optimizer

MODEL = "LGMRec"
PINNED = {"n_ui_layers": 2, "n_mm_layers": 2, "n_hyper_layer": 1, "hyper_num": 4, "keep_rate": 0.5,
          "alpha": 0.3, "cl_weight": 1e-4, "reg_weight": 1e-6}
D_V, D_T = 64, 32   # toy feature widths


def make_config(tmp_path, run_dirs, motor=False, **extra):
    values = {"data_path": str(tmp_path / "data"), "motor": motor, "seed": 999, **run_dirs, **PINNED, **extra}
    return Config(MODEL, "toy", values)


def cli_args(tmp_path, run_dirs, out):
    return (["run", "-m", MODEL, "-d", "toy", "--epochs=2", f"--data_path={tmp_path / 'data'}",
             f"--result_file={out}"] + [f"--{k}={v}" for k, v in {**run_dirs, **PINNED}.items()])


@pytest.mark.parametrize("motor", [False, True])
def test_trains_two_epochs_on_toy(tmp_path, run_dirs, motor):
    out = tmp_path / "r.json"
    assert main(cli_args(tmp_path, run_dirs, out) + (["--motor"] if motor else [])) == 0
    result = json.loads(out.read_text())
    combo = result["combinations"][0]
    assert len(result["combinations"]) == 1 and combo["parameters"] == {"seed": 999, **PINNED}
    assert math.isfinite(combo["valid"]["recall@20"]) and math.isfinite(combo["test"]["recall@20"])
    item = result["item_representation"]
    assert item["kind"] == ("motor" if motor else "id")
    assert item["id_table_params"] == 300 * 64
    if not motor:
        assert item["params"] == 300 * 64


def test_needs_both_modalities(tmp_path, run_dirs, capsys):
    out = tmp_path / "r.json"
    assert main(cli_args(tmp_path, run_dirs, out) + ["--text_feature_file=absent.npy"]) == 2
    err = capsys.readouterr().err
    assert "LGMRec needs both image and text features" in err and "text" in err


def test_parameter_count_by_hand(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    data = load_data(config)
    model, item = build_model(config, data)
    U, I, d, H = data.n_users, data.n_items, 64, 4
    # trainable: users + item IDs + per modality a projection D_m x d and hyperedge weights D_m x H;
    # frozen (counted in the total, as MMRec's from_pretrained(freeze=True)): the feature tables I x D_m
    trainable = U * d + I * d + sum(D * d + D * H for D in (D_V, D_T))
    frozen = I * (D_V + D_T)
    assert count_parameters(model) == {"total": trainable + frozen, "trainable": trainable}
    assert item["id_table_params"] == I * d

    mconfig = make_config(tmp_path, run_dirs, motor=True)
    mmodel, mitem = build_model(mconfig, data)
    extra = mitem["motor"]["extra_params"]
    assert extra == 0
    delta = - mitem["id_table_params"] + mitem["params"] + extra
    assert count_parameters(mmodel) == {"total": trainable + frozen + delta, "trainable": trainable + delta}


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

    def scores():
        torch.manual_seed(0)          # the same Gumbel noise in every call
        return model.full_sort_predict((users,))

    with torch.no_grad():
        before = scores()
        assert before.shape == (10, data.n_items) and torch.isfinite(before).all()
        assert torch.equal(before, scores())
        model.user_embedding.weight.add_(0.1)
        after = scores()
        assert not torch.allclose(before, after)
        model.v_hyper.add_(0.1)
        assert not torch.allclose(after, scores())


def test_info_nce_is_the_softmax_over_all_candidates():
    torch.manual_seed(0)
    anchor, candidates, targets = torch.randn(5, 8), torch.randn(12, 8), torch.tensor([0, 3, 3, 7, 11])
    a, c = F.normalize(anchor), F.normalize(candidates)
    pos = torch.exp((a * c[targets]).sum(1) / 0.2)
    total = torch.exp(a @ c.T / 0.2).sum(1)
    assert torch.allclose(_info_nce(anchor, candidates, targets, 0.2), -torch.log(pos / total).sum(), atol=1e-5)
