"""Full-sort top-K evaluation with exactly MMRec's metric definitions, vectorised.

For every user of the split: score all items with ``model.full_sort_predict([users])``, set the
user's *training* items to -1e10 (validation items are not masked at test time, as in MMRec), and take
the top ``max(topk)`` items. With ``hits[u, j]`` = "the j-th ranked item is in u's split items" and
``n_u`` = the number of u's rows in the split (a repeated (user, item) row counts twice, as in MMRec,
whose EvalDataLoader counts rows; the item is still one hit), per user and then averaged over users:

    Recall@K    = sum_{j<=K} hits_j / n_u                       (not min(n_u, K))
    Precision@K = sum_{j<=K} hits_j / K
    NDCG@K      = DCG / IDCG, DCG = sum_{j<=K} hits_j / log2(j+1), IDCG = sum_{j<=min(n_u,K)} 1/log2(j+1)
    MAP@K       = sum_{j<=K} Precision@j * hits_j / min(n_u, K)

Values are rounded to 4 decimals and keyed lowercase (``recall@20``), as MMRec reports them.

``TopKEvaluator.percentile_ranks`` gives, beyond the top K, where each relevant item lands in its
user's whole ranking (used for the held-out items of the cold-start protocol, which rarely reach a
top 20): with C_u the user's candidates (every item but u's training items),

    rank_pct(u, i) = (#{j in C_u : s_uj > s_ui} + (#{j in C_u : s_uj = s_ui} - 1) / 2) / (|C_u| - 1)

0 = ranked first, 1 = ranked last; ties share the mean of their places, so a ranking that knows
nothing averages 0.5. Its mean over the split's (user, item) pairs is the mean percentile rank (MPR).

Items out of the catalogue (``excluded_items``): item IDs that no user of the split may be shown,
set to -1e10 for every user as the training items are. The inductive cold-start protocol passes its
held-out items to the *validation* evaluator: they enter the catalogue after validation (none of
them is a validation item), so ranking them high must not cost a model its validation score, which
chooses its epoch and combination; test ranks every item (:mod:`mmrec_motor.data.cold`). With
``cold_item_test: own`` the held-out items' removed train rows (``data.cold_masked``) are masked as
training rows are, so each user's mask is the one it would have without the protocol.

Large catalogues (``item_chunk``, key ``eval_item_chunk``): a model whose scores are a dot product
says so with ``ranking_factors(users)`` -> (user vectors [B, d], item vectors [n_items, d]); the
evaluator then computes them once per evaluation and scores ``item_chunk`` items at a time, keeping a
running top K per user (the chunk's top K merged with the best so far), so the score block is
[batch, item_chunk] and not [batch, n_items]. The merged top K holds the same items as the full row's
(ties at the K-th score aside). Under torchrun each rank ranks the user batches rank, rank + W, ... and
the lists are gathered on every rank (:mod:`mmrec_motor.distributed`).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from mmrec_motor.data.dataset import PairSet, RecData, Split
from mmrec_motor.distributed import current, gather_objects
from mmrec_motor.resources import ensure_fits


def metric_curves(hits: np.ndarray, pos_len: np.ndarray) -> Dict[str, np.ndarray]:
    """Per-user metric values at every cut-off 1..K_max.

    Args:
        hits: bool [n_users, K_max], hits[u, j] for the (j+1)-th ranked item.
        pos_len: int [n_users], each user's number of relevant items (>= 1).
    Returns:
        ``{'recall', 'ndcg', 'precision', 'map'}`` -> float [n_users, K_max].
    """
    hits = np.asarray(hits, dtype=bool)
    pos_len = np.asarray(pos_len, dtype=np.int64)
    if hits.ndim != 2 or pos_len.shape != (hits.shape[0],):
        raise ValueError(f"hits must be [n_users, K] and pos_len [n_users]; got {hits.shape} and "
                         f"{pos_len.shape}")
    if (pos_len < 1).any():
        raise ValueError("every evaluated user needs at least one relevant item (pos_len >= 1)")
    ranks = np.arange(1, hits.shape[1] + 1)
    hit_f = hits.astype(np.float64)
    cum_hits = np.cumsum(hit_f, axis=1)
    discount = 1.0 / np.log2(ranks + 1)
    dcg = np.cumsum(hit_f * discount, axis=1)
    ideal_len = np.minimum(pos_len[:, None], ranks[None, :])          # min(n_u, K)
    idcg = np.cumsum(discount)[ideal_len - 1]
    precision = cum_hits / ranks
    return {
        "recall": cum_hits / pos_len[:, None],
        "ndcg": dcg / idcg,
        "precision": precision,
        "map": np.cumsum(precision * hit_f, axis=1) / ideal_len,
    }


def compute_metrics(hits: np.ndarray, pos_len: np.ndarray, metrics: Sequence[str],
                    topk: Sequence[int]) -> Dict[str, float]:
    """MMRec's result dict: ``{'recall@5': ..., ...}`` in metric-major order, rounded to 4 places."""
    curves = metric_curves(hits, pos_len)
    result = {}
    for metric in metrics:
        mean_curve = curves[metric.lower()].mean(axis=0)
        for k in topk:
            result[f"{metric.lower()}@{k}"] = round(float(mean_curve[k - 1]), 4)
    return result


