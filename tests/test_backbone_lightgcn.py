"""LightGCN backbone: toy runs (ID and --motor), parameter count by hand, evaluation reads the
current parameters."""
from functools import partial

import pytest

from mmrec_motor.quick_start import build_model, count_parameters
from tests.backbones import (build, check_id_table_run, check_scores_follow_parameters, motor_delta,
                             toy_batch, toy_config, train_steps, train_toy)

MODEL = "LightGCN"
PINNED = {"n_layers": 2, "reg_weight": 1e-4}

make_config = partial(toy_config, MODEL, PINNED)


@pytest.mark.parametrize("motor", [False, True])
def test_trains_two_epochs_on_toy(tmp_path, run_dirs, motor):
    result = train_toy(MODEL, PINNED, tmp_path, run_dirs, motor)
    check_id_table_run(result, PINNED, motor, id_table_params=300 * 64)


def test_parameter_count_by_hand(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    data, model, item = build(config)
    U, I, d = data.n_users, data.n_items, 64
    # user table + item table (the propagation has no weights)
    expected = U * d + I * d
    assert count_parameters(model) == {"total": expected, "trainable": expected}
    assert item["id_table_params"] == I * d

    mconfig = make_config(tmp_path, run_dirs, motor=True)
    mmodel, mitem = build_model(mconfig, data)
    assert count_parameters(mmodel)["total"] == expected + motor_delta(mitem)
    assert "item_emb" in mmodel.embedding_dict and mmodel.embedding_dict["item_emb"].shape == (I, d)


@pytest.mark.parametrize("motor", [False, True])
def test_evaluation_uses_current_parameters(tmp_path, run_dirs, motor):
    config = make_config(tmp_path, run_dirs, motor=motor)
    data, model, _ = build(config)
    train_steps(model, config, toy_batch(data))
    check_scores_follow_parameters(model, data.n_items, [lambda: model.embedding_dict["user_emb"].add_(0.1)])
