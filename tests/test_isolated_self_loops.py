"""``isolated_self_loops``: a node without a training edge keeps its own embedding through a graph
backbone's layers (models/graphs.py), on under the inductive cold-start protocol only (``auto``)."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mmrec_motor.config import Config, ConfigError
from mmrec_motor.keys import run_identity
from mmrec_motor.models.graphs import (isolated_self_loops_on, normalized_interaction_graph,
                                       with_isolated_self_loops)
from mmrec_motor.models.slmrec import slmrec_adjacency
from tests.backbones import build, toy_config

# 2 users, 3 items: user 0 - items 0, 1; user 1 - item 1; item 2 has no edge.
INTER = sp.coo_matrix((np.ones(3), ([0, 0, 1], [0, 1, 1])), shape=(2, 3))


def test_normalised_graph_by_hand():
    plain = normalized_interaction_graph(INTER, 2, 3, "cpu").to_dense()
    looped = normalized_interaction_graph(INTER, 2, 3, "cpu", isolated_self_loops=True).to_dense()
    # degrees: user 0: 2, user 1: 1, item 0: 1, item 1: 2, item 2: 0 -> nodes 0..4
    expected = torch.zeros(5, 5)
    for u, i in [(0, 0), (0, 1), (1, 1)]:
        du, di = [2, 1][u], [1, 2, 0][i]
        expected[u, 2 + i] = expected[2 + i, u] = 1.0 / np.sqrt(du * di)
    torch.testing.assert_close(plain, expected)
    expected[4, 4] = 1.0
    torch.testing.assert_close(looped, expected)


def test_only_empty_rows_get_a_loop():
    adj = sp.csr_matrix(np.array([[0.0, 0.5, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32))
    out = with_isolated_self_loops(adj).toarray()
    np.testing.assert_array_equal(out, [[0.0, 0.5, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 1.0]])
    full = sp.csr_matrix(np.eye(2, dtype=np.float32))
    np.testing.assert_array_equal(with_isolated_self_loops(full).toarray(), np.eye(2))


@pytest.mark.parametrize("adj_type", ["pre", "gcmc", "plain"])
def test_slmrec_adjacency_loops_its_isolated_item(adj_type):
    plain = slmrec_adjacency(INTER, 2, 3, adj_type, "cpu").to_dense()
    looped = slmrec_adjacency(INTER, 2, 3, adj_type, "cpu", isolated_self_loops=True).to_dense()
    assert plain[4].abs().sum() == 0
    diff = looped - plain
    assert diff[4, 4] == 1.0 and diff.abs().sum() == 1.0


@pytest.mark.parametrize("value, ratio, expected", [("auto", 0.0, False), ("auto", 0.1, True),
                                                    (True, 0.0, True), (False, 0.1, False)])
def test_auto_follows_the_cold_start_protocol(value, ratio, expected):
    assert isolated_self_loops_on({"isolated_self_loops": value, "cold_item_ratio": ratio}) is expected


def test_bad_value_is_named(tmp_path, run_dirs):
    with pytest.raises(ConfigError, match="'isolated_self_loops' must be True, False or auto, got 'yes'"):
        Config("LightGCN", "toy", {"data_path": str(tmp_path), "isolated_self_loops": "yes", **run_dirs})


def test_run_identity_of_an_ordinary_run_is_unchanged():
    base = {"model": "LightGCN", "learning_rate": 0.001, "cold_item_ratio": 0.0}
    assert run_identity({**base, "isolated_self_loops": "auto"}) == run_identity(base)
    assert run_identity({**base, "isolated_self_loops": True}) != run_identity(base)
    cold = {**base, "cold_item_ratio": 0.1}
    assert run_identity({**cold, "isolated_self_loops": "auto"}) != run_identity(cold)


@pytest.mark.parametrize("loops, factor", [(True, 1.0), (False, 1.0 / 3)])
def test_lightgcn_held_out_item_keeps_its_embedding(tmp_path, run_dirs, loops, factor):
    """n_layers = 2: a held-out item's output is its layer-0 row with the loop, 1/3 of it without."""
    config = toy_config("LightGCN", {"n_layers": 2, "reg_weight": 1e-4}, tmp_path, run_dirs,
                        cold_item_ratio=0.1, isolated_self_loops=loops)
    data, model, _ = build(config)
    cold = torch.as_tensor(data.cold_items)
    assert len(cold) > 0
    with torch.no_grad():
        _, items = model.forward()
        ego = model.embedding_dict["item_emb"]
        torch.testing.assert_close(items[cold], ego[cold] * factor)
        warm = torch.as_tensor(np.setdiff1d(np.unique(data.train.items), data.cold_items))
        assert not torch.allclose(items[warm], ego[warm] * factor)


