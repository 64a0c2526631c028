"""``cold_item_test``: which test rows the cold-start protocol keeps of a held-out item."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from mmrec_motor.data.cold import apply_cold_items, hold_out_items
from mmrec_motor.data.dataset import DataError, RecData, Split
from mmrec_motor.evaluation import TopKEvaluator
from mmrec_motor.keys import run_identity


def hand_data():
    """4 users, 6 items. Users 0-2 train on item 0 and on one more item; user 3 trains on 4 only."""
    train = Split(np.array([0, 0, 1, 1, 2, 2, 3]), np.array([0, 4, 0, 5, 0, 3, 4]))
    valid = Split(np.array([0, 1, 2, 3]), np.array([5, 4, 1, 1]))
    test = Split(np.array([0, 1, 2, 3]), np.array([1, 2, 4, 5]))
    return RecData("hand", "hand.inter", 4, 6, train, valid, test)


def held_out(data, test_rows, drop=True):
    """Hold out exactly items 4 and 5 (the draw replaced by hand; the rest is hold_out_items' code)."""
    for seed in range(1000):
        cold = hold_out_items(data, 2 / 6, seed=seed, drop_cold_users=drop, test_rows=test_rows)
        if cold.cold_items.tolist() == [4, 5]:
            return cold
    raise AssertionError("no seed draws items 4 and 5")


def pairs(split):
    return sorted(zip(split.users.tolist(), split.items.tolist()))


def test_own_keeps_the_test_split_and_masks_the_removed_train_rows():
    data = hand_data()
    own = held_out(data, "own")
    assert pairs(own.train) == [(0, 0), (1, 0), (2, 0), (2, 3)]
    assert pairs(own.valid) == [(2, 1)]            # (0, 5), (1, 4) held out; user 3 lost every train row
    assert own.cold_dropped_users == 1
    assert pairs(own.test) == [(0, 1), (1, 2), (2, 4)]        # the test split less user 3's row
    assert pairs(own.cold_test) == [(2, 4)]
    assert pairs(own.cold_masked) == [(0, 4), (1, 5), (3, 4)]
    moved = held_out(data, "all")
    assert moved.cold_masked is None
    # all: (0, 4) and (1, 5) from train, (0, 5) and (1, 4) from valid join test; user 3 is dropped
    assert pairs(moved.cold_test) == [(0, 4), (0, 5), (1, 4), (1, 5), (2, 4)]


def test_own_is_scored_as_without_the_protocol():
    """Every user scores items 0..5 as 6, 5, 4, 3, 5.5, 1. Without the protocol the top 3 are:
    user 0 (trained on 0, 4) 1, 2, 3; user 1 (0, 5) 4, 1, 2; user 2 (0, 3) 4, 1, 2; user 3 (4) 0, 1, 2.
    Test items 1, 2, 4, 5: Recall@1 = (1 + 0 + 1 + 0) / 4."""
    class Scores(torch.nn.Module):
        def full_sort_predict(self, interaction):
            return torch.tensor([6., 5., 4., 3., 5.5, 1.]).expand(len(interaction[0]), -1).clone()

    data, model = hand_data(), Scores()
    own = held_out(data, "own", drop=False)
    assert pairs(own.test) == pairs(data.test)
    plain = TopKEvaluator(data, data.test, ["recall", "ndcg"], [1, 2, 3], batch_size=2)
    scored = TopKEvaluator(own, own.test, ["recall", "ndcg"], [1, 2, 3], batch_size=2)
    assert scored.rank(model).tolist() == [[1, 2, 3], [4, 1, 2], [4, 1, 2], [0, 1, 2]]
    assert scored.evaluate(model) == plain.evaluate(model)
    assert scored.evaluate(model)["recall@1"] == 0.5
    assert scored.percentile_ranks(model).tolist() == plain.percentile_ranks(model).tolist()
    # without the mask, user 0's removed train item 4 (5.5) takes its first place, and user 3's too
    unmasked = TopKEvaluator(replace(own, cold_masked=None), own.test, ["recall"], [1], batch_size=2)
    assert unmasked.rank(model)[:, 0].tolist() == [4, 4, 4, 0]
    assert unmasked.evaluate(model) == {"recall@1": 0.25}


def test_bad_value_and_identity():
    data = hand_data()
    with pytest.raises(DataError, match="'cold_item_test' is 'some'"):
        hold_out_items(data, 0.3, seed=0, test_rows="some")
    config = {"cold_item_ratio": 0.3, "seed": 0, "cold_item_test": "own"}
    assert pairs(apply_cold_items(config, data).cold_masked) == pairs(
        hold_out_items(data, 0.3, seed=0, test_rows="own").cold_masked)
    assert apply_cold_items({"cold_item_ratio": 0.3, "seed": 0}, data).cold_masked is None   # absent = all
    base = {"model": "BPR", "cold_item_ratio": 0.1, "cold_item_seed": None}
    assert run_identity({**base, "cold_item_test": "all"}) == run_identity(base)
    assert run_identity({**base, "cold_item_test": "own"}) != run_identity(base)
    off = {"model": "BPR", "cold_item_ratio": 0.0}
    assert run_identity({**off, "cold_item_test": "own"}) == run_identity(off)
