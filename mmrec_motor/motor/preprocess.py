"""Features before the quantizer: checked (:func:`validate_features`), normalised (:class:`Normalizer`)
and reduced by PCA (:class:`PCA`); the fitted pieces are kept to encode new items the same way.

For a feature matrix X (n_items, D):

* normalize: ``'l2'``       x' = x / max(||x||_2, 1e-12)
             ``'standard'`` x'_j = (x_j - mean_j) / std_j   (std_j = 0 -> 1)
             ``'none'``     x' = x
* PCA to D' dimensions (D' from :func:`.tokenizer_params.plan_dims`): z = (x' - mu) C^T, C in
  R^{D' x D} the top principal directions, found by seeded randomized SVD (Halko et al.: D'+16
  probes, 4 power iterations), because an exact 4096-d PCA (faiss ``PCAMatrix``: covariance + full
  eigendecomposition) took 97 s for Baby's 7,050 items on this project's 2-core machine.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

#: rows checked, normalised, projected and encoded at a time (so a memory-mapped 1M x 4096 matrix
#: never has a full-size temporary)
BLOCK_ROWS = 65536


def row_blocks(n: int):
    """(first, last) row bounds of n rows in blocks of :data:`BLOCK_ROWS` (read when called)."""
    return ((first, min(first + BLOCK_ROWS, n)) for first in range(0, n, BLOCK_ROWS))


def validate_features(features, n_items: Optional[int] = None, name: str = "features") -> np.ndarray:
    """Check a feature matrix and return it as float32, C-contiguous, shape (n_items, D).

    Raises ValueError naming ``name``, the shape seen and the shape expected.
    """
    try:
        arr = np.asarray(features)
    except Exception as e:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name}: cannot convert to an array ({e})") from e
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_items, dim), got shape {arr.shape}")
    if n_items is not None and arr.shape[0] != n_items:
        raise ValueError(f"{name}: has {arr.shape[0]} rows (shape {arr.shape}), expected n_items = "
                         f"{n_items} rows")
    if arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"{name}: need at least 2 items and 1 dimension, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)      # no copy of a float32 C-order (mapped) array
    bad = np.concatenate([~np.isfinite(arr[a:b]).all(axis=1) for a, b in row_blocks(arr.shape[0])])
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(f"{name}: {rows.size} of {arr.shape[0]} rows contain NaN or inf "
                         f"(first: {rows[:5].tolist()})")
    return arr


class PCA:
    """z = (x - mean) @ components.T, components (D', D) with orthonormal rows."""

    def __init__(self, mean: np.ndarray, components: np.ndarray, explained: float = 1.0):
        self.mean = np.ascontiguousarray(mean, dtype=np.float32)
        self.components = np.ascontiguousarray(components, dtype=np.float32)
        self.explained = float(explained)

    @classmethod
    def fit(cls, x: np.ndarray, dim: int, seed: int, oversample: int = 16, n_iter: int = 4) -> "PCA":
        """Top-``dim`` principal directions of x (n, D) by seeded randomized SVD.

        Power iterations on the centred matrix without materialising it; each iteration is
        re-orthonormalised (QR). Signs are fixed (largest |entry| of each direction positive) so the
        result does not depend on LAPACK's sign conventions. The algebra runs in torch, so it uses
        ``torch.get_num_threads()`` threads (``num_threads``) like the rest of a run.
        """
        import torch
        n, D = x.shape
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        mean = xt.mean(dim=0, dtype=torch.float64).float()
        k = min(dim + oversample, D, n)
        omega = torch.from_numpy(np.random.default_rng(seed).standard_normal((D, k)).astype(np.float32))

        def times(m):       # (x - mean) @ m
            return xt @ m - mean @ m

        def times_t(q):     # (x - mean).T @ q
            return xt.t() @ q - torch.outer(mean, q.sum(dim=0))

        q = torch.linalg.qr(times(omega)).Q
        for _ in range(n_iter):
            z = torch.linalg.qr(times_t(q)).Q
            q = torch.linalg.qr(times(z)).Q
        b = times_t(q).t().double()               # (k, D) = Q^T (x - mean)
        _, svals, vt = torch.linalg.svd(b, full_matrices=False)
        comps = vt[:dim]
        flip = torch.sign(comps[torch.arange(dim), comps.abs().argmax(dim=1)])
        comps = (comps * flip[:, None]).numpy()
        total = sum(float((xt[i:i + 4096].double() ** 2).sum()) for i in range(0, n, 4096))
        total -= n * float((mean.double() ** 2).sum())
        explained = float((svals[:dim] ** 2).sum()) / total if total > 0 else 1.0
        return cls(mean.numpy(), comps, min(explained, 1.0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch
        z = (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) - torch.from_numpy(self.mean)) \
            @ torch.from_numpy(self.components).t()
        return np.ascontiguousarray(z.numpy(), dtype=np.float32)


class Normalizer:
    """Row / column normalisation applied before the faiss chain (kept to encode new items)."""

    def __init__(self, kind: str, mean: Optional[np.ndarray] = None, scale: Optional[np.ndarray] = None):
        self.kind, self.mean, self.scale = kind, mean, scale

    @classmethod
    def fit(cls, kind: str, x: np.ndarray) -> "Normalizer":
        if kind == "standard":
            if len(x) <= BLOCK_ROWS:
                mean = x.mean(axis=0, dtype=np.float64)
                std = x.std(axis=0, dtype=np.float64)
            else:                       # by blocks: the sum, then the squared deviations, in float64
                mean = sum(x[a:b].sum(axis=0, dtype=np.float64) for a, b in row_blocks(len(x))) / len(x)
                squares = sum(((x[a:b] - mean) ** 2).sum(axis=0) for a, b in row_blocks(len(x)))
                std = np.sqrt(squares / len(x))
            std[std < 1e-12] = 1.0
            return cls(kind, mean.astype(np.float32), (1.0 / std).astype(np.float32))
        return cls(kind)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "l2":
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            x = x / np.maximum(norms, 1e-12)
        elif self.kind == "standard":
            x = (x - self.mean) * self.scale
        return np.ascontiguousarray(x, dtype=np.float32)