def metrics_per_user(hits: np.ndarray, pos_len: np.ndarray, metrics: Sequence[str],
                     topk: Sequence[int]) -> Dict[str, np.ndarray]:
    """``{'recall@5': float [n_users], ...}``: each user's value of every metric at every cut-off, in
    metric-major order; their means are :func:`compute_metrics`' values before rounding (summed in
    another order, so a mean that falls on a rounding tie, such as Precision@20's 0.00475, may round
    to the other side)."""
    curves = metric_curves(hits, pos_len)
    return {f"{metric.lower()}@{k}": curves[metric.lower()][:, k - 1] for metric in metrics for k in topk}


def format_metrics(result: Mapping[str, float]) -> str:
    """MMRec's ``dict2str``: ``recall@5: 0.0170    recall@10: 0.0296 ...``."""
    return "    ".join(f"{key}: {value:.4f}" for key, value in result.items())


class TopKEvaluator:
    """Evaluates a model on one split (valid or test) of ``data``.

    The users, the training-item mask of each user batch and the relevance sets are built once here;
    each call only scores, masks, ranks and counts hits. ``item_chunk``: items scored at once for
    models with ``ranking_factors`` (module docstring); None or >= n_items: all of them.
    """

    def __init__(self, data: RecData, split: Split, metrics: Sequence[str], topk: Sequence[int],
                 batch_size: int, device: str = "cpu", item_chunk: Optional[int] = None,
                 excluded_items: Optional[Sequence[int]] = None):
        self.metrics, self.topk = [m.lower() for m in metrics], list(topk)
        self.max_k = max(self.topk)
        if self.max_k > data.n_items:
            raise ValueError(f"config key 'topk': {self.max_k} exceeds the number of items "
                             f"({data.n_items}); use cut-offs <= {data.n_items}")
        if item_chunk is not None and int(item_chunk) < 1:
            raise ValueError(f"config key 'eval_item_chunk': expected a positive number of items or null, "
                             f"got {item_chunk}")
        if item_chunk is not None and int(item_chunk) < self.max_k:
            raise ValueError(f"config key 'eval_item_chunk': {item_chunk} items per chunk is fewer than the "
                             f"largest cut-off {self.max_k} (topk); use at least {self.max_k}")
        self.n_items = data.n_items
        self.data, self.batch_size = data, batch_size        # for JointRanking.of (a reference, no copy)
        self.item_chunk = None if item_chunk is None or int(item_chunk) >= data.n_items else int(item_chunk)
        self.device = device
        self.users = np.unique(split.users)
        rows = min(batch_size, len(self.users))
        width = self.item_chunk or data.n_items
        row_bytes = width * torch.finfo(torch.float32).bits // 8
        ensure_fits(rows * row_bytes, device,
                    f"the evaluation score matrix ({rows} users x {width} items, float32)",
                    lambda free: f"lower eval_batch_size (now {batch_size}) to at most {free // row_bytes}, "
                                 f"e.g. --eval_batch_size={max(1, free // row_bytes // 2)}"
                    if free >= row_bytes else "not even one user's row fits: free memory or use another "
                                              "device (use_gpu / gpu_id)")
        self.relevant = PairSet(split.users, split.items, data.n_items)
        self.excluded = None
        if excluded_items is not None and len(excluded_items):
            excluded = np.unique(np.asarray(excluded_items, dtype=np.int64))
            if excluded[0] < 0 or excluded[-1] >= data.n_items:
                raise ValueError(f"excluded_items: item IDs must lie in [0, {data.n_items}), got "
                                 f"[{excluded[0]}, {excluded[-1]}]")
            if np.isin(split.items, excluded).any():
                raise ValueError("excluded_items: an excluded item is an item of the evaluated split")
            self.excluded = torch.from_numpy(excluded).to(device)
        # rows, as MMRec's EvalDataLoader: a repeated (user, item) row counts twice (data/checks.py)
        self.pos_len = np.bincount(np.asarray(split.users, np.int64), minlength=data.n_users)[self.users]
        train = data.train_matrix()
        if data.cold_masked is not None and len(data.cold_masked):
            train = (train + data.cold_masked.matrix(data.n_users, data.n_items)).tocsr()
            train.data[:] = 1.0                 # disjoint pairs (cold.py), so every entry is 1 already
        self.batches = []
        self.batch_starts = list(range(0, len(self.users), batch_size))   # first row of each batch
        for start in self.batch_starts:
            users = self.users[start:start + batch_size]
            rows = train[users]                                  # CSR slice: the users' train items
            mask_rows = np.repeat(np.arange(len(users)), np.diff(rows.indptr))
            self.batches.append((torch.from_numpy(users).to(device),
                                 torch.from_numpy(mask_rows).to(device),
                                 torch.from_numpy(rows.indices.astype(np.int64)).to(device)))

    @torch.no_grad()
    def rank(self, model: torch.nn.Module) -> np.ndarray:
        """Top ``max(topk)`` item IDs per evaluated user, int64 [n_users, max_k]."""
        model.eval()
        ranks = current()
        mine = range(ranks.rank, len(self.batches), ranks.world_size)
        factors = self._factors(model)
        ranked: Dict[int, np.ndarray] = {}
        for index in mine:
            users, mask_rows, mask_items = self.batches[index]
            if factors is None:
                scores = model.full_sort_predict([users])
                scores[mask_rows, mask_items] = -1e10
                if self.excluded is not None:
                    scores[:, self.excluded] = -1e10
                top = torch.topk(scores, self.max_k, dim=-1).indices
            else:
                top = self._chunked_top(factors, index)
            ranked[index] = top.cpu().numpy()
        for part in gather_objects(ranked, ranks) if ranks.distributed else ():
            ranked.update(part)
        if not self.batches:
            return np.zeros((0, self.max_k), dtype=np.int64)
        return np.concatenate([ranked[index] for index in range(len(self.batches))])

    def _factors(self, model: torch.nn.Module):
        """(user vectors of all evaluated users [n_users, d], item vectors [n_items, d]) when items are
        scored in chunks and the model has ``ranking_factors``; else None (whole rows)."""
        if self.item_chunk is None:
            return None
        method = getattr(model, "ranking_factors", None)
        return method(torch.from_numpy(self.users).to(self.device)) if method is not None else None

    def _chunked_top(self, factors, index: int) -> torch.Tensor:
        """The top ``max_k`` items of batch ``index``, ``item_chunk`` items scored at a time."""
        user_vectors, item_vectors = factors
        users, mask_rows, mask_items = self.batches[index]
        start = self.batch_starts[index]
        u = user_vectors[start:start + len(users)]
        best_scores = best_items = None
        for first in range(0, self.n_items, self.item_chunk):
            last = min(first + self.item_chunk, self.n_items)
            scores = u @ item_vectors[first:last].T                              # [B, chunk]
            inside = (mask_items >= first) & (mask_items < last)
            scores[mask_rows[inside], mask_items[inside] - first] = -1e10
            if self.excluded is not None:
                out = self.excluded[(self.excluded >= first) & (self.excluded < last)]
                scores[:, out - first] = -1e10
            top = torch.topk(scores, min(self.max_k, last - first), dim=-1)
            items = top.indices + first
            if best_scores is not None:
                merged = torch.topk(torch.cat([best_scores, top.values], 1), self.max_k, dim=-1)
                items = torch.cat([best_items, items], 1).gather(1, merged.indices)
                top_values = merged.values
            else:
                top_values = top.values
            best_scores, best_items = top_values, items
        return best_items

    @torch.no_grad()
    def percentile_ranks(self, model: torch.nn.Module) -> np.ndarray:
        """rank_pct (module docstring) of every relevant (user, item) pair of the split, float64
        [n_pairs], pairs in user-then-item order."""
        model.eval()
        n_items = self.relevant.n_items
        keys = self.relevant.keys                       # sorted u * n_items + i
        ranks = current()
        out: Dict[int, np.ndarray] = {}
        for index in range(ranks.rank, len(self.batches), ranks.world_size):
            users, mask_rows, mask_items = self.batches[index]
            first, last = int(users[0]), int(users[-1])
            lo, hi = np.searchsorted(keys, [first * n_items, (last + 1) * n_items])
            pair_users, pair_items = keys[lo:hi] // n_items, keys[lo:hi] % n_items
            rows = np.searchsorted(self.users, pair_users) - np.searchsorted(self.users, first)
            scores = model.full_sort_predict([users]).float()
            candidate = torch.ones_like(scores, dtype=torch.bool)
            candidate[mask_rows, mask_items] = False
            if self.excluded is not None:
                candidate[:, self.excluded] = False
            rows_t = torch.from_numpy(rows).to(scores.device)
            items_t = torch.from_numpy(pair_items).to(scores.device)
            if not bool(candidate[rows_t, items_t].all()):
                raise ValueError("a relevant item of the split is also a training item of its user; "
                                 "the split and train overlap")
            own = scores[rows_t, items_t][:, None]                        # [pairs, 1]
            pair_scores, pair_candidates = scores[rows_t], candidate[rows_t]  # [pairs, n_items]
            higher = ((pair_scores > own) & pair_candidates).sum(1).double()
            ties = ((pair_scores == own) & pair_candidates).sum(1).double() - 1
            n_candidates = pair_candidates.sum(1).double()
            out[index] = ((higher + ties / 2) / (n_candidates - 1).clamp(min=1)).cpu().numpy()
        for part in gather_objects(out, ranks) if ranks.distributed else ():
            out.update(part)
        return np.concatenate([out[i] for i in range(len(self.batches))]) if out else np.zeros(0)

    def mean_percentile_rank(self, model: torch.nn.Module) -> float:
        """MPR: the mean of :meth:`percentile_ranks`, rounded to 4 decimals as the metrics are."""
        return round(float(self.percentile_ranks(model).mean()), 4)

    def evaluate(self, model: torch.nn.Module) -> Dict[str, float]:
        return self.metrics_of(self.rank(model))

    def metrics_of(self, ranked: np.ndarray) -> Dict[str, float]:
        hits = self.relevant.contains(self.users[:, None], ranked)
        return compute_metrics(hits, self.pos_len, self.metrics, self.topk)

    def per_user_metrics(self, ranked: np.ndarray) -> Dict[str, np.ndarray]:
        """``{'recall@20': float [n_users], ...}``: each evaluated user's value (``self.users`` order) of
        every configured metric@k for a ranking from :meth:`rank`; the means are :meth:`metrics_of`'s
        before rounding (:func:`metrics_per_user`)."""
        hits = self.relevant.contains(self.users[:, None], ranked)
        return metrics_per_user(hits, self.pos_len, self.metrics, self.topk)

    def per_user(self, ranked: np.ndarray, metric: str, k: int) -> np.ndarray:
        """float [n_users]: each evaluated user's ``metric@k`` (users in ``self.users`` order) for a
        ranking from :meth:`rank`; its mean is :meth:`metrics_of`'s value before rounding."""
        if not 1 <= k <= ranked.shape[1]:
            raise ValueError(f"cut-off {k} is outside the ranking's 1..{ranked.shape[1]} places")
        curves = metric_curves(self.relevant.contains(self.users[:, None], ranked), self.pos_len)
        if metric.lower() not in curves:
            raise ValueError(f"metric {metric!r}: expected one of {', '.join(sorted(curves))}")
        return curves[metric.lower()][:, k - 1]


