"""Test metrics per bucket of the items' training counts (the tables of ``mmrec-motor cold-items``).

c(i) is item i's number of training interactions (distinct training users). Bucket edges
e_0 = 0 < e_1 < ... split the counts into [e_b, e_{b+1}) (the last bucket open); without given edges
they are quantiles of c(i) over the test interactions (:func:`quantile_edges`).
:func:`bucketed_metrics` defines Recall@k and NDCG@k on one bucket.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np

from mmrec_motor.config import ConfigError
from mmrec_motor.data.dataset import PairSet, Split
from mmrec_motor.evaluation import metric_curves
from mmrec_motor.experiments.commands import DEFAULT_BUCKETS
from mmrec_motor.experiments.plan import int_list

K = 20                  # the cut-off of every table here


def item_train_counts(train: Split, n_items: int) -> np.ndarray:
    """int64 [n_items]: each item's number of training interactions (distinct training users; a
    repeated (user, item) row counts once, as in the binary training matrix)."""
    keys = PairSet(train.users, train.items, n_items).keys
    return np.bincount(keys % n_items, minlength=n_items).astype(np.int64)


def parse_edges(text: str) -> List[int]:
    """``"0,5,10"`` -> ``[0, 5, 10]``: strictly increasing integers >= 0; 0 is prepended when missing
    so that every count falls in a bucket."""
    edges = int_list(text, "--buckets")
    if any(e < 0 for e in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ConfigError(f"--buckets: expected strictly increasing integers >= 0, got {text!r}")
    return edges if edges[0] == 0 else [0] + edges


def quantile_edges(counts: np.ndarray, n_buckets: int = DEFAULT_BUCKETS) -> List[int]:
    """Bucket edges from the quantiles of ``counts`` (the training count of the item of each test
    interaction), so that each bucket holds about 1/n_buckets of the test interactions: edge k is
    v_k + 1, v_k the k/n_buckets quantile (``inverted_cdf``: an observed count), plus a first edge 0.
    Ties merge buckets; a last bucket no count reaches is dropped."""
    counts = np.asarray(counts, dtype=np.int64)
    if n_buckets < 1:
        raise ConfigError(f"--n-buckets must be >= 1, got {n_buckets}")
    if len(counts) == 0:
        return [0]
    inner = [int(np.quantile(counts, k / n_buckets, method="inverted_cdf")) + 1 for k in range(1, n_buckets)]
    edges = sorted({0, *inner})
    while len(edges) > 1 and edges[-1] > counts.max():
        edges.pop()
    return edges


def bucket_index(counts: np.ndarray, edges: Sequence[int]) -> np.ndarray:
    """The bucket of each count: b with edges[b] <= count < edges[b+1] (the last bucket is open)."""
    return np.searchsorted(np.asarray(edges), np.asarray(counts), side="right") - 1


def bucket_label(edges: Sequence[int], b: int) -> str:
    """``0``, ``1–4``, ``≥ 50``: the training counts bucket b holds."""
    lo = edges[b]
    if b == len(edges) - 1:
        return f"≥ {lo}"
    hi = edges[b + 1] - 1
    return str(lo) if hi == lo else f"{lo}–{hi}"


def bucketed_metrics(users: np.ndarray, ranked: np.ndarray, test: Split, counts: np.ndarray,
                     edges: Sequence[int], k: int = K) -> List[Dict[str, Any]]:
    """Test Recall@k and NDCG@k per bucket of the items' training counts, then over all items.

    Let T_u be user u's test items (distinct), c(i) item i's number of training interactions
    (:func:`item_train_counts`), bucket b = {i : edges[b] <= c(i) < edges[b+1]} (the last bucket
    open), T_ub = T_u ∩ b and n_ub = |T_ub|. The ranking is the run's own full-sort top-k (every item
    ranked, the user's training items masked; ``ranked[u]`` for ``users[u]``), not restricted to b:

        Recall_b@k = mean over users with n_ub >= 1 of  |top-k(u) ∩ T_ub| / n_ub
        NDCG_b@k   = mean over users with n_ub >= 1 of  DCG_ub / IDCG(min(n_ub, k)),
                     DCG_ub = sum_{j <= k, j-th ranked item in T_ub} 1 / log2(j + 1),
                     IDCG(m) = sum_{j <= m} 1 / log2(j + 1)

    i.e. MMRec's Recall and NDCG (:func:`mmrec_motor.evaluation.metric_curves`) with T_ub as the
    relevance set; with a single bucket they are the ordinary test metrics. Every distinct test
    interaction falls in exactly one bucket.

    Returns one dict per bucket and a last one for all items: ``label``, ``lo``, ``hi`` (None for the
    open bucket / all), ``interactions`` (distinct test pairs), ``users`` (with n_ub >= 1), ``recall``,
    ``ndcg`` (unrounded; None when the bucket has no test interaction).
    """
    users, ranked = np.asarray(users, np.int64), np.asarray(ranked, np.int64)
    counts = np.asarray(counts, np.int64)
    if ranked.ndim != 2 or ranked.shape[0] != len(users) or ranked.shape[1] < k:
        raise ValueError(f"ranked must be [n_users={len(users)}, >= {k}], got {ranked.shape}")
    n_items = len(counts)
    relevant = PairSet(test.users, test.items, n_items)
    pair_users, pair_items = relevant.keys // n_items, relevant.keys % n_items
    row = np.searchsorted(users, pair_users)
    row = np.minimum(row, len(users) - 1)
    if len(users) == 0 or not (users[row] == pair_users).all() or (np.diff(users) <= 0).any():
        raise ValueError("users must be sorted, distinct and include every test user (the top-K file's "
                         "users are the test split's)")
    pair_bucket = bucket_index(counts[pair_items], edges)
    top = ranked[:, :k]
    hits = relevant.contains(users[:, None], top)
    top_bucket = bucket_index(counts[top], edges)
    out = []
    groups = [(b, pair_bucket == b, top_bucket == b) for b in range(len(edges))]
    groups.append((None, np.ones(len(pair_bucket), bool), np.ones(top.shape, bool)))
    for b, pair_in, top_in in groups:
        n_ub = np.bincount(row[pair_in], minlength=len(users))
        have = n_ub >= 1
        entry: Dict[str, Any] = {
            "label": "all items" if b is None else bucket_label(edges, b),
            "lo": None if b is None else int(edges[b]),
            "hi": None if b is None or b == len(edges) - 1 else int(edges[b + 1]),
            "interactions": int(pair_in.sum()), "users": int(have.sum()), "recall": None, "ndcg": None}
        if have.any():
            curves = metric_curves((hits & top_in)[have], n_ub[have])
            entry["recall"] = float(curves["recall"][:, k - 1].mean())
            entry["ndcg"] = float(curves["ndcg"][:, k - 1].mean())
        out.append(entry)
    return out
