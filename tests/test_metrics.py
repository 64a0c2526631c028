"""Metric values on hand-computed rankings (MMRec's definitions) and the evaluator's masking."""
import numpy as np
import pytest
import torch

from mmrec_motor.data.dataset import RecData, Split
from mmrec_motor.evaluation import JointRanking, TopKEvaluator, compute_metrics, format_metrics

# Three users, top-5 hit patterns:
#   A: 2 relevant items, hits at ranks 1 and 3
#   B: 7 relevant items (more than K=5), hits at ranks 2..5
#   C: 1 relevant item, outside the top 5
HITS = np.array([[1, 0, 1, 0, 0], [0, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=bool)
POS_LEN = np.array([2, 7, 1])
# Worked by hand, e.g. NDCG@3 of B = (1/log2 3 + 1/log2 4) / (1 + 1/log2 3 + 1/log2 4) = 0.530721,
# MAP@5 of B = (1/2 + 2/3 + 3/4 + 4/5) / min(7, 5) = 0.543333; averages over the 3 users, 4 places.
EXPECTED = {
    "recall@1": 0.1667, "recall@3": 0.4286, "recall@5": 0.5238,
    "ndcg@1": 0.3333, "ndcg@3": 0.4835, "ndcg@5": 0.5269,
    "precision@1": 0.3333, "precision@3": 0.4444, "precision@5": 0.4,
    "map@1": 0.3333, "map@3": 0.4074, "map@5": 0.4589,
}


def test_hand_computed_metrics():
    result = compute_metrics(HITS, POS_LEN, ["Recall", "NDCG", "Precision", "MAP"], [1, 3, 5])
    assert result == EXPECTED
    assert list(result)[:3] == ["recall@1", "recall@3", "recall@5"]  # metric-major, lowercase


def test_recall_denominator_is_all_relevant_items_not_k():
    # one user, 10 relevant items, all 5 shown are hits: MMRec's recall@5 is 5/10, not 5/5
    result = compute_metrics(np.ones((1, 5), bool), np.array([10]), ["recall", "ndcg"], [5])
    assert result == {"recall@5": 0.5, "ndcg@5": 1.0}


def test_bad_metric_input_raises():
    with pytest.raises(ValueError, match="pos_len >= 1"):
        compute_metrics(HITS, np.array([2, 0, 1]), ["recall"], [5])
    with pytest.raises(ValueError, match="hits must be"):
        compute_metrics(HITS, np.array([2, 7]), ["recall"], [5])


def test_format_matches_mmrec_dict2str():
    assert format_metrics({"recall@5": 0.017, "ndcg@5": 0.5}) == "recall@5: 0.0170    ndcg@5: 0.5000"


class FixedScores(torch.nn.Module):
    """Scores item i for every user as -i (item 0 ranks first), unless a table is given."""

    def __init__(self, n_items):
        super().__init__()
        self.scores = -torch.arange(n_items, dtype=torch.float32)

    def full_sort_predict(self, interaction):
        return self.scores.expand(len(interaction[0]), -1).clone()


def test_evaluator_masks_training_items_only():
    # user 0 trained on items 0 and 1, so its ranking starts at item 2; its test item is 2 -> hit@1.
    # user 1 trained on item 5; test items 0 and 9: item 0 is rank 1, item 9 is outside the top 3.
    data = RecData("t", "-", n_users=2, n_items=10,
                   train=Split(np.array([0, 0, 1]), np.array([0, 1, 5])),
                   valid=Split(np.array([0]), np.array([3])),
                   test=Split(np.array([0, 1, 1]), np.array([2, 0, 9])))
    evaluator = TopKEvaluator(data, data.test, ["recall", "precision"], [1, 3], batch_size=1)
    ranked = evaluator.rank(FixedScores(10))
    assert ranked.tolist() == [[2, 3, 4], [0, 1, 2]]   # the valid item 3 is not masked at test time
    assert evaluator.evaluate(FixedScores(10)) == {
        "recall@1": 0.75, "recall@3": 0.75, "precision@1": 1.0, "precision@3": 0.3333}


def test_topk_larger_than_catalogue_raises():
    data = RecData("t", "-", 1, 3, Split(np.array([0]), np.array([0])), Split(np.array([0]), np.array([1])),
                   Split(np.array([0]), np.array([2])))
    with pytest.raises(ValueError, match="exceeds the number of items"):
        TopKEvaluator(data, data.test, ["recall"], [5], batch_size=8)


class TableScores(torch.nn.Module):
    """The same score row for every user."""

    def __init__(self, row):
        super().__init__()
        self.row = torch.tensor(row, dtype=torch.float32)

    def full_sort_predict(self, interaction):
        return self.row.expand(len(interaction[0]), -1).clone()


def masked_case():
    return RecData("t", "-", n_users=2, n_items=10,
                   train=Split(np.array([0, 0, 1]), np.array([0, 1, 5])),
                   valid=Split(np.array([0]), np.array([3])),
                   test=Split(np.array([0, 1, 1]), np.array([2, 0, 9])))


@pytest.mark.parametrize("batch_size", [1, 2])
def test_percentile_ranks_by_hand(batch_size):
    data = masked_case()
    evaluator = TopKEvaluator(data, data.test, ["recall"], [1], batch_size=batch_size)
    # scores -i: user 0's candidates are items 2..9 (8), item 2 is first -> 0/7; user 1's are the 9
    # items but 5: item 0 first -> 0/8, item 9 last -> 8/8
    assert evaluator.percentile_ranks(FixedScores(10)).tolist() == [0.0, 0.0, 1.0]
    assert evaluator.mean_percentile_rank(FixedScores(10)) == 0.3333
    # all scores equal: every item shares every place -> 0.5
    assert evaluator.percentile_ranks(TableScores([0.0] * 10)).tolist() == [0.5, 0.5, 0.5]
    # item 3 above a tie of the rest: user 0, item 2: 1 higher, 6 others tied of 7 -> (1 + 3) / 7;
    # user 1, items 0 and 9: 1 higher, 7 others tied of 8 -> (1 + 3.5) / 8
    row = [0.0] * 10
    row[3] = 1.0
    assert np.allclose(evaluator.percentile_ranks(TableScores(row)), [4 / 7, 4.5 / 8, 4.5 / 8])


def test_percentile_ranks_refuse_a_test_item_that_is_also_trained():
    data = RecData("t", "-", n_users=1, n_items=4, train=Split(np.array([0]), np.array([1])),
                   valid=Split(np.array([0]), np.array([2])), test=Split(np.array([0]), np.array([1])))
    evaluator = TopKEvaluator(data, data.test, ["recall"], [1], batch_size=4)
    with pytest.raises(ValueError, match="also a training item of its user"):
        evaluator.percentile_ranks(FixedScores(4))


class DotScores(FixedScores):
    """FixedScores with ranking_factors, so the evaluator may score items in chunks."""

    def ranking_factors(self, users):
        return torch.ones(len(users), 1), self.scores[:, None]


@pytest.mark.parametrize("item_chunk", [None, 3, 4])
def test_excluded_items_are_ranked_for_no_user(item_chunk):
    # as test_evaluator_masks_training_items_only, with items 2 and 4 out of the catalogue: user 0's
    # ranking starts 3, 5, 6; user 1's 0, 1, 3
    data = masked_case()
    data = RecData("t", "-", 2, 10, data.train, data.valid, Split(np.array([0, 1, 1]), np.array([3, 0, 9])))
    evaluator = TopKEvaluator(data, data.test, ["recall"], [1, 3], batch_size=1, item_chunk=item_chunk,
                              excluded_items=[4, 2])
    assert evaluator.rank(DotScores(10)).tolist() == [[3, 5, 6], [0, 1, 3]]
    # percentile ranks: user 0's candidates 3, 5..9 (6 items) -> item 3 at 0/5; user 1's 7 -> 0/6, 6/6
    assert evaluator.percentile_ranks(DotScores(10)).tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="an excluded item is an item of the evaluated split"):
        TopKEvaluator(data, data.test, ["recall"], [1], batch_size=1, excluded_items=[9])
    with pytest.raises(ValueError, match=r"item IDs must lie in \[0, 10\), got \[2, 10\]"):
        TopKEvaluator(data, data.test, ["recall"], [1], batch_size=1, excluded_items=[2, 10])


class ShiftedScores(torch.nn.Module):
    """User u scores item i as -((i - 2u) mod n): each user's ranking starts at item 2u."""

    def __init__(self, n_items):
        super().__init__()
        self.n_items = n_items

    def full_sort_predict(self, interaction):
        users = interaction[0]
        items = torch.arange(self.n_items)
        return -((items[None, :] - 2 * users[:, None]) % self.n_items).float()


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_joint_ranking_gives_each_split_its_own_metrics(batch_size):
    # user 0 is in valid and test, user 1 in test only, user 2 in valid only; trained items are masked
    # for both splits. Rankings (top 2): user 0 trains 0 -> [1, 2]; user 1 trains 2 -> [3, 4];
    # user 2 trains 4 -> [5, 6]. valid: user 0's item 2 (rank 2), user 2's item 5 (rank 1);
    # test: user 0's item 1 (rank 1), user 1's item 9 (not in the top 2).
    data = RecData("t", "-", n_users=3, n_items=10,
                   train=Split(np.array([0, 1, 2]), np.array([0, 2, 4])),
                   valid=Split(np.array([0, 2]), np.array([2, 5])),
                   test=Split(np.array([0, 1]), np.array([1, 9])))
    valid, test = (TopKEvaluator(data, split, ["recall", "ndcg"], [1, 2], batch_size=batch_size)
                   for split in (data.valid, data.test))
    joint = JointRanking.of(valid, test)
    ranked = joint.rank(ShiftedScores(10))
    assert ranked.tolist() == [[1, 2], [3, 4], [5, 6]]
    assert joint.valid_metrics(ranked) == valid.evaluate(ShiftedScores(10)) == {
        "recall@1": 0.5, "recall@2": 1.0, "ndcg@1": 0.5, "ndcg@2": 0.8155}    # (1/log2 3 + 1) / 2
    assert joint.test_metrics(ranked) == test.evaluate(ShiftedScores(10)) == {
        "recall@1": 0.5, "recall@2": 0.5, "ndcg@1": 0.5, "ndcg@2": 0.5}
    # the cold-start protocol's validation excludes items: the splits' lists may differ, no joint ranking
    excluding = TopKEvaluator(data, data.valid, ["recall"], [1, 2], batch_size=batch_size, excluded_items=[7])
    assert JointRanking.of(excluding, test) is None
    assert JointRanking.of(valid, TopKEvaluator(data, data.test, ["recall"], [1, 3], batch_size=batch_size)) is None



def test_cold_metrics_by_hand():
    """Held-out items 4 and 5; every user scores items 0..5 as 0.1, 0.2, 0.9, 0.8, 0.5, 0.3.
    User 0 (trained on 0) wants 5: ranked 2, 3, 4, 5, 1 -> 4th; among held-out items 4, 5 -> 2nd.
    User 1 (trained on 1) wants 4: ranked 2, 3, 4, 5, 0 -> 3rd; among held-out items -> 1st."""
    from mmrec_motor.quick_start import cold_metrics

    data = RecData("t", "-", n_users=2, n_items=6, train=Split(np.array([0, 1]), np.array([0, 1])),
                   valid=Split(np.array([0]), np.array([2])), test=Split(np.array([0, 1]), np.array([5, 4])),
                   cold_items=np.array([4, 5]), cold_test=Split(np.array([0, 1]), np.array([5, 4])))
    config = {"metrics": ["recall"], "topk": [1, 2, 4], "eval_batch_size": 1, "device": "cpu",
              "eval_item_chunk": None}
    model = TableScores([0.1, 0.2, 0.9, 0.8, 0.5, 0.3])
    cold = TopKEvaluator(data, data.cold_test, ["recall"], [1, 2, 4], 1, "cpu")
    out = cold_metrics(config, data, cold, model)
    assert out["cold_test"] == {"recall@1": 0.0, "recall@2": 0.0, "recall@4": 1.0}
    assert out["cold_test_among"] == {"recall@1": 0.5, "recall@2": 1.0, "recall@4": 1.0}
    # top 1 and 2: items 2, 3 for both users; top 4: 2, 3, 4, 5 -> half of the slots held out
    assert out["cold_test_share"] == {"held_out_share@1": 0.0, "held_out_share@2": 0.0, "held_out_share@4": 0.5}
    assert out["cold_test_mpr"] == 0.625          # (3/4 + 2/4) / 2: 3 and 2 candidates above, of 5
