"""MMGCN on toy: ID and --motor runs, the parameter count by hand, evaluation with current parameters."""
from functools import partial

import pytest
import torch

from mmrec_motor.quick_start import build_model
from tests.backbones import (build, check_joint_table_run, check_scores_follow_parameters, motor_delta,
                             n_parameters, random_batch, to_model, toy_config, train_steps, train_toy)

MODEL = "MMGCN"
PINNED = {"reg_weight": 0.001, "learning_rate": 0.001}
U, I, DV, DT, D, LV = 400, 300, 64, 32, 64, 256   # toy users, items, image/text dims; d; image latent

make_config = partial(toy_config, MODEL, PINNED)


def expected_params(with_v=True, with_t=True, layers=3):
    """By hand: the joint ID table + each modality's network."""
    def modality(feat_dim, latent):
        width = latent or feat_dim
        n = U * width                                   # user preferences P_m
        if latent:
            n += feat_dim * latent + latent             # projection Linear
        for layer in range(layers):
            w = width if layer == 0 else D
            n += w * w                                  # aggregation weight W^l
            n += w * D + D                              # linear_l
            n += (w + D) * D + D                        # gate over [h || x_hat]
        return n
    total = (U + I) * D                                 # id_embedding
    if with_v:
        total += modality(DV, LV)
    if with_t:
        total += modality(DT, None)
    return total


@pytest.mark.parametrize("motor", [False, True])
def test_toy_run_two_epochs(tmp_path, run_dirs, motor):
    result = train_toy(MODEL, PINNED, tmp_path, run_dirs, motor)
    check_joint_table_run(result, motor, id_table_params=I * D, adapter="joint:id_embedding",
                          extra_params=U * D)


def test_parameter_count_by_hand(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    data, model, item = build(config)
    assert isinstance(model.id_embedding, torch.nn.Parameter) and model.id_embedding.shape == (U + I, D)
    assert n_parameters(model) == expected_params()
    assert item == {"kind": "id", "params": I * D, "id_table_params": I * D}

    motor_model, motor_item = build_model(make_config(tmp_path, run_dirs, motor=True), data)
    # the joint table (item rows + user rows) leaves, MOTOR and the user rows (motor_user_rows) come in
    assert n_parameters(motor_model) == n_parameters(model) + motor_delta(motor_item, joint=True)
    assert motor_model.id_embedding.shape == (U + I, D)


def test_one_modality(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs, vision_feature_file="")
    data, model, _ = build(config)
    assert model.v_feat is None and n_parameters(model) == expected_params(with_v=False)
    loss = model.calculate_loss(to_model(model, torch.tensor([[0, 1], [data.train.items[0], 3], [5, 6]])))
    assert torch.isfinite(loss)
    assert model.full_sort_predict([to_model(model, torch.tensor([0, 1]))]).shape == (2, I)


def test_evaluation_uses_current_parameters(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    data, model, _ = build(config)
    generator = torch.Generator().manual_seed(0)
    before = model.id_embedding.detach().clone()
    train_steps(model, config, lambda: random_batch(generator, U, I))
    assert not torch.equal(before, model.id_embedding.detach())   # the ID table is trained
    check_scores_follow_parameters(model, I, [
        lambda: model.id_embedding[:U].add_(to_model(model, 0.5 * torch.randn(U, D, generator=generator)))],
        finite=False)
