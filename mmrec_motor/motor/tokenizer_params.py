"""The tokenizer's settings (:class:`TokenizerParams`) and what they become for one feature matrix:
the width the quantizer sees (:func:`plan_dims`) and the codebook size (:func:`effective_nbits`).

Width D' the quantizer sees, for features (n_items, D), M = ``num_subspaces``, n_train training items:

* ``pca_dim`` given: min(pca_dim, D);
* otherwise, ``'opq'`` on D > ``OPQ_DEFAULT_PCA_DIM`` (= 256): 256 (OPQ's rotation is a D x D problem
  and did not finish in 5 minutes on raw 4096-d features on a 2-core CPU); ``'rq'`` on
  D > ``RQ_MAX_DIM`` (= 512): 256; else D (no PCA);
* then, in this order: ``'rq'`` on D' > n_train: n_train (faiss' RQ fails with more dims than
  vectors); ``'pq'`` / ``'opq'`` with D' not divisible by M: the largest multiple of M <= D'; a PCA
  (D' < D) to more dims than n_train: n_train rounded down to a multiple of M (``'rq'``: n_train).

Codebook size K = 2 ** nbits: reduced to 2 ** floor(log2 n_train) when n_train < K (k-means needs K
points; fewer than 2 training items is an error); fewer than ``FAISS_POINTS_PER_CENTROID`` (= 39) K
training items only warns.

Every adjustment is a line of ``notes`` (the result's ``stats['warnings']``); all but the default
PCAs of ``'opq'`` and ``'rq'`` are also a Python warning (attributed to the caller of ``fit_tokenize``).
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

QUANTIZERS = ("pq", "opq", "rq")
NORMALIZERS = ("l2", "standard", "none")
MIN_NBITS, MAX_NBITS = 1, 16
OPQ_DEFAULT_PCA_DIM = 256
#: RQ's beam search costs O(D) per codeword test: above this width it quantizes a PCA to 256 dims
#: (Baby-sized 4096-d features: about 40 s on one thread, against minutes on the raw width)
RQ_MAX_DIM = 512
#: faiss prints a warning when k-means gets fewer than this many points per centroid.
FAISS_POINTS_PER_CENTROID = 39


#: ``max_train_items: None``: the quantizer trains on all items up to 2^17, on a random 2^17 beyond
#: (faiss' k-means would sample 256 points per centroid anyway, 65,536 at K = 256); every item is encoded
AUTO_MAX_TRAIN_ITEMS = 2 ** 17


@dataclass(frozen=True)
class TokenizerParams:
    """Validated settings of one modality's tokenizer (all of them enter the cache key).

    Attributes:
        quantizer: ``'pq'``, ``'opq'`` or ``'rq'``.
        num_subspaces: M, the number of tokens per item (PQ/OPQ sub-spaces, RQ stages); >= 1.
        nbits: codebook size K = 2**nbits, 1 <= nbits <= 16.
        normalize: ``'l2'``, ``'standard'`` or ``'none'``.
        pca_dim: target dimension of a PCA applied before quantization; ``None``/0 = no PCA unless
            needed (D not divisible by M, or OPQ on D > 256).
        seed: seeds faiss' k-means and the training subsample.
        max_train_items: train the quantizer on at most this many items (random subsample; every item
            is still encoded). ``None`` = all of them up to :data:`AUTO_MAX_TRAIN_ITEMS`, a random
            sample of that many beyond.
    """

    quantizer: str = "pq"
    num_subspaces: int = 8
    nbits: int = 8
    normalize: str = "l2"
    pca_dim: Optional[int] = None
    seed: int = 0
    max_train_items: Optional[int] = None

    def __post_init__(self):
        q = str(self.quantizer).lower() if isinstance(self.quantizer, str) else self.quantizer
        if q not in QUANTIZERS:
            raise ValueError(f"unknown quantizer {self.quantizer!r} (motor_quantizer): expected one of "
                             f"{', '.join(QUANTIZERS)}")
        object.__setattr__(self, "quantizer", q)
        n = str(self.normalize).lower() if self.normalize is not None else "none"
        if n not in NORMALIZERS:
            raise ValueError(f"unknown normalize {self.normalize!r} (motor_normalize): expected one of "
                             f"{', '.join(NORMALIZERS)}")
        object.__setattr__(self, "normalize", n)
        for name in ("num_subspaces", "nbits", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                key = "motor_seed or seed" if name == "seed" else f"motor_{name}"
                raise ValueError(f"{name} ({key}) must be an integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        if not MIN_NBITS <= self.nbits <= MAX_NBITS:
            raise ValueError(f"nbits={self.nbits} is out of range: expected {MIN_NBITS} <= nbits <= "
                             f"{MAX_NBITS} (K = 2**nbits codewords per sub-space; config key motor_nbits)")
        if self.num_subspaces < 1:
            raise ValueError(f"num_subspaces (M) must be >= 1, got {self.num_subspaces} (motor_num_subspaces)")
        for name in ("pca_dim", "max_train_items"):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{name} (motor_{name}) must be None or a non-negative integer, got {v!r}")
            object.__setattr__(self, name, int(v) if v else None)

    @property
    def K(self) -> int:
        return 2 ** self.nbits

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _warn(notes: List[str], msg: str) -> None:
    """A Python warning attributed to the caller of ``fit_tokenize`` (caller -> fit_tokenize ->
    _fit_tokenize -> plan_dims / effective_nbits -> here), kept in ``notes`` too."""
    warnings.warn(msg, stacklevel=5)
    notes.append(msg)


def plan_dims(D: int, n_train: int, params: TokenizerParams, notes: List[str]) -> int:
    """D', the dimension the quantizer sees (a PCA target below D, or D for no PCA): see the module
    docstring. Raises ValueError for M > D, pca_dim < M, or fewer than M training items."""
    M = params.num_subspaces
    if M > D:
        raise ValueError(f"num_subspaces M={M} is larger than the feature dimension D={D}: expected "
                         f"1 <= M <= D")
    target = D
    if params.pca_dim:
        if params.pca_dim < M:
            raise ValueError(f"pca_dim={params.pca_dim} is smaller than num_subspaces M={M}: expected "
                             f"pca_dim >= M")
        target = min(params.pca_dim, D)
    elif params.quantizer == "opq" and D > OPQ_DEFAULT_PCA_DIM:
        target = OPQ_DEFAULT_PCA_DIM
        notes.append(f"opq: PCA {D} -> {target} dims first (OPQ_DEFAULT_PCA_DIM; set pca_dim to change)")
    elif params.quantizer == "rq" and D > RQ_MAX_DIM:
        target = OPQ_DEFAULT_PCA_DIM
        notes.append(f"rq: PCA {D} -> {target} dims first (D > RQ_MAX_DIM = {RQ_MAX_DIM}; set pca_dim to change)")
    if params.quantizer == "rq" and target > n_train:
        # faiss' RQ training fails when the vectors have more dimensions than there are of them
        _warn(notes, f"rq: {n_train} training items for {target} dims: PCA to {n_train} dims first")
        target = n_train
    if params.quantizer in ("pq", "opq") and target % M:
        new = (target // M) * M
        _warn(notes, f"feature dimension {target} is not divisible by num_subspaces M={M}: applying PCA "
                     f"to {new} dims (the largest multiple of M <= {target})")
        target = new
    if target < D and target > n_train:
        new = (n_train // M) * M if params.quantizer != "rq" else n_train
        if new < M:
            raise ValueError(f"cannot apply PCA to {target} dims with only {n_train} training items and "
                             f"M={M}: expected at least M items")
        _warn(notes, f"PCA to {target} dims needs at least as many training items; there are {n_train}: "
                     f"using {new} dims")
        target = new
    return target


def effective_nbits(n_train: int, params: TokenizerParams, notes: List[str]) -> int:
    """nbits for n_train training items: see the module docstring. Raises ValueError below 2 items."""
    if n_train < 2 ** MIN_NBITS:
        raise ValueError(f"cannot quantize: {n_train} training items is too few for even K=2 "
                         f"codewords")
    nbits = params.nbits
    K = 2 ** nbits
    if n_train < K:
        new = int(math.floor(math.log2(n_train)))
        _warn(notes, f"nbits reduced from {nbits} to {new} (K {K} -> {2 ** new}): k-means needs at least "
                     f"K training points and there are only {n_train} items")
        nbits, K = new, 2 ** new
    if n_train < FAISS_POINTS_PER_CENTROID * K:
        _warn(notes, f"only {n_train} training items for K={K} codewords (faiss advises >= "
                     f"{FAISS_POINTS_PER_CENTROID * K}); centroids will be noisy")
    return nbits
