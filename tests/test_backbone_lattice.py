"""LATTICE backbone: toy runs (ID and --motor), parameter count by hand, evaluation rebuilds the
learned graph from the current parameters, the sparse graph equals the dense construction."""
from functools import partial

import pytest
import torch

from mmrec_motor.quick_start import build_model, count_parameters
from tests.backbones import (build, check_id_table_run, check_scores_follow_parameters, motor_delta,
                             to_model, toy_batch, toy_config, train_steps, train_toy)

MODEL = "LATTICE"
PINNED = {"reg_weight": 1e-4, "learning_rate": 0.001}

make_config = partial(toy_config, MODEL, PINNED)


@pytest.mark.parametrize("motor", [False, True])
def test_trains_two_epochs_on_toy(tmp_path, run_dirs, motor):
    result = train_toy(MODEL, PINNED, tmp_path, run_dirs, motor)
    check_id_table_run(result, PINNED, motor, id_table_params=300 * 64)


def test_parameter_count_by_hand(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    data, model, item = build(config)
    U, I, d, f, Dv, Dt = data.n_users, data.n_items, 64, 64, 64, 32
    # user + item tables, the raw feature tables (trainable), the two projections, modal_weight [2]
    # (cf_model lightgcn has no layer weights)
    expected = U * d + I * d + I * Dv + I * Dt + (Dv * f + f) + (Dt * f + f) + 2
    assert count_parameters(model) == {"total": expected, "trainable": expected}
    assert item["id_table_params"] == I * d

    mmodel, mitem = build_model(make_config(tmp_path, run_dirs, motor=True), data)
    assert count_parameters(mmodel)["total"] == expected + motor_delta(mitem)
    assert mmodel.item_id_embedding.weight.shape == (I, d)


def test_parameter_count_ngcf(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs, cf_model="ngcf")
    data, model, _ = build(config)
    U, I, d, f, Dv, Dt = data.n_users, data.n_items, 64, 64, 64, 32
    layers = 2 * 2 * (d * d + d)                # GC and Bi linear layers for weight_size [64, 64]
    expected = U * d + I * d + I * Dv + I * Dt + (Dv * f + f) + (Dt * f + f) + 2 + layers
    assert count_parameters(model)["total"] == expected


@pytest.mark.parametrize("motor", [False, True])
def test_evaluation_uses_current_parameters(tmp_path, run_dirs, motor):
    config = make_config(tmp_path, run_dirs, motor=motor)
    data, model, _ = build(config)
    train_steps(model, config, toy_batch(data), pre_epoch=True)
    check_scores_follow_parameters(model, data.n_items, [
        lambda: model.user_embedding.weight.add_(0.1),
        # the learned graph is rebuilt from the current projection at evaluation
        lambda: model.image_trs.weight.mul_(-1.0)])


def test_learned_graph_matches_the_dense_construction(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    data, model, _ = build(config)

    def dense_knn(x, k):
        unit = x / x.norm(dim=1, keepdim=True)
        sims = unit @ unit.T
        values, index = sims.topk(k, dim=-1)
        return torch.zeros_like(sims).scatter_(-1, index, values)

    def sym(a):
        inv = a.sum(-1).pow(-0.5)
        return inv[:, None] * a * inv[None]

    k, lam = model.knn_k, model.lambda_coeff
    w = torch.softmax(model.modal_weight, 0)
    image = model.image_trs(model.image_embedding.weight)
    text = model.text_trs(model.text_embedding.weight)
    reference = ((1 - lam) * sym(w[0] * dense_knn(image, k) + w[1] * dense_knn(text, k))
                 + lam * (w[0] * sym(dense_knn(model.v_feat, k)) + w[1] * sym(dense_knn(model.t_feat, k))))
    graph = model.build_graph()
    assert graph.is_sparse and graph._nnz() <= 4 * data.n_items * k
    assert torch.allclose(graph.to_dense(), reference, atol=1e-6)
    # the gradient reaches modal_weight and the projections through the sparse graph
    torch.sparse.mm(graph, model.item_id_embedding.weight).sum().backward()
    assert model.modal_weight.grad.abs().sum() > 0 and model.text_trs.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("cf_model", ["mf", "ngcf"])
def test_other_cf_models_and_one_modality(tmp_path, run_dirs, cf_model):
    config = make_config(tmp_path, run_dirs, cf_model=cf_model, text_feature_file="absent.npy")
    data, model, _ = build(config)
    assert model.t_feat is None and not hasattr(model, "text_trs")
    train_steps(model, config, toy_batch(data), steps=2, pre_epoch=True)
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model.full_sort_predict((to_model(model, torch.arange(5)),))).all()
