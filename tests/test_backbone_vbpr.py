"""VBPR backbone: toy runs (ID and --motor), parameter count by hand (both modalities and one),
evaluation reads the current parameters."""
import json
import math

import pytest
import torch

from mmrec_motor.cli import main
from mmrec_motor.config import Config
from mmrec_motor.quick_start import build_model, count_parameters, load_data
from mmrec_motor.trainer import build_optimizer

MODEL = "VBPR"
PINNED = {"reg_weight": 1e-4}
D_V, D_T = 64, 32   # toy feature widths


def make_config(tmp_path, run_dirs, motor=False, **extra):
    values = {"data_path": str(tmp_path / "data"), "motor": motor, "seed": 999, **run_dirs, **PINNED, **extra}
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


@pytest.mark.parametrize("text_file, feat_dim", [("text_feat.npy", D_V + D_T), ("absent.npy", D_V)])
def test_parameter_count_by_hand(tmp_path, run_dirs, text_file, feat_dim):
    config = make_config(tmp_path, run_dirs, text_feature_file=text_file)
    data = load_data(config)
    model, item = build_model(config, data)
    U, I, d = data.n_users, data.n_items, 64
    # users [U, 2d] + item IDs [I, d] + item_linear (weight [d, D] + bias [d]); features are inputs
    expected = U * 2 * d + I * d + feat_dim * d + d
    assert count_parameters(model) == {"total": expected, "trainable": expected}
    assert item["id_table_params"] == I * d

    mconfig = make_config(tmp_path, run_dirs, motor=True, text_feature_file=text_file)
    mmodel, mitem = build_model(mconfig, data)
    extra = mitem["motor"]["extra_params"]
    assert extra == 0
    assert count_parameters(mmodel)["total"] == expected - mitem["id_table_params"] + mitem["params"] + extra
    assert mmodel.i_embedding.shape == (I, d)


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
        model.u_embedding.add_(0.1)
        after = model.full_sort_predict((users,))
        assert not torch.allclose(before, after)
        model.item_linear.bias.add_(0.1)
        assert not torch.allclose(after, model.full_sort_predict((users,)))


def test_batch_loss_equals_full_table_loss(tmp_path, run_dirs):
    """The loss on the batch's distinct items equals the one on rows of the full item table."""
    from mmrec_motor.models.common import bpr_loss, emb_loss

    config = make_config(tmp_path, run_dirs)
    model, _ = build_model(config, load_data(config))
    batch = torch.tensor([[0, 1, 2, 3], [10, 11, 10, 12], [11, 13, 14, 10]])
    user_e, item_e = model.forward()
    u, p, n = user_e[batch[0]], item_e[batch[1]], item_e[batch[2]]
    full = bpr_loss((u * p).sum(1), (u * n).sum(1)) + 1e-4 * emb_loss(u, p, n)
    assert torch.allclose(model.calculate_loss(batch), full, atol=1e-6)
