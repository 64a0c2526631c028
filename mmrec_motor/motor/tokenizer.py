"""Item tokenizer: quantize one modality's item features into discrete token IDs.

For a feature matrix ``X`` of shape ``(n_items, D)`` the pipeline is::

    X  --normalize-->  X'  --PCA (optional)-->  Z in R^{n x D'}  --quantizer-->  T in [0, K)^{n x M}

* normalize: ``'l2'``       x' = x / max(||x||_2, 1e-12)
             ``'standard'`` x'_j = (x_j - mean_j) / std_j   (std_j = 0 -> 1)
             ``'none'``     x' = x
* PCA to ``D'`` dimensions: z = (x' - mu) C^T, C in R^{D' x D} the top principal directions. Used
  when ``pca_dim`` asks for it, when ``D`` is not divisible by ``M`` (PCA to the largest multiple of
  ``M``, with a warning), by default for ``'rq'`` when ``D > RQ_MAX_DIM`` (= 512, to 256 dims), and by
  default for ``'opq'`` when ``D > OPQ_DEFAULT_PCA_DIM`` (= 256; OPQ's
  rotation is a D x D problem and did not finish in 5 minutes on raw 4096-d features on a 2-core CPU).
  C is found by seeded randomized SVD (Halko et al.: D'+16 probes, 4 power iterations), because an
  exact 4096-d PCA (faiss ``PCAMatrix``: covariance + full eigendecomposition) took 97 s for Baby's
  7,050 items on this project's 2-core machine.
* quantizer, ``K = 2 ** nbits`` codewords per codebook:
    ``'pq'``  product quantization: Z is split into M sub-vectors of D'/M dims; token ``t_s`` is the
              nearest of K centroids of sub-space s.
    ``'opq'`` a learned rotation R (faiss ``OPQMatrix``) first, then PQ of ``Z R^T``.
    ``'rq'``  residual quantization: M stages, each with K codewords of full dimension D';
              token ``t_s`` quantizes the residual left by stages ``< s`` (beam search, faiss
              ``ResidualQuantizer``).

Statistics (``TokenizerResult.stats``):
    ``utilisation``     list of M floats: |{distinct tokens in sub-space s}| / K
    ``collision_rate``  share of items whose full token tuple equals another item's
    ``recon_mse``       mean over items and dims of (z - decode(encode(z)))^2 in the space the quantizer
                        sees (after normalisation / PCA / rotation)
    ``recon_rel``       sum ||z - z_hat||^2 / sum ||z - mean(z)||^2 (scale-free; 1.0 = as bad as the mean)
    ``pca_explained``   share of the normalised features' variance kept by the PCA (1.0 without PCA)
    ``seconds``         wall time of fit + encode
and the effective settings (``dim_in``, ``dim_quantized``, ``num_subspaces``, ``nbits``, ``K`` ...).
Determinism: faiss' k-means is seeded with ``params.seed`` (and the training subsample too), so two
runs with one seed give identical tokens.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

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


def _faiss():
    import faiss  # imported where used (heavy optional dependency)
    return faiss


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
            is still encoded). ``None`` = all.
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
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(f"{name}: {rows.size} of {arr.shape[0]} rows contain NaN or inf "
                         f"(first: {rows[:5].tolist()})")
    return arr


def unpack_codes(codes: np.ndarray, M: int, nbits: int) -> np.ndarray:
    """Unpack faiss' packed codes (n, code_size) uint8 into tokens (n, M) int64.

    faiss writes code s in bits [s*nbits, (s+1)*nbits) of a little-endian bit string.
    """
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if nbits == 8:
        return codes[:, :M].astype(np.int64)
    bits = np.unpackbits(codes, axis=1, bitorder="little")[:, :M * nbits]
    bits = bits.reshape(codes.shape[0], M, nbits).astype(np.int64)
    return (bits << np.arange(nbits, dtype=np.int64)).sum(axis=2)


def pack_codes(tokens: np.ndarray, nbits: int, code_size: int) -> np.ndarray:
    """Inverse of :func:`unpack_codes`: tokens (n, M) -> packed uint8 codes (n, code_size)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    n, M = tokens.shape
    bits = ((tokens[:, :, None] >> np.arange(nbits)) & 1).astype(np.uint8).reshape(n, M * nbits)
    pad = code_size * 8 - M * nbits
    if pad:
        bits = np.concatenate([bits, np.zeros((n, pad), np.uint8)], axis=1)
    return np.packbits(bits, axis=1, bitorder="little")