def test_load_run_overrides_the_graph_rule_and_cold_scale_matches_it(tmp_path, run_dirs):
    """A finished LightGCN cold-start run (K = 1, loops on by auto), reloaded with the loops off: the
    held-out rows of the item table halve, and benchmarks/cold_scale.py's factor 2 restores them."""
    import importlib.util

    from mmrec_motor.quick_start import load_run, quick_start
    from tests.conftest import REPO

    config = Config("LightGCN", "toy", {"data_path": str(tmp_path / "data"), "epochs": 2, "verbose": False,
                                        "num_threads": 1, "n_layers": 1, "reg_weight": 1e-4,
                                        "cold_item_ratio": 0.1, **run_dirs})
    result = quick_start(config)
    path = result["combinations"][result["chosen"]]["checkpoint"]
    looped, plain = load_run(path), load_run(path, overrides={"isolated_self_loops": False})
    assert looped.config["isolated_self_loops"] == "auto" and plain.config["isolated_self_loops"] is False
    cold = torch.as_tensor(looped.data.cold_items)
    spec = importlib.util.spec_from_file_location("cold_scale", REPO / "benchmarks" / "cold_scale.py")
    cold_scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cold_scale)
    with torch.no_grad():
        _, items_looped = looped.model.forward()
        _, items_plain = plain.model.forward()
        _, items_scaled = cold_scale.scaled_forward(plain.model.forward, cold, 2.0)()
    torch.testing.assert_close(items_plain[cold] * 2, items_looped[cold])
    torch.testing.assert_close(items_scaled[cold], items_looped[cold])
    trained = torch.as_tensor(np.unique(looped.data.train.items))      # rows with an edge: unchanged
    torch.testing.assert_close(items_plain[trained], items_looped[trained], rtol=0, atol=0)
    # 'match': the factor that gives the held-out rows, as a group, the trained rows' mean length
    factor = cold_scale.matching_factor(plain.model.forward, cold)
    with torch.no_grad():
        _, items_matched = cold_scale.scaled_forward(plain.model.forward, cold, factor)()
    held_out = torch.zeros(items_matched.shape[0], dtype=torch.bool)
    held_out[cold] = True
    lengths = items_matched.norm(dim=1)
    torch.testing.assert_close(lengths[held_out].mean(), lengths[~held_out].mean())
    assert factor > 1.5      # the loops are off: the held-out rows are half as long as they would be


def test_grcn_held_out_item_keeps_its_rows_through_both_graphs(tmp_path, run_dirs):
    """GRCN's own message passing: with the loop a held-out item is [3 normalize(E_i) || 2 x^1_i || 2 x^2_i]
    (x^m_i its content node per modality), without it [normalize(E_i) || x^1_i || x^2_i]; every node
    with an edge is the same both ways."""
    import torch.nn.functional as F

    outs = {}
    for loops in (True, False):
        config = toy_config("GRCN", {}, tmp_path, run_dirs, cold_item_ratio=0.1, isolated_self_loops=loops)
        data, model, _ = build(config)
        with torch.no_grad():
            out, ids = model.forward()
            content = torch.cat([F.normalize(F.leaky_relu(getattr(model, gcn).MLP(getattr(model, feat))))
                                 for gcn, feat in model.modalities], dim=1)
        outs[loops] = (out, ids, content, data, model)
    (looped, ids, content, data, model), (plain, plain_ids, plain_content, _, plain_model) = outs[True], outs[False]
    d = model.embedding_dim
    cold = torch.as_tensor(data.cold_items) + model.n_users
    assert len(model.modalities) == 2 and len(cold) > 0 and model.loops is not None and plain_model.loops is None
    torch.testing.assert_close(plain[cold], torch.cat([F.normalize(plain_ids[cold]),
                                                       plain_content[cold - model.n_users]], dim=1))
    expected = torch.cat([F.normalize(ids[cold]), content[cold - model.n_users]], dim=1)
    torch.testing.assert_close(looped[cold], expected * torch.tensor([3.0] * d + [2.0] * content.shape[1]))
    # the same weights in both models: every node with an edge gets the same representation
    plain_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        plain, _ = plain_model.forward()
    edged = torch.as_tensor(np.flatnonzero(model.loops.squeeze(1).numpy() == 0))
    torch.testing.assert_close(looped[edged], plain[edged], rtol=0, atol=0)
