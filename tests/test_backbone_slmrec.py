"""SLMRec backbone: toy runs (ID and --motor), parameter count by hand, ranking from fresh
embeddings, the self-supervised tasks, one modality, the adjacency variants."""
from functools import partial

import pytest
import torch

from mmrec_motor.quick_start import build_model, count_parameters
from tests.backbones import (build, check_id_table_run, check_scores_follow_parameters, motor_delta,
                             to_model, toy_batch, toy_config, train_steps, train_toy)

MODEL = "SLMRec"
PINNED = {"learning_rate": 0.001, "ssl_temp": 0.2, "ssl_alpha": 0.1, "reg": 0.001}

make_config = partial(toy_config, MODEL, PINNED)


@pytest.mark.parametrize("motor", [False, True])
def test_trains_two_epochs_on_toy(tmp_path, run_dirs, motor):
    result = train_toy(MODEL, PINNED, tmp_path, run_dirs, motor)
    check_id_table_run(result, PINNED, motor, id_table_params=300 * 64)


def test_parameter_count_by_hand(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    data, model, item = build(config)
    U, I, d, Dv, Dt = data.n_users, data.n_items, 64, 64, 32
    expected = (U * d + I * d                        # embedding_user, embedding_item
                + (Dv * d + d) + (Dt * d + d)        # v_dense, t_dense
                + 2 * (3 * d * d + d)                # user/item fusion layers on the 3-branch concat
                + 3 * (d * d + d)                    # FAC heads g_i_iv, g_v_iv, g_iv_iva
                + 2 * (d * (d // 2) + d // 2))       # g_iva_ivat, g_t_ivat
    assert count_parameters(model) == {"total": expected, "trainable": expected}
    assert item["id_table_params"] == I * d

    mmodel, mitem = build_model(make_config(tmp_path, run_dirs, motor=True), data)
    assert count_parameters(mmodel)["total"] == expected + motor_delta(mitem)
    assert mmodel.embedding_item.weight.shape == (I, d)
    assert mmodel.embedding_item(to_model(mmodel, torch.tensor([0, 5]))).shape == (2, d)


@pytest.mark.parametrize("motor", [False, True])
def test_ranking_uses_fresh_embeddings(tmp_path, run_dirs, motor):
    config = make_config(tmp_path, run_dirs, motor=motor)
    data, model, _ = build(config)
    train_steps(model, config, toy_batch(data))

    def fused_dot_products(scores, users):
        # scores are the fused embeddings' dot products, from a forward on the current parameters
        fused_users, fused_items, _ = model.compute()
        assert torch.allclose(scores, fused_users[users] @ fused_items.T)

    check_scores_follow_parameters(model, data.n_items, [lambda: model.embedding_user.weight.add_(0.1),
                                                         lambda: model.t_dense.weight.mul_(-1.0)],
                                   inspect=fused_dot_products)


def test_branches_are_separate_lightgcns(tmp_path, run_dirs):
    """The stacked propagation equals one LightGCN per branch over [E_u; item input]."""
    config = make_config(tmp_path, run_dirs)
    data, model, _ = build(config)
    inputs = model._item_inputs()
    stacked = model._propagate(inputs)
    d = model.latent_dim
    for b, items in enumerate(inputs):
        x = torch.cat([model.embedding_user.weight, items])
        total = x
        for _ in range(model.n_layers):
            x = torch.sparse.mm(model.norm_adj, x)
            total = total + x
        assert torch.allclose(stacked[:, b * d:(b + 1) * d], total / (model.n_layers + 1), atol=1e-6)


@pytest.mark.parametrize("task", ["FD", "FM", "FD+FM"])
def test_other_ssl_tasks_train(tmp_path, run_dirs, task):
    config = make_config(tmp_path, run_dirs, ssl_task=task)
    data, model, _ = build(config)
    assert not hasattr(model, "g_i_iv")
    train_steps(model, config, toy_batch(data), steps=2)


@pytest.mark.parametrize("absent, fusion", [("text_feature_file", "concat"), ("vision_feature_file", "mean")])
def test_one_modality(tmp_path, run_dirs, absent, fusion):
    config = make_config(tmp_path, run_dirs, mm_fusion_mode=fusion, **{absent: "absent.npy"})
    data, model, _ = build(config)
    assert len(model.modalities) == 1
    expected_in = 2 * 64 if fusion == "concat" else 64
    assert model.embedding_item_after_GCN.in_features == expected_in
    train_steps(model, config, toy_batch(data), steps=2)
    with torch.no_grad():
        assert torch.isfinite(model.full_sort_predict((to_model(model, torch.arange(5)),))).all()


@pytest.mark.parametrize("adj_type", ["plain", "norm", "gcmc", "pre", "mean"])
def test_adjacency_types(tmp_path, run_dirs, adj_type):
    config = make_config(tmp_path, run_dirs, adj_type=adj_type)
    data, model, _ = build(config)
    dense = model.norm_adj.to_dense().cpu()
    n = data.n_users + data.n_items
    inter = torch.zeros(n, n)
    coo = data.inter_matrix(form="coo")
    u, i = torch.from_numpy(coo.row).long(), torch.from_numpy(coo.col).long() + data.n_users
    inter[u, i] = 1.0
    inter[i, u] = 1.0
    deg = inter.sum(1)
    if adj_type == "plain":
        expected = inter
    elif adj_type == "norm":
        expected = (inter + torch.eye(n)) / (deg + 1)[:, None]
    elif adj_type == "gcmc":
        expected = inter / deg.clamp_min(1)[:, None]
    elif adj_type == "pre":
        inv = (deg + 1e-8).pow(-0.5)
        expected = inv[:, None] * inter * inv[None]
    else:
        expected = inter / deg.clamp_min(1)[:, None] + torch.eye(n)
    assert torch.allclose(dense, expected, atol=1e-6)