def token_stats(tokens: np.ndarray, K: int) -> Dict[str, Any]:
    """Utilisation per sub-space and the token-tuple collision rate of a token matrix (n, M)."""
    tokens = np.asarray(tokens)
    util = [float(np.unique(tokens[:, s]).size) / K for s in range(tokens.shape[1])]
    _, inverse, counts = np.unique(tokens, axis=0, return_inverse=True, return_counts=True)
    collide = counts[np.asarray(inverse).reshape(-1)] > 1
    return {"utilisation": util, "collision_rate": float(collide.mean()),
            "distinct_tuples": int(counts.size)}


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
            mean = x.mean(axis=0, dtype=np.float64)
            std = x.std(axis=0, dtype=np.float64)
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


@dataclass
class TokenizerResult:
    """What :func:`fit_tokenize` returns.

    Attributes:
        tokens: int64 array (n_items, M), values in [0, K).
        params: the effective parameters (nbits may have been reduced, see ``stats['warnings']``).
        index: the fitted faiss ``IndexPreTransform`` (OPQ rotation if any + ``IndexPQ`` or
            ``IndexResidualQuantizer``), or None when the tokens came from the cache.
        normalizer: the fitted :class:`Normalizer` (None from the cache).
        pca: the fitted :class:`PCA`, or None (no PCA, or tokens from the cache).
        stats: see the module docstring.
    """

    tokens: np.ndarray
    params: TokenizerParams
    stats: Dict[str, Any] = field(default_factory=dict)
    index: Any = None
    normalizer: Optional[Normalizer] = None
    pca: Optional[PCA] = None

    def preprocess(self, x: np.ndarray) -> np.ndarray:
        """Normalisation and PCA of raw features: what the faiss index receives."""
        x = self.normalizer(x)
        return self.pca(x) if self.pca is not None else x

    @property
    def num_subspaces(self) -> int:
        return int(self.tokens.shape[1])

    @property
    def K(self) -> int:
        return self.params.K

    def encode(self, features: np.ndarray) -> np.ndarray:
        """Tokens (n, M) of new items' features with the fitted quantizer (e.g. cold-start items)."""
        if self.index is None:
            raise RuntimeError("this result has no fitted quantizer (tokens came from the cache); "
                               "refit with fit_tokenize or load a saved quantizer")
        x = validate_features(features, name="features")
        if x.shape[1] != self.stats["dim_in"]:
            raise ValueError(f"features: expected {self.stats['dim_in']} columns, got shape {x.shape}")
        with _faiss_threads(None):
            codes = self.index.sa_encode(self.preprocess(x))
        return unpack_codes(codes, self.num_subspaces, self.params.nbits)

    def save(self, path: str) -> None:
        """Save the fitted quantizer (faiss index + normaliser + params) to one ``.npz`` file."""
        if self.index is None:
            raise RuntimeError("nothing to save: this result has no fitted quantizer")
        faiss = _faiss()
        arrays = {"faiss_index": faiss.serialize_index(self.index),
                  "meta": np.frombuffer(json.dumps({"params": self.params.to_dict(),
                                                    "normalize": self.normalizer.kind,
                                                    "stats": self.stats}).encode(), np.uint8)}
        if self.normalizer.mean is not None:
            arrays["norm_mean"], arrays["norm_scale"] = self.normalizer.mean, self.normalizer.scale
        if self.pca is not None:
            arrays["pca_mean"], arrays["pca_components"] = self.pca.mean, self.pca.components
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str) -> "TokenizerResult":
        """Load a quantizer saved by :meth:`save` (``tokens`` is empty; use :meth:`encode`)."""
        faiss = _faiss()
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            index = faiss.deserialize_index(z["faiss_index"])
            norm = Normalizer(meta["normalize"], z["norm_mean"] if "norm_mean" in z else None,
                              z["norm_scale"] if "norm_scale" in z else None)
            pca = (PCA(z["pca_mean"], z["pca_components"], meta["stats"].get("pca_explained", 1.0))
                   if "pca_mean" in z else None)
        params = TokenizerParams(**meta["params"])
        return cls(tokens=np.zeros((0, params.num_subspaces), np.int64), params=params,
                   stats=meta["stats"], index=index, normalizer=norm, pca=pca)