class JointRanking:
    """Valid and test metrics from one ranking of the union of their users.

    When neither evaluator excludes items, both mask only each user's training items, so a user's
    top ``max(topk)`` list is the same for valid and for test (MMRec ranks it twice). Here the union of
    the two splits' users is ranked once and each split counts its hits in its own users' rows. Most
    users are in both splits, so the union costs about one split's ranking: the test metrics of an
    epoch come almost free. The cold-start protocol's validation excludes the held-out items; then
    :meth:`of` returns None and each split ranks alone.
    """

    def __init__(self, valid: TopKEvaluator, test: TopKEvaluator):
        self.valid, self.test = valid, test
        users = np.union1d(valid.users, test.users)
        # this evaluator only ranks: its relevant sets (items all 0) are never read
        self.union = TopKEvaluator(valid.data, Split(users, np.zeros_like(users)), valid.metrics, valid.topk,
                                   valid.batch_size, valid.device, item_chunk=valid.item_chunk)
        self.valid_rows = np.searchsorted(users, valid.users)
        self.test_rows = np.searchsorted(users, test.users)

    @staticmethod
    def of(valid: TopKEvaluator, test: TopKEvaluator) -> Optional["JointRanking"]:
        """The joint ranking of ``valid`` and ``test``, or None when their lists may differ (excluded
        items, other cut-offs, chunking, device or data)."""
        same = (valid.excluded is None and test.excluded is None and valid.data is test.data
                and valid.max_k == test.max_k and valid.item_chunk == test.item_chunk
                and valid.device == test.device and valid.batch_size == test.batch_size)
        return JointRanking(valid, test) if same else None

    def rank(self, model: torch.nn.Module) -> np.ndarray:
        """Top ``max(topk)`` item IDs of every user of either split, int64 [n_union_users, max_k]."""
        return self.union.rank(model)

    def valid_metrics(self, ranked: np.ndarray) -> Dict[str, float]:
        return self.valid.metrics_of(ranked[self.valid_rows])

    def test_metrics(self, ranked: np.ndarray) -> Dict[str, float]:
        return self.test.metrics_of(ranked[self.test_rows])

    @staticmethod
    def rank_both(valid: TopKEvaluator, test: TopKEvaluator, model: torch.nn.Module
                  ) -> Tuple[np.ndarray, np.ndarray]:
        """(valid's ranking, test's ranking) of ``model``, each as its evaluator's :meth:`~TopKEvaluator.rank`
        gives it: one ranking of the union where :meth:`of` allows it, else each split ranked alone."""
        joint = JointRanking.of(valid, test)
        if joint is None:
            return valid.rank(model), test.rank(model)
        ranked = joint.rank(model)
        return ranked[joint.valid_rows], ranked[joint.test_rows]

