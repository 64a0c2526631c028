"""Content-anchored token embeddings: every token starts from what its items' features say.

A token r (modality m, sub-space s, codeword k) is shared by the items I_r = {i : t_{i,s} = k}. Its
content centroid is the mean of those items' features, after the tokenizer's normalisation and a
centring over all items:

    x_i = normalize(X_m[i]) - mean_j normalize(X_m[j])                (D_m)
    c_r = (1 / |I_r|) sum_{i in I_r} x_i        (0 for a codeword no item uses)     C_m: (M_m K_m, D_m)

Unlike the quantizer's codeword (a point of one sub-space), c_r lives in the whole feature space, so
the mean of an item's L centroids approximates its own (centred) features whatever the quantizer.

``motor_content`` (per run):

* ``none``: token tables drawn at random (U(-a sqrt(L), a sqrt(L))), the design before this module.
* ``init``: E_m = C_m P_m s at step 0, then trained freely. P_m (D_m x d) holds the top-d principal
  directions of C_m's rows (d > D_m: zero-padded), and the scalar s makes the pooled item vectors
  mean_j E[t_ij] have the per-coordinate std a / sqrt(3) of the xavier-uniform ID table they replace.
  No parameter is added; an item never trained on starts where its content puts it.
* ``proj``: E_m = C_m W_m + Delta_m, with W_m (D_m x d) learned and shared by all tokens of the
  modality (init P_m s, as above) and Delta_m (M_m K_m x d) learned (init 0). C_m is a constant
  buffer. Every training pair moves W_m, so a token (and an item) that no training pair reaches
  still moves with the content map: what an unseen item needs. Adds D_m d parameters per modality.

Only numpy and scipy here (torch in :mod:`.tcn`); rows go by the blocks of :mod:`.preprocess`;
nothing imports the runtime.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import scipy.sparse as sp

from .preprocess import row_blocks

CONTENT_MODES = ("none", "init", "proj")


def centred_features(features: np.ndarray, normalize: str = "l2") -> np.ndarray:
    """The tokenizer's row normalisation (``l2``, ``standard`` or ``none``), then the column mean
    removed: (n, D) -> (n, D) float32, computed in float64 by blocks of rows (the one full-size array
    is the float32 result; the features may be a memory map)."""
    if normalize not in ("l2", "standard", "none"):
        raise ValueError(f"unknown normalize {normalize!r}: expected l2, standard or none")
    n, D = features.shape
    shift, scale = np.zeros(D), np.ones(D)
    if normalize == "standard":              # per-column z-score (population std), then centred: 0 mean
        shift = sum(features[a:b].sum(axis=0, dtype=np.float64) for a, b in row_blocks(n)) / n
        var = sum(((features[a:b] - shift) ** 2).sum(axis=0) for a, b in row_blocks(n)) / n
        std = np.sqrt(var)
        scale = 1.0 / np.where(std < 1e-12, 1.0, std)

    def normalised(a: int, b: int) -> np.ndarray:
        x = (np.asarray(features[a:b], dtype=np.float64) - shift) * scale
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12) if normalize == "l2" else x
    mean = sum(normalised(a, b).sum(axis=0) for a, b in row_blocks(n)) / n
    out = np.empty((n, D), dtype=np.float32)
    for a, b in row_blocks(n):
        out[a:b] = normalised(a, b) - mean
    return out


def token_centroids(tokens: np.ndarray, features: np.ndarray, codebook_size: int) -> np.ndarray:
    """C: (M K, D), row s K + k = mean of ``features`` over the items whose token in sub-space s is k
    (zeros where no item has it). tokens (n, M) ints in [0, K); features (n, D)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    features = np.asarray(features, dtype=np.float32)
    n, M = tokens.shape
    if features.shape[0] != n:
        raise ValueError(f"token_centroids: features have {features.shape[0]} rows, tokens {n}")
    K = int(codebook_size)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= K):
        raise ValueError(f"token_centroids: tokens must lie in [0, {K}), got "
                         f"[{int(tokens.min())}, {int(tokens.max())}]")
    rows = tokens + np.arange(M, dtype=np.int64) * K                         # (n, M) rows of C
    sums = np.zeros((M * K, features.shape[1]), dtype=np.float64)
    for a, b in row_blocks(n):         # sums += A_block x_block, A the (M K x block) token-membership matrix
        block_rows = rows[a:b].reshape(-1)
        members = sp.csr_matrix((np.ones(block_rows.size), (block_rows, np.repeat(np.arange(b - a), M))),
                                shape=(M * K, b - a))
        sums += members @ np.asarray(features[a:b], dtype=np.float64)
    counts = np.bincount(rows.reshape(-1), minlength=M * K).astype(np.float64)
    return np.ascontiguousarray(sums / np.maximum(counts, 1.0)[:, None], dtype=np.float32)


def principal_directions(rows: np.ndarray, dim: int) -> np.ndarray:
    """P: (D, dim), the top-``dim`` right singular vectors of ``rows`` (R, D) as columns (signs fixed:
    the largest |entry| of each is positive); columns beyond min(R, D) are zero."""
    rows = np.asarray(rows, dtype=np.float64)
    _, _, vt = np.linalg.svd(rows, full_matrices=False)
    k = min(dim, vt.shape[0])
    comps = vt[:k]
    signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    out = np.zeros((rows.shape[1], dim), dtype=np.float64)
    out[:, :k] = comps.T
    return out.astype(np.float32)


def pooled_std(table: np.ndarray, token_rows: np.ndarray) -> float:
    """Per-coordinate std of the pooled item vectors mean_j table[token_rows[i, j]]: (R, d), (n, L);
    two passes by blocks of items (no (n, L, d) gather of the whole catalogue)."""
    table, token_rows = np.asarray(table, dtype=np.float64), np.asarray(token_rows)
    n = len(token_rows)
    blocks = list(row_blocks(n))
    if len(blocks) <= 1:                 # one block: numpy's std of the whole pooled table
        return float(table[token_rows].mean(axis=1).std())

    def pooled(a: int, b: int) -> np.ndarray:
        return table[token_rows[a:b]].mean(axis=1)
    size = n * table.shape[1]
    mean = sum(pooled(a, b).sum() for a, b in blocks) / size
    return float(np.sqrt(sum(((pooled(a, b) - mean) ** 2).sum() for a, b in blocks) / size))


def content_init(centroids: np.ndarray, dim: int, token_rows: np.ndarray, target_std: float
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """(projection P s: (D, d), initial table C P s: (R, d)) with s chosen so the pooled item vectors
    over ``token_rows`` (n, M, rows of this modality's C) have per-coordinate std ``target_std``."""
    proj = principal_directions(centroids, dim)
    table = centroids @ proj
    std = pooled_std(table, token_rows)
    scale = target_std / std if std > 0 else 1.0
    return (proj * scale).astype(np.float32), (table * scale).astype(np.float32)
