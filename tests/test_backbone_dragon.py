"""DRAGON on toy: ID run, --motor refused, the parameter count by hand, the homogeneous graphs
(built by the model, cached under names with their parameters), evaluation with current parameters."""
import math
from functools import partial

import torch

from mmrec_motor.models.graphs import knn_graph
from tests.backbones import (build, check_motor_refused, check_scores_follow_parameters, n_parameters,
                             random_batch, to_model, toy_config, train_steps, train_toy)

MODEL = "DRAGON"
PINNED = {"reg_weight": 0.001, "learning_rate": 0.001, "aggr_mode": "add"}
U, I, DV, DT, D = 400, 300, 64, 32, 64   # toy users, items, image/text dims; d

make_config = partial(toy_config, MODEL, PINNED)


def expected_params(feat_dims=(DV, DT)):
    """By hand: per modality (user preferences, MLP D->4d, MLP_1 4d->d) + weight_u [U, 2, 1]."""
    return sum(U * D + (dim * 4 * D + 4 * D) + (4 * D * D + D) for dim in feat_dims) + U * 2


def test_toy_run_two_epochs(tmp_path, run_dirs):
    result = train_toy(MODEL, PINNED, tmp_path, run_dirs)
    assert math.isfinite(result["combinations"][0]["valid"]["recall@20"])
    assert result["item_representation"] == {"kind": "id", "params": 0, "id_table_params": 0}
    names = sorted(p.name for p in (tmp_path / "graphs").glob("*.pt"))
    assert len(names) == 2 and names[0].startswith("dragon_mm_adj_k10_w0.1_vt_")
    assert names[1].startswith("user_cooc_u400_k40_softmax_")


def test_motor_is_refused(tmp_path, run_dirs, capsys):
    check_motor_refused(MODEL, PINNED, tmp_path, run_dirs, capsys, "DRAGON has no item ID embedding table")


def test_parameter_count_and_shapes(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    _, model, item = build(config)
    assert n_parameters(model) == expected_params() and item["params"] == 0
    users, items = model.forward()
    assert users.shape == (U, 2 * D) and items.shape == (I, 2 * D)       # concatenated modalities
    want = 0.1 * knn_graph(model.v_feat, 10) + 0.9 * knn_graph(model.t_feat, 10)
    assert torch.allclose(model.mm_adj.to_dense(), want.to_dense())


def test_one_modality(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs, vision_feature_file="")
    data, model, _ = build(config)
    assert model.v_feat is None and n_parameters(model) == expected_params((DT,))
    assert torch.allclose(model.mm_adj.to_dense(), knn_graph(model.t_feat, 10).to_dense())
    assert list((tmp_path / "graphs").glob("dragon_mm_adj_k10_w1_t_*.pt"))
    batch = to_model(model, random_batch(torch.Generator().manual_seed(0), U, I))
    assert torch.isfinite(model.calculate_loss(batch))
    assert model.full_sort_predict([to_model(model, torch.tensor([0, 1]))]).shape == (2, I)


def test_evaluation_uses_current_parameters(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    _, model, _ = build(config)
    generator = torch.Generator().manual_seed(0)
    train_steps(model, config, lambda: random_batch(generator, U, I))
    check_scores_follow_parameters(model, I, [
        lambda: model.t_gcn.preference.add_(to_model(model, 0.5 * torch.randn(U, D, generator=generator)))],
        finite=False)
