"""Fine content tokens: one k-means cell per item and modality, for item-level capacity.

PQ tokens (:mod:`.tokenizer`) are shared by n / K items each (about 55 on sports20's 13,952 items
with K = 256), so an item's representation mean_j E[t_ij] has little room of its own; an item with
many interactions (which an ID row would fit closely) is held back by the items it shares tokens
with. A fine token adds that room without an ID: the features (normalised as the tokenizer does) are
clustered by flat k-means into K_f = 2^nbits cells over the whole feature space, and

    e_i = TCN(tokens of i) + sum_m F_m[f_im],      F_m in R^{K_f x d}, F_m = 0 at step 0,

so every item starts where the tokens put it, and the items of one cell (K_f close to n / 4: a few
items with near-identical content) share a learned correction. A cell with a popular item is, in
effect, that item's own row; an unseen item gets the correction its content neighbours earned. The
table size K_f d is set by K_f, not by the catalogue.

Own cells (``motor_fine_own_min_interactions`` = m, off by default, :func:`own_cells`): each of the H
items with at least m training interactions leaves its k-means cell for a cell of its own, so the table
has K_f + H rows; H is set by how many items the training data make popular, not by the catalogue.

Only numpy and faiss here; nothing imports the runtime.
"""
from __future__ import annotations

import math
import warnings
from typing import Tuple

import numpy as np


#: ``motor_fine_nbits: auto``: about ``motor_fine_items_per_cell`` (default 4) items a cell, and at most
#: 2^AUTO_MAX_NBITS cells (so the fine tables stop growing at ~64k items: 16,384 x d per modality)
AUTO_ITEMS_PER_CELL = 4
AUTO_MAX_NBITS = 14


def auto_nbits(n_items: int, items_per_cell: float = AUTO_ITEMS_PER_CELL) -> int:
    """round(log2(n / items_per_cell)), clipped to [1, 14]. With 4 items a cell: sports20 (13,952
    items) 12, lfm2k (1,425) 8, toy (300) 6; with 2: sports20 13, lfm2k 9."""
    if not float(items_per_cell) >= 1.0:
        raise ValueError(f"fine tokens: motor_fine_items_per_cell must be >= 1, got {items_per_cell!r}")
    ratio = max(n_items, 2) / float(items_per_cell)
    return int(min(AUTO_MAX_NBITS, max(1, round(math.log2(max(ratio, 1.0))))))


def kmeans_cells(features: np.ndarray, nbits: int, seed: int, normalize: str = "l2",
                 niter: int = 20) -> Tuple[np.ndarray, int]:
    """(cell of each item (n,) int64 in [0, K), K): flat k-means of the normalised rows with
    K = 2^nbits centroids, reduced (with a warning) to the largest power of two <= n."""
    import faiss  # heavy optional dependency, imported where used

    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 4:
        raise ValueError(f"fine tokens: expected features (n_items >= 4, dim), got shape {x.shape}")
    if not 1 <= int(nbits) <= 20:
        raise ValueError(f"fine tokens: nbits (motor_fine_nbits) must lie in [1, 20], got {nbits}")
    if normalize == "l2":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    elif normalize == "standard":
        std = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(std < 1e-12, 1.0, std)
    x = np.ascontiguousarray(x, dtype=np.float32)
    K = 2 ** int(nbits)
    cap = 2 ** int(math.floor(math.log2(x.shape[0])))
    if K > cap:
        warnings.warn(f"fine tokens: K = {K} cells for {x.shape[0]} items; using {cap} (at least one "
                      f"item a cell on average)", stacklevel=2)
        K = cap
    km = faiss.Kmeans(x.shape[1], K, niter=niter, seed=int(seed) & 0x7FFFFFFF, verbose=False,
                      min_points_per_centroid=1)
    km.train(x)
    _, cells = km.index.search(x, 1)
    return cells[:, 0].astype(np.int64), K


def own_cells(cells: np.ndarray, n_cells: int, counts: np.ndarray, min_count: int) -> Tuple[np.ndarray, int]:
    """Give each item with ``counts[i] >= min_count`` a fine cell of its own.

    Args:
        cells: (n,) int64, each item's k-means cell in [0, n_cells).
        n_cells: K, the k-means table's rows.
        counts: (n,) training interactions per item (:func:`.unseen.training_item_counts`).
        min_count: m >= 1.

    Returns:
        (cells', K + H): item i with c(i) >= m moves to cell K + j, j its place among those H items in
        item order; every other item keeps its cell (a cell its popular items left may go unused).
    """
    cells = np.asarray(cells, dtype=np.int64)
    counts = np.asarray(counts)
    if counts.shape != cells.shape:
        raise ValueError(f"fine tokens: training counts of shape {counts.shape}, expected one per item "
                         f"{cells.shape}")
    if int(min_count) < 1:
        raise ValueError(f"fine tokens: motor_fine_own_min_interactions must be >= 1, got {min_count!r}")
    own = np.flatnonzero(counts >= min_count)
    out = cells.copy()
    out[own] = n_cells + np.arange(own.size)
    return out, int(n_cells) + int(own.size)