def _plan_dims(D: int, n_train: int, params: TokenizerParams, notes: list) -> int:
    """Dimension the quantizer sees (PCA target, or D for no PCA)."""
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
        msg = f"rq: {n_train} training items for {target} dims: PCA to {n_train} dims first"
        warnings.warn(msg, stacklevel=4)
        notes.append(msg)
        target = n_train
    if params.quantizer in ("pq", "opq") and target % M:
        new = (target // M) * M
        msg = (f"feature dimension {target} is not divisible by num_subspaces M={M}: applying PCA to "
               f"{new} dims (the largest multiple of M <= {target})")
        warnings.warn(msg, stacklevel=4)
        notes.append(msg)
        target = new
    if target < D and target > n_train:
        new = (n_train // M) * M if params.quantizer != "rq" else n_train
        if new < M:
            raise ValueError(f"cannot apply PCA to {target} dims with only {n_train} training items and "
                             f"M={M}: expected at least M items")
        msg = (f"PCA to {target} dims needs at least as many training items; there are {n_train}: "
               f"using {new} dims")
        warnings.warn(msg, stacklevel=4)
        notes.append(msg)
        target = new
    return target


def _effective_nbits(n_train: int, params: TokenizerParams, notes: list) -> int:
    nbits = params.nbits
    K = 2 ** nbits
    if n_train < K:
        new = int(math.floor(math.log2(n_train)))
        if new < MIN_NBITS:
            raise ValueError(f"cannot quantize: {n_train} training items is too few for even K=2 "
                             f"codewords")
        msg = (f"nbits reduced from {nbits} to {new} (K {K} -> {2 ** new}): k-means needs at least K "
               f"training points and there are only {n_train} items")
        warnings.warn(msg, stacklevel=4)
        notes.append(msg)
        nbits = new
        K = 2 ** nbits
    if n_train < FAISS_POINTS_PER_CENTROID * K:
        msg = (f"only {n_train} training items for K={K} codewords (faiss advises >= "
               f"{FAISS_POINTS_PER_CENTROID * K}); centroids will be noisy")
        warnings.warn(msg, stacklevel=4)
        notes.append(msg)
    return nbits


def _configure_clustering(cp, seed: int) -> None:
    cp.seed = int(seed) & 0x7FFFFFFF
    cp.min_points_per_centroid = 1  # we warn ourselves (Python warning) instead of faiss' stderr line
    cp.verbose = False


@contextlib.contextmanager
def _faiss_threads(n_threads: Optional[int]):
    """faiss' OpenMP threads = n_threads (default: torch.get_num_threads()) inside the block.

    Busy-waiting OpenMP threads on a loaded 2-core machine made a tiny OPQ fit take 90 s instead
    of 2 s; following torch's setting (the ``num_threads`` key) keeps one knob for a whole run.
    Tokens do not depend on the thread count.
    """
    faiss = _faiss()
    if n_threads is None:
        import torch
        n_threads = torch.get_num_threads()
    old = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, int(n_threads)))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(old)


def fit_tokenize(features, params: Optional[TokenizerParams] = None,
                 n_items: Optional[int] = None, name: str = "features",
                 n_threads: Optional[int] = None) -> TokenizerResult:
    """Fit a quantizer on ``features`` (n_items, D) and return every item's tokens (n_items, M).

    Args:
        features: array-like (n_items, D), any real dtype (converted to float32, C-contiguous).
        params: :class:`TokenizerParams` (defaults: PQ, M=8, nbits=8, l2).
        n_items: if given, the number of rows expected (ValueError otherwise).
        name: what to call the array in error messages (e.g. the file name).
        n_threads: faiss' OpenMP threads for the fit (default ``torch.get_num_threads()``; the PCA
            runs in torch with torch's own setting).

    Raises:
        ValueError: not 2-D, wrong number of rows, NaN/inf rows, M > D, too few items.
    """
    with _faiss_threads(n_threads):
        return _fit_tokenize(features, params, n_items, name)


