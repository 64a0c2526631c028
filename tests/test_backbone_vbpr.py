"""VBPR backbone: toy runs (ID and --motor), parameter count by hand (both modalities and one),
evaluation reads the current parameters."""
from functools import partial

import pytest
import torch

from mmrec_motor.quick_start import build_model, count_parameters
from tests.backbones import (build, check_id_table_run, check_scores_follow_parameters, motor_delta,
                             to_model, toy_batch, toy_config, train_steps, train_toy)

MODEL = "VBPR"
PINNED = {"reg_weight": 1e-4}
D_V, D_T = 64, 32   # toy feature widths

make_config = partial(toy_config, MODEL, PINNED)


@pytest.mark.parametrize("motor", [False, True])
def test_trains_two_epochs_on_toy(tmp_path, run_dirs, motor):
    result = train_toy(MODEL, PINNED, tmp_path, run_dirs, motor)
    check_id_table_run(result, PINNED, motor, id_table_params=300 * 64)


@pytest.mark.parametrize("text_file, feat_dim", [("text_feat.npy", D_V + D_T), ("absent.npy", D_V)])
def test_parameter_count_by_hand(tmp_path, run_dirs, text_file, feat_dim):
    config = make_config(tmp_path, run_dirs, text_feature_file=text_file)
    data, model, item = build(config)
    U, I, d = data.n_users, data.n_items, 64
    # users [U, 2d] + item IDs [I, d] + item_linear (weight [d, D] + bias [d]); features are inputs
    expected = U * 2 * d + I * d + feat_dim * d + d
    assert count_parameters(model) == {"total": expected, "trainable": expected}
    assert item["id_table_params"] == I * d

    mconfig = make_config(tmp_path, run_dirs, motor=True, text_feature_file=text_file)
    mmodel, mitem = build_model(mconfig, data)
    assert count_parameters(mmodel)["total"] == expected + motor_delta(mitem)
    assert mmodel.i_embedding.shape == (I, d)


@pytest.mark.parametrize("motor", [False, True])
def test_evaluation_uses_current_parameters(tmp_path, run_dirs, motor):
    config = make_config(tmp_path, run_dirs, motor=motor)
    data, model, _ = build(config)
    train_steps(model, config, toy_batch(data))
    check_scores_follow_parameters(model, data.n_items, [lambda: model.u_embedding.add_(0.1),
                                                         lambda: model.item_linear.bias.add_(0.1)])


def test_batch_loss_equals_full_table_loss(tmp_path, run_dirs):
    """The loss on the batch's distinct items equals the one on rows of the full item table."""
    from mmrec_motor.models.common import bpr_loss, emb_loss

    config = make_config(tmp_path, run_dirs)
    _, model, _ = build(config)
    batch = to_model(model, torch.tensor([[0, 1, 2, 3], [10, 11, 10, 12], [11, 13, 14, 10]]))
    user_e, item_e = model.forward()
    u, p, n = user_e[batch[0]], item_e[batch[1]], item_e[batch[2]]
    full = bpr_loss((u * p).sum(1), (u * n).sum(1)) + 1e-4 * emb_loss(u, p, n)
    assert torch.allclose(model.calculate_loss(batch), full, atol=1e-6)
