"""``motor_unseen_norm`` (motor/unseen.py): items without a training interaction get, as a group, a
trained item's mean length; by hand on small tables, through the TCN's two read paths, and in a
cold-start run on the toy data. And the validation evaluator of the cold-start protocol, which does
not rank the held-out items."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mmrec_motor.data.loader import load_data
from mmrec_motor.keys import run_identity
from mmrec_motor.motor.hook import unseen_neighbours_setting, unseen_norm_setting
from mmrec_motor.motor.tcn import TokenCrossNetwork
from mmrec_motor.motor.unseen import (blend_neighbours, rescale_unseen, training_item_counts, unseen_factor,
                                      unseen_neighbours, unseen_weights)
from mmrec_motor.quick_start import split_evaluators
from tests.backbones import build, toy_config


def test_factor_by_hand():
    # trained rows of length 3 and 5 (1 and 3 interactions), unseen rows of length 1 and 3
    table = torch.tensor([[3.0, 0.0], [0.0, 5.0], [1.0, 0.0], [0.0, -3.0]])
    counts = np.array([1, 3, 0, 0])
    unseen = torch.as_tensor(counts == 0)
    mean_w = torch.as_tensor(unseen_weights(counts, "mean"))
    np.testing.assert_array_equal(mean_w.numpy(), [1, 1, 0, 0])
    assert unseen_factor(table, mean_w, unseen).item() == pytest.approx(4.0 / 2.0)     # mean 4, unseen 2
    weighted = torch.as_tensor(unseen_weights(counts, "weighted"))
    assert unseen_factor(table, weighted, unseen).item() == pytest.approx((3 + 15) / 4 / 2.0)
    out = rescale_unseen(table, mean_w, unseen)
    torch.testing.assert_close(out, torch.tensor([[3.0, 0.0], [0.0, 5.0], [2.0, 0.0], [0.0, -6.0]]))
    # rows path: the same rows, the factor from the full table
    rows = torch.tensor([3, 0])
    torch.testing.assert_close(rescale_unseen(table[rows], mean_w, unseen, rows=rows, full=table),
                               out[rows])


def test_weights_off_or_nothing_unseen_is_none_and_bad_input_raises():
    assert unseen_weights([1, 2, 0], "off") is None
    assert unseen_weights([1, 2, 3], "mean") is None
    with pytest.raises(ValueError, match="no item has a training interaction"):
        unseen_weights([0, 0], "mean")
    with pytest.raises(ValueError, match="must be one of auto, mean, weighted, off, got 'max'"):
        unseen_weights([1, 0], "max")
    with pytest.raises(ValueError, match="training counts must be a 1-D array >= 0"):
        unseen_weights([1, -1], "mean")


class Train:
    def __init__(self, users, items, n_users, n_items):
        self.matrix = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=(n_users, n_items))

    def inter_matrix(self, form="coo"):
        return self.matrix if form == "csr" else self.matrix.tocoo()


def test_training_item_counts_reads_the_inter_matrix_and_names_bad_input():
    train = Train([0, 0, 1, 2], [0, 2, 2, 2], 3, 4)
    np.testing.assert_array_equal(training_item_counts(train, 4), [1, 0, 3, 0])
    with pytest.raises(ValueError, match="expected n_items = 5"):
        training_item_counts(train, 5)
    with pytest.raises(ValueError, match="need the training interactions.*got NoneType"):
        training_item_counts(None, 4)


# null takes MOTOR's default, off since docs/motor-design.md section 12 (auto until then)
@pytest.mark.parametrize("value, ratio, expected", [("auto", 0, "off"), ("auto", 0.1, "mean"), (None, 0.1, "off"),
                                                    ("weighted", 0, "weighted"), (False, 0.1, "off"),
                                                    ("off", 0.1, "off")])
def test_auto_follows_the_cold_start_protocol(value, ratio, expected):
    assert unseen_norm_setting({"motor_unseen_norm": value, "cold_item_ratio": ratio}) == expected


def test_bad_setting_is_named():
    with pytest.raises(ValueError, match="motor_unseen_norm must be one of auto, mean, weighted, off, got 'yes'"):
        unseen_norm_setting({"motor_unseen_norm": "yes"})


def test_tcn_rescales_unseen_rows_on_both_read_paths():
    rng = np.random.default_rng(0)
    n, counts = 40, rng.integers(0, 4, 40)
    counts[:3] = [0, 0, 5]
    tokens = [rng.integers(0, 8, (n, 3))]
    cells = [rng.integers(0, 6, n)]
    plain = TokenCrossNetwork(tokens, [8], 8, variant="mean", seed=1, fine_tokens=cells, fine_sizes=[6])
    ruled = TokenCrossNetwork(tokens, [8], 8, variant="mean", seed=1, fine_tokens=cells, fine_sizes=[6],
                              unseen_weights=unseen_weights(counts, "mean"))
    with torch.no_grad():
        for table in plain.fine_tables:
            table.normal_()
    ruled.load_state_dict(plain.state_dict())                 # the rule's buffers are not saved
    assert set(ruled.state_dict()) == set(plain.state_dict())
    base, out = plain(), ruled()
    unseen = torch.as_tensor(counts == 0)
    torch.testing.assert_close(out[~unseen], base[~unseen])
    assert out[~unseen].norm(dim=1).mean().item() == pytest.approx(out[unseen].norm(dim=1).mean().item(), rel=1e-5)
    s = base[~unseen].norm(dim=1).mean() / base[unseen].norm(dim=1).mean()
    torch.testing.assert_close(out[unseen], base[unseen] * s)
    rows = torch.tensor([5, 0, 7, 1])
    torch.testing.assert_close(ruled(rows), out[rows])
    trained_rows = torch.as_tensor(np.flatnonzero(counts > 0)[:4])
    torch.testing.assert_close(ruled(trained_rows), base[trained_rows])
    out.sum().backward()                          # the factor is detached: unseen rows pass s as a constant
    assert all(p.grad is not None for p in ruled.parameters())
    with pytest.raises(ValueError, match=r"unseen_weights: expected \(40,\) weights"):
        TokenCrossNetwork(tokens, [8], 8, variant="mean", unseen_weights=np.ones(39))


def test_cold_start_run_gives_held_out_items_the_trained_mean_length(tmp_path, run_dirs):
    default = toy_config("BPR", {"reg_weight": 1e-4}, tmp_path, run_dirs, motor=True, cold_item_ratio=0.1)
    assert build(default)[2]["motor"]["unseen_norm"] == "off"          # off by default (benchmarks.md §26)
    config = toy_config("BPR", {"reg_weight": 1e-4}, tmp_path, run_dirs, motor=True, cold_item_ratio=0.1,
                        motor_unseen_norm="auto")                       # auto: mean under the protocol
    data, model, item = build(config)
    report = item["motor"]
    cold = np.bincount(data.train.items, minlength=data.n_items) == 0    # held out, or never trained on
    assert cold[data.cold_items].all() and len(data.cold_items) > 0
    assert report["unseen_norm"] == "mean" and report["unseen_items"] == cold.sum()
    with torch.no_grad():
        table = model.item_embedding.weight
    norms = table.norm(dim=1)
    assert norms[torch.as_tensor(cold)].mean().item() == pytest.approx(norms[torch.as_tensor(~cold)].mean().item(),
                                                                       rel=1e-5)
    off = toy_config("BPR", {"reg_weight": 1e-4}, tmp_path, run_dirs, motor=True, cold_item_ratio=0.1,
                     motor_unseen_norm="off")
    assert build(off)[2]["motor"]["unseen_norm"] == "off"
    plain = toy_config("BPR", {"reg_weight": 1e-4}, tmp_path, run_dirs, motor=True)
    plain_report = build(plain)[2]["motor"]
    assert plain_report["unseen_norm"] == "off" and plain_report["unseen_items"] == 0


def test_run_identity_of_runs_without_the_rule_is_unchanged():
    base = {"model": "BPR", "motor": True, "cold_item_ratio": 0.0}
    assert run_identity({**base, "motor_unseen_norm": "auto"}) == run_identity(base)
    for off in ("off", False):                    # today's default: the same run without the protocol
        assert run_identity({**base, "motor_unseen_norm": off}) == run_identity(base)
    assert run_identity({**base, "motor_unseen_norm": "mean"}) != run_identity(base)
    assert run_identity({**base, "motor_unseen_neighbours": 0}) == run_identity(base)
    assert run_identity({**base, "motor_unseen_neighbours": 10}) != run_identity(base)
    cold = {**base, "cold_item_ratio": 0.1}
    assert run_identity({**cold, "motor_unseen_norm": "auto"}) != run_identity(cold)
    assert run_identity({**cold, "motor_unseen_norm": "off"}) != run_identity({**cold, "motor_unseen_norm": "auto"})
    id_cold = {**cold, "motor": False}
    assert run_identity({**id_cold, "motor_unseen_norm": "auto"}) == run_identity(id_cold)


def test_validation_does_not_rank_held_out_items_and_test_does(tmp_path, run_dirs):
    class HeldOutFirst(torch.nn.Module):
        def __init__(self, cold, n_items):
            super().__init__()
            self.row = torch.zeros(n_items)
            self.row[torch.as_tensor(cold)] = 1.0

        def full_sort_predict(self, interaction):
            return self.row.expand(len(interaction[0]), -1).clone()

    config = toy_config("BPR", {"reg_weight": 1e-4}, tmp_path, run_dirs, cold_item_ratio=0.1)
    data = load_data(config)
    valid, test, cold = split_evaluators(config, data)
    model = HeldOutFirst(data.cold_items, data.n_items)
    assert not np.isin(valid.rank(model), data.cold_items).any()
    assert np.isin(test.rank(model)[:, 0], data.cold_items).all()
    plain = split_evaluators(toy_config("BPR", {"reg_weight": 1e-4}, tmp_path, run_dirs),
                             load_data(toy_config("BPR", {"reg_weight": 1e-4}, tmp_path, run_dirs)))
    assert plain[0].excluded is None and plain[2] is None


def test_config_takes_off_from_the_command_line_and_names_a_bad_value(tmp_path, run_dirs):
    from mmrec_motor.config import ConfigError

    off = toy_config("BPR", {}, tmp_path, run_dirs, motor=True, cold_item_ratio=0.1, motor_unseen_norm=False)
    assert unseen_norm_setting(off) == "off"                        # `--motor_unseen_norm=off` reads as false
    assert unseen_norm_setting(toy_config("BPR", {}, tmp_path, run_dirs, motor_unseen_norm="weighted")) == "weighted"
    with pytest.raises(ConfigError, match="'motor_unseen_norm' must be auto, mean, weighted or off, got 'max'"):
        toy_config("BPR", {}, tmp_path, run_dirs, motor_unseen_norm="max")


# ------------------------------------------------------------------ content neighbours


def test_unseen_neighbours_by_hand():
    """Items 0 and 3 are unseen. Modality a puts item 0 next to item 1, item 3 next to item 4;
    modality b agrees for item 3 and puts item 0 nearer item 2 than item 1; the mean cosine decides."""
    a = np.array([[1, 0], [1, 0.1], [0, 1], [-1, 0], [-1, -0.2]], dtype=np.float32)
    b = np.array([[1, 0], [0, 1], [1, 0.05], [0, -1], [0.1, -1]], dtype=np.float32)
    counts = np.array([0, 3, 1, 0, 2])
    unseen, ids = unseen_neighbours([a], counts, 1)
    np.testing.assert_array_equal(unseen, [0, 3])
    np.testing.assert_array_equal(ids, [[1], [4]])
    _, ids = unseen_neighbours([a, b], counts, 1)
    # item 0: cos to 1 = (0.995 + 0) / 2, to 2 = (0 + 0.999) / 2 -> 2
    np.testing.assert_array_equal(ids, [[2], [4]])
    _, ids = unseen_neighbours([a, b], counts, 3)
    assert ids.shape == (2, 3) and sorted(ids[0]) == [1, 2, 4]            # only trained items
    assert unseen_neighbours([a], counts, 0) is None
    assert unseen_neighbours([a], np.ones(5), 2) is None                   # nothing unseen
    with pytest.raises(ValueError, match="4 neighbours asked, only 3 trained items"):
        unseen_neighbours([a], counts, 4)
    with pytest.raises(ValueError, match=r"features of shape \(4, 2\), expected 5 rows"):
        unseen_neighbours([a[:4]], counts, 1)


def test_blend_is_half_own_row_half_the_neighbours_mean_and_detached():
    table = torch.arange(12, dtype=torch.float32).view(6, 2).requires_grad_()
    unseen, ids = torch.tensor([0, 3]), torch.tensor([[1, 2], [4, 5]])
    out = blend_neighbours(table, unseen, ids)
    expected = table.detach().clone()
    expected[0] = 0.5 * (table[0] + 0.5 * (table[1] + table[2])).detach()
    expected[3] = 0.5 * (table[3] + 0.5 * (table[4] + table[5])).detach()
    torch.testing.assert_close(out, expected)
    rows = torch.tensor([3, 1, 0])
    torch.testing.assert_close(blend_neighbours(table[rows], unseen, ids, rows=rows, full=table), out[rows])
    out[[0, 3]].sum().backward()          # only the unseen rows' own halves carry gradient
    torch.testing.assert_close(table.grad, torch.tensor([[0.5, 0.5], [0, 0], [0, 0], [0.5, 0.5], [0, 0], [0, 0]]))
    # another share borrowed (the diagnostic's --blend): a quarter own row, three quarters neighbours
    quarter = blend_neighbours(table.detach(), unseen, ids, weight=0.75)
    torch.testing.assert_close(quarter[0], (0.25 * table[0] + 0.75 * 0.5 * (table[1] + table[2])).detach())
    torch.testing.assert_close(blend_neighbours(table.detach()[rows], unseen, ids, rows=rows, full=table.detach(),
                                                weight=0.75), quarter[rows])


def test_tcn_blends_then_rescales_on_both_read_paths():
    rng = np.random.default_rng(1)
    n, counts = 40, rng.integers(1, 4, 40)
    counts[[0, 6, 9]] = 0
    tokens, cells = [rng.integers(0, 8, (n, 3))], [rng.integers(0, 6, n)]
    feats = rng.standard_normal((n, 5)).astype(np.float32)
    neighbours = unseen_neighbours([feats], counts, 4)
    kw = dict(variant="mean", seed=1, fine_tokens=cells, fine_sizes=[6])
    plain = TokenCrossNetwork(tokens, [8], 8, **kw)
    ruled = TokenCrossNetwork(tokens, [8], 8, unseen_weights=unseen_weights(counts, "mean"),
                              unseen_neighbours=neighbours, **kw)
    with torch.no_grad():
        for table in plain.fine_tables:
            table.normal_()
    ruled.load_state_dict(plain.state_dict())
    assert set(ruled.state_dict()) == set(plain.state_dict())               # derived buffers are not saved
    base, out = plain(), ruled()
    items, ids = (torch.as_tensor(x) for x in neighbours)
    blended = blend_neighbours(base, items, ids)
    unseen = torch.as_tensor(counts == 0)
    s = blended[~unseen].norm(dim=1).mean() / blended[unseen].norm(dim=1).mean()
    torch.testing.assert_close(out[unseen], blended[unseen] * s)
    torch.testing.assert_close(out[~unseen], base[~unseen])
    rows = torch.tensor([5, 0, 9, 1])
    torch.testing.assert_close(ruled(rows), out[rows])
    only = TokenCrossNetwork(tokens, [8], 8, unseen_neighbours=neighbours, **kw)   # without the length rule
    only.load_state_dict(plain.state_dict())
    torch.testing.assert_close(only(), blended)
    torch.testing.assert_close(only(rows), blended[rows])
    with pytest.raises(ValueError, match="disagree on which items are unseen"):
        TokenCrossNetwork(tokens, [8], 8, unseen_weights=unseen_weights(np.r_[0, counts[1:] + 1], "mean"),
                          unseen_neighbours=neighbours, **kw)


@pytest.mark.parametrize("value, ratio, expected", [("auto", 0, 0), ("auto", 0.1, 10), (None, 0.1, 10),
                                                    (5, 0, 5), ("7", 0.1, 7), (False, 0.1, 0), ("off", 0.1, 0)])
def test_neighbours_setting(value, ratio, expected):
    assert unseen_neighbours_setting({"motor_unseen_neighbours": value, "cold_item_ratio": ratio}) == expected


def test_neighbours_bad_setting_is_named_and_identity_kept_without_the_protocol():
    with pytest.raises(ValueError, match="motor_unseen_neighbours must be auto, off or an int >= 0"):
        unseen_neighbours_setting({"motor_unseen_neighbours": "many"})
    base = {"model": "BPR", "motor": True, "cold_item_ratio": 0.0}
    assert run_identity({**base, "motor_unseen_neighbours": "auto"}) == run_identity(base)
    cold = {**base, "cold_item_ratio": 0.1}
    assert run_identity({**cold, "motor_unseen_neighbours": "auto"}) != run_identity(cold)


def test_cold_start_run_blends_the_held_out_rows(tmp_path, run_dirs):
    config = toy_config("BPR", {"reg_weight": 1e-4}, tmp_path, run_dirs, motor=True, cold_item_ratio=0.1)
    data, model, item = build(config)
    assert item["motor"]["unseen_neighbours"] == 10
    network = model.item_embedding.tcn
    assert network.neighbour_ids.shape == (item["motor"]["unseen_items"], 10)
    trained = np.bincount(data.train.items, minlength=data.n_items) > 0
    assert trained[network.neighbour_ids.numpy()].all()
    off = toy_config("BPR", {"reg_weight": 1e-4}, tmp_path, run_dirs, motor=True, cold_item_ratio=0.1,
                     motor_unseen_neighbours=0)
    assert build(off)[2]["motor"]["unseen_neighbours"] == 0