def _fit_tokenize(features, params: Optional[TokenizerParams] = None,
                  n_items: Optional[int] = None, name: str = "features") -> TokenizerResult:
    """The body of :func:`fit_tokenize` (faiss threads already set)."""
    faiss = _faiss()
    params = params or TokenizerParams()
    t0 = time.perf_counter()
    x = validate_features(features, n_items, name)
    n, D = x.shape
    notes: list = []

    norm = Normalizer.fit(params.normalize, x)
    xn = norm(x)
    sel = None
    if params.max_train_items and n > params.max_train_items:
        sel = np.sort(np.random.default_rng(params.seed).choice(n, params.max_train_items, replace=False))
    n_train = n if sel is None else sel.size

    d_q = _plan_dims(D, n_train, params, notes)
    nbits = _effective_nbits(n_train, params, notes)
    pca = None
    if d_q < D:
        pca = PCA.fit(xn if sel is None else xn[sel], d_q, params.seed)
        xn = pca(xn)
    xtrain = xn if sel is None else xn[sel]
    eff = dataclasses.replace(params, nbits=nbits)
    M = params.num_subspaces

    if params.quantizer == "rq":
        sub = faiss.IndexResidualQuantizer(d_q, M, nbits)
        _configure_clustering(sub.rq.cp, params.seed)
    else:
        sub = faiss.IndexPQ(d_q, M, nbits)
        _configure_clustering(sub.pq.cp, params.seed)
    index = faiss.IndexPreTransform(sub)
    keep_alive = [sub]
    if params.quantizer == "opq":
        opq = faiss.OPQMatrix(d_q, M)
        opq_pq = faiss.ProductQuantizer(d_q, M, nbits)  # OPQ's inner PQ: our nbits and seed
        _configure_clustering(opq_pq.cp, params.seed)
        opq.pq = opq_pq
        keep_alive += [opq, opq_pq]
        index.prepend_transform(opq)
    try:
        index.train(xtrain)
    except RuntimeError as e:  # pragma: no cover - should be prevented by the checks above
        raise ValueError(f"{name}: faiss failed to train the {params.quantizer} quantizer on shape "
                         f"{x.shape}: {e}") from e
    if params.quantizer == "opq":
        faiss.downcast_VectorTransform(index.chain.at(0)).pq = None
    codes = index.sa_encode(xn)
    tokens = unpack_codes(codes, M, nbits)

    # reconstruction error in the space the quantizer sees
    z = xn
    for i in range(index.chain.size()):
        z = faiss.downcast_VectorTransform(index.chain.at(i)).apply(z)
    z_hat = sub.sa_decode(codes)
    err = ((z - z_hat) ** 2).sum(axis=1, dtype=np.float64)
    spread = ((z - z.mean(axis=0)) ** 2).sum(dtype=np.float64)
    seconds = time.perf_counter() - t0

    stats: Dict[str, Any] = {
        "quantizer": params.quantizer, "n_items": n, "dim_in": D, "dim_quantized": d_q,
        "num_subspaces": M, "nbits": nbits, "K": 2 ** nbits, "normalize": params.normalize,
        "n_train": n_train, "pca_explained": pca.explained if pca is not None else 1.0,
        **token_stats(tokens, 2 ** nbits),
        "recon_mse": float(err.sum() / (n * d_q)),
        "recon_rel": float(err.sum() / spread) if spread > 0 else 0.0,
        "seconds": round(seconds, 4), "from_cache": False, "warnings": notes,
    }
    return TokenizerResult(tokens=tokens, params=eff, stats=stats, index=index, normalizer=norm, pca=pca)
