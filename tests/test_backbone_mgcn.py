"""MGCN backbone: toy runs (ID and --motor), parameter count by hand, evaluation reads the current
parameters, both modalities required, InfoNCE and the user-item block."""
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from mmrec_motor.data.loader import load_data
from mmrec_motor.models.mgcn import info_nce
from mmrec_motor.quick_start import build_model, count_parameters
from tests.backbones import (build, check_id_table_run, check_scores_follow_parameters, motor_delta,
                             toy_batch, toy_config, train_steps, train_toy)

MODEL = "MGCN"
PINNED = {"cl_loss": 0.01}

make_config = partial(toy_config, MODEL, PINNED)


@pytest.mark.parametrize("motor", [False, True])
def test_trains_two_epochs_on_toy(tmp_path, run_dirs, motor):
    result = train_toy(MODEL, PINNED, tmp_path, run_dirs, motor)
    check_id_table_run(result, PINNED, motor, id_table_params=300 * 64)


def test_parameter_count_by_hand(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    data, model, item = build(config)
    U, I, d, Dv, Dt = data.n_users, data.n_items, 64, 64, 32
    expected = (U * d + I * d                  # user and item ID tables
                + I * Dv + I * Dt              # raw feature tables (trainable)
                + (Dv * d + d) + (Dt * d + d)  # image_trs, text_trs
                + (d * d + d) + d              # query_common: Linear(d, d), Linear(d, 1, no bias)
                + 4 * (d * d + d))             # gate_v, gate_t, gate_image_prefer, gate_text_prefer
    assert count_parameters(model) == {"total": expected, "trainable": expected}
    assert item["id_table_params"] == I * d

    mmodel, mitem = build_model(make_config(tmp_path, run_dirs, motor=True), data)
    assert count_parameters(mmodel)["total"] == expected + motor_delta(mitem)
    assert mmodel.item_id_embedding.weight.shape == (I, d)


@pytest.mark.parametrize("motor", [False, True])
def test_evaluation_uses_current_parameters(tmp_path, run_dirs, motor):
    config = make_config(tmp_path, run_dirs, motor=motor)
    data, model, _ = build(config)
    train_steps(model, config, toy_batch(data))
    check_scores_follow_parameters(model, data.n_items, [lambda: model.user_embedding.weight.add_(0.1),
                                                         lambda: model.gate_v[0].weight.mul_(-1.0)])


def test_needs_both_modalities(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs, text_feature_file="absent.npy")
    data = load_data(config)
    with pytest.raises(ValueError, match="MGCN needs both image and text"):
        build_model(config, data)


def test_user_item_block_and_info_nce(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    data, model, _ = build(config)
    U = data.n_users
    assert torch.allclose(model.R.to_dense(), model.norm_adj.to_dense()[:U, U:])
    a, b = torch.randn(6, 8), torch.randn(6, 8)
    sims = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    expected = -torch.log(torch.exp(sims.diagonal() / 0.2) / torch.exp(sims / 0.2).sum(1)).mean()
    assert torch.allclose(info_nce(a, b, 0.2), expected, atol=1e-6)
