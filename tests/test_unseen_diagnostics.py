"""The two graph diagnostics of docs/benchmarks.md section 25: MMGCN's borrowed neighbourhoods for
items without a training edge (benchmarks/unseen_graph_rules.py) and LATTICE's learned-graph degrees
(benchmarks/lattice_degrees.py)."""
import importlib.util

import numpy as np
import scipy.sparse as sp
import torch

from tests.backbones import build, toy_config
from tests.conftest import REPO


def script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_borrowed_rows_are_the_content_neighbours_mean():
    """1 user, 4 items; item 3 has no edge. Its features are closest to items 0 and 1 (k = 2), so its
    row becomes the mean of theirs; every other row is unchanged."""
    borrowed = script("unseen_graph_rules").borrowed
    # nodes: user 0, items 0..3 -> 1..4; D^{-1} A by hand: the user averages its 3 items
    adj = sp.csr_matrix(np.array([[0, 1 / 3, 1 / 3, 1 / 3, 0],
                                  [1, 0, 0, 0, 0],
                                  [1, 0, 0, 0, 0],
                                  [1, 0, 0, 0, 0],
                                  [0, 0, 0, 0, 0]], dtype=np.float32))
    features = [np.array([[1.0, 0.1], [1.0, 0.2], [-1.0, 1.0], [1.0, 0.15]], dtype=np.float32)]
    counts = np.array([1, 1, 1, 0])
    out = borrowed(adj, 1, features, counts, 2).toarray()
    np.testing.assert_allclose(out[:4], adj.toarray()[:4])
    np.testing.assert_allclose(out[4], [1, 0, 0, 0, 0])          # (row 1 + row 2) / 2


def test_lattice_degrees_match_a_dense_computation(tmp_path, run_dirs):
    learned_degrees = script("lattice_degrees").learned_degrees
    config = toy_config("LATTICE", {"learning_rate": 1e-3, "reg_weight": 0.0}, tmp_path, run_dirs)
    _, model, _ = build(config)
    degrees = learned_degrees(model)
    assert set(degrees) == set(model.modalities) | {"mixed"} and len(model.modalities) == 2
    mix = torch.softmax(model.modal_weight.detach(), dim=0)
    mixed = torch.zeros(model.n_items)
    with torch.no_grad():
        for index, m in enumerate(model.modalities):
            p = model._projected(m)
            p = p / p.norm(dim=1, keepdim=True)
            top = torch.topk(p @ p.T, model.knn_k, dim=1).values
            torch.testing.assert_close(degrees[m][0], top.sum(dim=1))
            assert degrees[m][1] == float(top.min())
            mixed += mix[index] * top.sum(dim=1)
    torch.testing.assert_close(degrees["mixed"][0], mixed)
