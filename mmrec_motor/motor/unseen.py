"""The length of items that no training interaction has reached (``motor_unseen_norm``).

Why. A backbone trained with BPR's loss (or any loss whose positives push items towards their
users) writes an item's popularity into the length of its representation: on sports20 MOTOR's item
vectors under BPR are 2.23 long for items with one training interaction and 3.64 for items with
more than ten. An item with none (held out of training by the inductive cold-start protocol, or new
to the catalogue) is built from tokens and fine cells that other items trained, so its direction
comes from its content, but its length says "never bought": 2.16, below every trained bucket. Its
users rank it near the top of their lists (mean percentile rank 0.28, better than content-kNN's
0.31) and yet it rarely reaches a top 20 (docs/motor-design.md section 9).

The rule. With E the (n, d) item table MOTOR outputs, c_i the item's training interactions,
U = {i : c_i = 0} the unseen items and S the others, every row of U is multiplied by one factor

    s = (sum_{i in S} w_i ||e_i||) / (sum_{i in S} w_i)  /  ((1 / |U|) sum_{j in U} ||e_j||),

``mean``: w_i = 1 (the unseen items, as a group, get the mean length of a trained item: under a
holdout drawn uniformly from the items, that is the length they would have had in expectation);
``weighted``: w_i = c_i (the mean length of a trained item weighted by its interactions, i.e. of the
item behind a random training interaction; favours unseen items more). One factor for the group
keeps the unseen items' relative lengths, which carry their content neighbourhoods' popularity.
s is computed from the current table and detached (no gradient flows through it); rows of S are
unchanged, and so is the loss of any backbone that never reads an unseen row in training.

No parameter, nothing chosen on the held-out items: the rule reads only the training interactions
and the table itself.

Content neighbours (``motor_unseen_neighbours`` k, before the length rule). An unseen item's tokens
and fine cell were trained by other items, as parts of their rows; the rows of its nearest trained
items (cosine of the features MOTOR tokenized) say where items like it ended up. Each unseen row
becomes

    e_i <- (e_i + (1 / k) sum_{j in N_k(i)} sg(e_j)) / 2,     N_k(i): the k most similar trained items,

then the length rule above applies. sg: no gradient reaches the trained rows through the blend.
Like the length rule, it reads no held-out interaction; k is fixed (10, MMRec's kNN size in FREEDOM
and LATTICE), not chosen on the held-out items (docs/motor-design.md section 11).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch

#: ``motor_unseen_norm`` values: auto (= mean under the cold-start protocol, otherwise off)
UNSEEN_NORM_MODES = ("auto", "mean", "weighted", "off")


def training_item_counts(dataset, n_items: int) -> np.ndarray:
    """Training interactions per item, (n_items,) int64, from ``dataset.inter_matrix(form="csr")``
    (this runtime's :class:`RecData` and MMRec's ``TrainDataLoader`` both have it).

    Raises:
        ValueError: no dataset, no ``inter_matrix``, or a matrix whose width is not n_items.
    """
    if dataset is None or not hasattr(dataset, "inter_matrix"):
        raise ValueError("motor_unseen_norm, motor_unseen_neighbours and motor_fine_own_min_interactions "
                         "need the training interactions: pass the training data "
                         "(an object with inter_matrix(form='csr'), e.g. MMRec's TrainDataLoader) to "
                         f"motorize, got {type(dataset).__name__}")
    matrix = dataset.inter_matrix(form="csr")
    if matrix.shape[1] != n_items:
        raise ValueError(f"training interactions: the training matrix has {matrix.shape[1]} item columns, "
                         f"expected n_items = {n_items}")
    return np.asarray((matrix != 0).sum(axis=0)).ravel().astype(np.int64)


def unseen_weights(counts: Sequence[int], mode: str) -> Optional[np.ndarray]:
    """The weights w_i of the module docstring, (n_items,) float32 with w = 0 on unseen items, or
    None when the rule does nothing (mode ``off``, or no unseen item).

    Raises:
        ValueError: an unknown mode, negative counts, or no trained item to take a length from.
    """
    if mode not in ("mean", "weighted", "off"):
        raise ValueError(f"motor_unseen_norm must be one of {', '.join(UNSEEN_NORM_MODES)}, got {mode!r}")
    counts = np.asarray(counts)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError(f"motor_unseen_norm: training counts must be a 1-D array >= 0, got shape "
                         f"{counts.shape}, min {counts.min() if counts.size else None}")
    if mode == "off" or (counts > 0).all():
        return None
    if not (counts > 0).any():
        raise ValueError("motor_unseen_norm: no item has a training interaction, so there is no "
                         "trained length to give the unseen ones")
    return (counts > 0).astype(np.float32) if mode == "mean" else counts.astype(np.float32)


def unseen_factor(table: torch.Tensor, weights: torch.Tensor, unseen: torch.Tensor) -> torch.Tensor:
    """s of the module docstring (a detached scalar) for ``table`` (n, d), ``weights`` (n,) and
    the boolean ``unseen`` (n,)."""
    with torch.no_grad():
        norms = table.detach().norm(dim=1)
        target = (weights * norms).sum() / weights.sum()
        return target / norms[unseen].mean().clamp_min(torch.finfo(norms.dtype).tiny)


def rescale_unseen(table: torch.Tensor, weights: torch.Tensor, unseen: torch.Tensor,
                   rows: Optional[torch.Tensor] = None, full: Optional[torch.Tensor] = None
                   ) -> torch.Tensor:
    """``table`` with its unseen rows multiplied by s.

    ``rows`` None: ``table`` is the whole (n, d) table. Otherwise ``table`` holds the rows ``rows``
    (len(rows), d) and ``full`` the whole table that s is computed from.
    """
    if rows is None:
        s = unseen_factor(table, weights, unseen)
        hit = unseen
    else:
        s = unseen_factor(full, weights, unseen)
        hit = unseen[rows]
    scale = torch.where(hit, s.to(table.dtype), torch.ones((), dtype=table.dtype, device=table.device))
    return table * scale.unsqueeze(-1)


# ------------------------------------------------------------------ content neighbours (motor_unseen_neighbours)

def unseen_neighbours(content: Sequence[np.ndarray], counts: Sequence[int], k: int,
                      chunk: int = 1024) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """For every item without a training interaction, its k most similar trained items.

    Similarity: the mean over modalities m of the cosine of the centred, normalised features
    (``content[m]``, (n, D_m) each, rows as :func:`.content.centred_features` gives them), so
    sim(i, j) = (1 / |M|) sum_m <x_im, x_jm> / (||x_im|| ||x_jm||). Returns (unseen item ids (U,),
    neighbour ids (U, k)), int64, or None when k = 0 or no item is unseen.

    Raises:
        ValueError: k < 0, fewer than k trained items, or feature matrices whose row count is not
            the number of items.
    """
    counts = np.asarray(counts)
    if int(k) < 0:
        raise ValueError(f"motor_unseen_neighbours must be >= 0, got {k}")
    unseen = np.flatnonzero(counts == 0)
    if int(k) == 0 or unseen.size == 0:
        return None
    trained = np.flatnonzero(counts > 0)
    if trained.size < k:
        raise ValueError(f"motor_unseen_neighbours: {k} neighbours asked, only {trained.size} trained items")
    units = []
    for x in content:
        x = np.asarray(x, dtype=np.float32)
        if x.shape[0] != counts.shape[0]:
            raise ValueError(f"motor_unseen_neighbours: features of shape {x.shape}, expected "
                             f"{counts.shape[0]} rows (one per item)")
        units.append(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))
    neighbours = np.empty((unseen.size, int(k)), dtype=np.int64)
    for first in range(0, unseen.size, chunk):
        rows = unseen[first:first + chunk]
        sims = sum(u[rows] @ u[trained].T for u in units) / len(units)        # (chunk, T)
        top = np.argpartition(-sims, int(k) - 1, axis=1)[:, :int(k)]
        neighbours[first:first + len(rows)] = trained[top]
    return unseen, neighbours


def blend_neighbours(table: torch.Tensor, unseen: torch.Tensor, neighbours: torch.Tensor,
                     rows: Optional[torch.Tensor] = None, full: Optional[torch.Tensor] = None,
                     weight: float = 0.5) -> torch.Tensor:
    """``table`` with each unseen row e_i replaced by (1 - a) e_i + a mean_{j in N(i)} e_j, a = ``weight``
    (MOTOR uses 1/2; other values are a diagnostic, docs/benchmarks.md section 27), the neighbours'
    mean detached (no gradient reaches the trained rows through it).

    ``unseen`` (U,) and ``neighbours`` (U, k) item ids. ``rows`` None: ``table`` is the whole (n, d)
    table. Otherwise ``table`` holds the rows ``rows`` and ``full`` the whole table (the neighbours'
    rows are read from it).
    """
    source = table if rows is None else full
    borrowed = source.detach()[neighbours].mean(dim=1)                        # (U, d)
    if rows is None:
        out = table.clone()
        out[unseen] = (1.0 - weight) * table[unseen] + weight * borrowed
        return out
    position = torch.full((source.shape[0],), -1, dtype=torch.long, device=table.device)
    position[unseen] = torch.arange(unseen.numel(), device=table.device)
    slot = position[rows]                                                     # (len(rows),)
    hit = slot >= 0
    if not bool(hit.any()):
        return table
    out = table.clone()
    out[hit] = (1.0 - weight) * table[hit] + weight * borrowed[slot[hit]]
    return out
