"""DualGNN on toy: ID run, --motor refused, the parameter count by hand, the user co-occurrence graph
(built by the model, cached), evaluation with current parameters."""
import math
from functools import partial

import numpy as np
import torch

from mmrec_motor.quick_start import build_model
from tests.backbones import (build, check_motor_refused, check_scores_follow_parameters, n_parameters,
                             random_batch, to_model, toy_config, train_steps, train_toy)

MODEL = "DualGNN"
PINNED = {"reg_weight": 0.001, "learning_rate": 0.001, "aggr_mode": "add"}
U, I, DV, DT, D, K = 400, 300, 64, 32, 64, 40   # toy users, items, image/text dims; d; user_knn_k

make_config = partial(toy_config, MODEL, PINNED)


def expected_params(feat_dims=(DV, DT)):
    """By hand: per modality (user preferences, MLP D->4d, MLP_1 4d->d) + weight_u + weight_i."""
    total = sum(U * D + (dim * 4 * D + 4 * D) + (4 * D * D + D) for dim in feat_dims)
    return total + U * 2 + I * 2


def test_toy_run_two_epochs(tmp_path, run_dirs):
    result = train_toy(MODEL, PINNED, tmp_path, run_dirs)
    assert math.isfinite(result["combinations"][0]["valid"]["recall@20"])
    assert result["item_representation"] == {"kind": "id", "params": 0, "id_table_params": 0}
    assert list((tmp_path / "graphs").glob("user_cooc_u400_k40_softmax_*.pt"))


def test_motor_is_refused(tmp_path, run_dirs, capsys):
    check_motor_refused(MODEL, PINNED, tmp_path, run_dirs, capsys, "DualGNN has no item ID embedding table")


def test_parameter_count_by_hand(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    _, model, item = build(config)
    assert n_parameters(model) == expected_params()
    assert item["params"] == 0


def test_one_modality(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs, text_feature_file="")
    data, model, _ = build(config)
    assert model.t_feat is None and n_parameters(model) == expected_params((DV,))
    batch = to_model(model, random_batch(torch.Generator().manual_seed(0), U, I))
    assert torch.isfinite(model.calculate_loss(batch))
    assert model.full_sort_predict([to_model(model, torch.tensor([0, 1]))]).shape == (2, I)


def test_user_graph_is_top_k_cooccurrence_and_cached(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    data, model, _ = build(config)
    graph = model.user_graph.to_dense().cpu()
    R = data.inter_matrix(form="csr").toarray()
    counts = R @ R.T
    np.fill_diagonal(counts, 0)
    for u in range(0, U, 37):                               # a reference, one user at a time
        nonzero = np.flatnonzero(counts[u])
        ranked = nonzero[np.lexsort((nonzero, -counts[u, nonzero]))][:K]
        want = torch.zeros(U)
        want[ranked] = torch.softmax(torch.tensor(counts[u, ranked], dtype=torch.float32), 0)
        assert torch.allclose(graph[u], want, atol=1e-6)
    assert torch.allclose(graph.sum(1)[graph.sum(1) > 0], torch.ones(1))
    files = list((tmp_path / "graphs").glob("user_cooc_*.pt"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    again, _ = build_model(config, data)                    # read back from the cache
    assert files[0].stat().st_mtime_ns == stamp
    assert torch.equal(again.user_graph.to_dense().cpu(), graph)


def test_evaluation_uses_current_parameters(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    _, model, _ = build(config)
    generator = torch.Generator().manual_seed(0)
    train_steps(model, config, lambda: random_batch(generator, U, I))
    check_scores_follow_parameters(model, I, [
        lambda: model.v_gcn.preference.add_(to_model(model, 0.5 * torch.randn(U, D, generator=generator)))],
        finite=False)
