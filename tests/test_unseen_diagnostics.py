"""The two graph diagnostics of docs/benchmarks.md section 25: MMGCN's borrowed neighbourhoods for
items without a training edge (benchmarks/unseen_graph_rules.py) and LATTICE's learned-graph degrees
(benchmarks/lattice_degrees.py)."""
import importlib.util

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from tests.backbones import FixedScores, build, toy_config
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


def test_full_valid_is_validation_as_without_the_protocol(tmp_path, run_dirs):
    """benchmarks/unseen_neighbours.py's full validation: the dataset's own valid rows of the users
    who still train, scored as without the protocol (held-out items ranked, their train rows masked)."""
    from mmrec_motor.data.dataset import Split
    from mmrec_motor.evaluation import TopKEvaluator
    from mmrec_motor.quick_start import load_data

    config = toy_config("BPR", {}, tmp_path, run_dirs, cold_item_ratio=0.3)
    held_out, plain = load_data(config), load_data(toy_config("BPR", {}, tmp_path, run_dirs))
    full = script("unseen_neighbours").full_valid_evaluator(config)
    trains = np.isin(plain.valid.users, held_out.train.users)
    assert len(held_out.valid) < trains.sum()           # the held-out items' valid rows are back
    reference = TopKEvaluator(plain, Split(plain.valid.users[trains], plain.valid.items[trains]),
                              config["metrics"], config["topk"], config["eval_batch_size"])
    model = FixedScores(plain.n_items)
    assert full.evaluate(model) == reference.evaluate(model)
    assert np.array_equal(full.rank(model), reference.rank(model))


def test_unseen_rules_scale_the_length_and_the_blend_then_restore_them():
    """benchmarks/unseen_neighbours.py --power / --blend: s^t for the length factor, the borrowed share
    for the blend, MOTOR's own rules again outside the block."""
    from mmrec_motor.motor import tcn, unseen

    table = torch.tensor([[3.0, 0.0], [0.0, 5.0], [1.0, 0.0], [0.0, -3.0]])
    weights, mask = torch.tensor([1.0, 1.0, 0.0, 0.0]), torch.tensor([False, False, True, True])
    rules = script("unseen_neighbours").unseen_rules
    assert unseen.unseen_factor(table, weights, mask).item() == 2.0        # mean length 4, unseen 2
    with rules(0.5, 1.0):
        assert unseen.unseen_factor(table, weights, mask).item() == pytest.approx(2.0 ** 0.5)
        out = tcn.blend_neighbours(table, torch.tensor([2]), torch.tensor([[0, 1]]))
        torch.testing.assert_close(out[2], torch.tensor([1.5, 2.5]))   # the neighbours' mean only
    assert unseen.unseen_factor(table, weights, mask).item() == 2.0
    assert tcn.blend_neighbours is unseen.blend_neighbours


def test_neighbour_lengths_give_unseen_rows_their_neighbours_length():
    """benchmarks/unseen_neighbours.py --nlength P [--keep-group], by hand: item 2 (unseen, [1, 0]) blends
    with its neighbours 0 and 1 ([3, 0], [0, 5], mean length 4) into [1.25, 1.25]; P = 1 makes it 4 long.
    Item 3 (unseen, [0, -3]) blends with neighbour 0 into [1.5, -1.5]; P = 1 makes it 3 long. With
    --keep-group the two are rescaled together to their blended mean length."""
    from mmrec_motor.motor import tcn, unseen

    table = torch.tensor([[3.0, 0.0], [0.0, 5.0], [1.0, 0.0], [0.0, -3.0]])
    items, neighbours = torch.tensor([2, 3]), torch.tensor([[0, 1], [0, 0]])
    rules = script("unseen_neighbours").unseen_rules
    blended = torch.tensor([[1.25, 1.25], [1.5, -1.5]])
    with rules(1.0, 0.5, 1.0):
        out = tcn.blend_neighbours(table, items, neighbours)
    torch.testing.assert_close(out[:2], table[:2])
    torch.testing.assert_close(out[2:].norm(dim=1), torch.tensor([4.0, 3.0]))
    torch.testing.assert_close(out[2:] / out[2:].norm(dim=1, keepdim=True),
                               blended / blended.norm(dim=1, keepdim=True))
    with rules(1.0, 0.5, 1.0, keep_group=True):
        grouped = tcn.blend_neighbours(table, items, neighbours)
        batch = tcn.blend_neighbours(table[[3, 0]], items, neighbours, rows=torch.tensor([3, 0]), full=table)
    torch.testing.assert_close(grouped[2:].norm(dim=1).mean(), blended.norm(dim=1).mean())
    torch.testing.assert_close(grouped[2:].norm(dim=1) / grouped[3].norm(), torch.tensor([4.0 / 3.0, 1.0]))
    torch.testing.assert_close(batch, grouped[[3, 0]])
    with rules(1.0, 0.5, 0.0):
        torch.testing.assert_close(tcn.blend_neighbours(table, items, neighbours)[2:], blended)
    # --equal: the blended rows (lengths 1.25 * sqrt 2 and 1.5 * sqrt 2) both take their mean length
    # (1.375 * sqrt 2); P = 0.5 goes half way in log length
    with rules(1.0, 0.5, 1.0, equal=True):
        equal = tcn.blend_neighbours(table, items, neighbours)
    torch.testing.assert_close(equal[2:].norm(dim=1), torch.full((2,), 1.375 * 2 ** 0.5))
    torch.testing.assert_close(equal[2:] / equal[2:].norm(dim=1, keepdim=True),
                               blended / blended.norm(dim=1, keepdim=True))
    with rules(1.0, 0.5, 0.5, equal=True):
        half = tcn.blend_neighbours(table, items, neighbours)
    ratio = (1.375 / torch.tensor([1.25, 1.5])) ** 0.5
    torch.testing.assert_close(half[2:].norm(dim=1), blended.norm(dim=1) * ratio)
    assert tcn.blend_neighbours is unseen.blend_neighbours


def test_cold_neighbours_rows_are_their_neighbours_mean_rows():
    """benchmarks/cold_neighbours.py: a held-out item's graph row becomes the mean of its neighbours'
    rows; every other row and every column stay. 1 user, 3 items (nodes 1-3); item 2 (node 3) is held
    out with neighbours items 0 and 1."""
    adj = sp.csr_matrix(np.array([[0.0, 0.5, 0.5, 0.0],
                                  [1.0, 0.0, 0.0, 0.0],
                                  [0.2, 0.0, 0.0, 0.8],
                                  [0.0, 0.0, 0.0, 1.0]]))
    out = script("cold_neighbours").neighbour_rows(adj, 1, np.array([2]), np.array([[0, 1]])).toarray()
    np.testing.assert_allclose(out[:3], adj.toarray()[:3])
    np.testing.assert_allclose(out[3], [0.6, 0.0, 0.0, 0.4])
