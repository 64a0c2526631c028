"""GRCN on toy: ID and --motor runs, the parameter count by hand, the refined graph's edge weights,
evaluation with current parameters."""
from functools import partial

import pytest
import torch

from mmrec_motor.models.grcn import segment_softmax
from mmrec_motor.quick_start import build_model
from tests.backbones import (build, check_joint_table_run, check_scores_follow_parameters, motor_delta,
                             n_parameters, random_batch, to_model, toy_config, train_steps, train_toy)

MODEL = "GRCN"
PINNED = {"reg_weight": 0.001, "learning_rate": 0.001}
U, I, DV, DT, D, C = 400, 300, 64, 32, 64, 64   # toy users, items, image/text dims; d; latent_embedding

make_config = partial(toy_config, MODEL, PINNED)


def expected_params(feat_dims=(DV, DT)):
    """By hand: joint ID table + per modality (user prototypes, MLP) + per-node modality confidences."""
    total = (U + I) * D                                  # id_gcn.id_embedding
    for dim in feat_dims:
        total += U * C + dim * C + C                     # preference, MLP
    total += (U + I) * len(feat_dims)                    # model_specific_conf
    return total


@pytest.mark.parametrize("motor", [False, True])
def test_toy_run_two_epochs(tmp_path, run_dirs, motor):
    result = train_toy(MODEL, PINNED, tmp_path, run_dirs, motor)
    check_joint_table_run(result, motor, id_table_params=I * D, adapter="joint:id_gcn.id_embedding",
                          extra_params=U * D)


def test_parameter_count_by_hand(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    data, model, item = build(config)
    assert isinstance(model.id_gcn.id_embedding, torch.nn.Parameter)
    assert model.id_gcn.id_embedding.shape == (U + I, D)
    assert n_parameters(model) == expected_params()
    assert item == {"kind": "id", "params": I * D, "id_table_params": I * D}

    motor_model, motor_item = build_model(make_config(tmp_path, run_dirs, motor=True), data)
    # the joint table's user rows come back as motor_user_rows (the adapter's extra parameters)
    assert n_parameters(motor_model) == n_parameters(model) + motor_delta(motor_item, joint=True)
    assert motor_model.id_gcn.id_embedding.shape == (U + I, D)


def test_one_modality(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs, vision_feature_file="")
    data, model, _ = build(config)
    assert model.v_feat is None and n_parameters(model) == expected_params((DT,))
    loss = model.calculate_loss(to_model(model, random_batch(torch.Generator().manual_seed(0), U, I)))
    assert torch.isfinite(loss)
    assert model.full_sort_predict([to_model(model, torch.tensor([0, 1]))]).shape == (2, I)


def test_segment_softmax_matches_a_loop():
    scores = torch.tensor([1.0, 2.0, 3.0, -1.0, 0.5])
    groups = torch.tensor([0, 0, 2, 2, 2])
    got = segment_softmax(scores, groups, 3)
    want = torch.cat([torch.softmax(scores[:2], 0), torch.softmax(scores[2:], 0)])
    assert torch.allclose(got, want)


def test_refined_edge_weights_get_gradients_and_prototypes_route(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    _, model, _ = build(config)
    model.calculate_loss(to_model(model, random_batch(torch.Generator().manual_seed(1), U, I))).backward()
    # the confidences only reach the loss through the sparse edge weights of the ID graph
    assert model.model_specific_conf.grad is not None and model.model_specific_conf.grad.abs().sum() > 0
    # routing moves the user prototypes away from normalize(P)
    content, _ = model.v_gcn(model.v_feat, (model.src, model.dst, model.n_user_edges))
    model.v_gcn.n_routing = 0
    unrouted, _ = model.v_gcn(model.v_feat, (model.src, model.dst, model.n_user_edges))
    assert not torch.allclose(content[:U], unrouted[:U])


def test_evaluation_uses_current_parameters(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    data, model, _ = build(config)
    generator = torch.Generator().manual_seed(0)
    before = model.id_gcn.id_embedding.detach().clone()
    train_steps(model, config, lambda: random_batch(generator, U, I))
    assert not torch.equal(before, model.id_gcn.id_embedding.detach())
    check_scores_follow_parameters(model, I, [
        lambda: model.id_gcn.id_embedding[:U].add_(to_model(model, 0.5 * torch.randn(U, D, generator=generator)))],
        finite=False)
