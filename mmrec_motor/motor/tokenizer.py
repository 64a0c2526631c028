"""Item tokenizer: quantize one modality's item features into discrete token IDs.

For a feature matrix ``X`` of shape ``(n_items, D)`` the pipeline is::

    X  --normalize-->  X'  --PCA (optional)-->  Z in R^{n x D'}  --quantizer-->  T in [0, K)^{n x M}

* normalize (``'l2'``, ``'standard'``, ``'none'``) and PCA: :mod:`.preprocess`. D' (a PCA when
  ``pca_dim`` asks for it, when D is not divisible by M, by default for ``'rq'`` above 512 dims and for
  ``'opq'`` above 256) and the codebook size: :mod:`.tokenizer_params`.
* quantizer, ``K = 2 ** nbits`` codewords per codebook:
    ``'pq'``  product quantization: Z is split into M sub-vectors of D'/M dims; token ``t_s`` is the
              nearest of K centroids of sub-space s.
    ``'opq'`` a learned rotation R (faiss ``OPQMatrix``) first, then PQ of ``Z R^T``.
    ``'rq'``  residual quantization: M stages, each with K codewords of full dimension D';
              token ``t_s`` quantizes the residual left by stages ``< s`` (beam search, faiss
              ``ResidualQuantizer``).
  faiss' packed codes become tokens in :mod:`.codes`.

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

Memory: the features may be a read-only memory map (the runtime maps MOTOR's feature files). The
quantizer (and the PCA) is fitted on at most ``max_train_items`` rows (by default
:data:`~.tokenizer_params.AUTO_MAX_TRAIN_ITEMS`); normalisation, PCA, encoding and the reconstruction
statistics then run over blocks of :data:`~.preprocess.BLOCK_ROWS` rows, so a 1M x 4096 float32
matrix (16 GB) tokenizes in a few GB of memory beside its page cache.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np

from .codes import pack_codes, token_stats, unpack_codes
from .preprocess import PCA, Normalizer, row_blocks, validate_features
from .tokenizer_params import AUTO_MAX_TRAIN_ITEMS, TokenizerParams, effective_nbits, plan_dims

#: Bumped when the same features and parameters give other tokens (the token cache's key has it).
#: 2: RQ stages after an item is exactly reconstructed give token 0 (:func:`_settle_exhausted_stages`).
TOKENIZER_VERSION = 2

__all__ = ["TokenizerParams", "TokenizerResult", "fit_tokenize", "validate_features", "pack_codes",
           "unpack_codes", "token_stats", "PCA", "Normalizer"]


def _faiss():
    import faiss  # imported where used (heavy optional dependency)
    return faiss


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
            z = self.preprocess(x)
            codes = self.index.sa_encode(z)
        tokens = unpack_codes(codes, self.num_subspaces, self.params.nbits)
        sub = _faiss().downcast_index(self.index.index)
        return _settle_exhausted_stages(tokens, _transformed(self.index, z), sub)

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


#: An RQ item is exactly reconstructed once its residual energy is at most this share of its own.
RQ_EXACT_TOL = 1e-8


def _transformed(index, z: np.ndarray) -> np.ndarray:
    """z after the index's pre-transforms (the OPQ rotation, if any): what the quantizer sees."""
    faiss = _faiss()
    for i in range(index.chain.size()):
        z = faiss.downcast_VectorTransform(index.chain.at(i)).apply(z)
    return z


def _settle_exhausted_stages(tokens: np.ndarray, z: np.ndarray, sub) -> np.ndarray:
    """RQ only (other quantizers: ``tokens`` unchanged): once an item's residual
    ``r_s = z - sum_{t <= s} C_t[tokens_t]`` has ``||r_s||^2 <= RQ_EXACT_TOL * ||z||^2``, its tokens of
    the later stages are set to 0. ``tokens`` (n, M) int64 is changed in place and returned; ``z``
    (n, d) are the rows the quantizer encoded.

    Why: a stage fitted after every training item is already reconstructed (a small catalogue, where
    the first stage's K cells hold about one item each) learns codewords of float32 rounding noise, so
    which of them an item gets carries no content and differs between CPUs (faiss' and BLAS' SIMD
    width). Token 0 is the same everywhere."""
    if not hasattr(sub, "rq"):
        return tokens
    n, M = tokens.shape
    K, d = 1 << int(sub.rq.nbits.at(0)), sub.rq.d
    codebooks = _faiss().vector_to_array(sub.rq.codebooks).reshape(M, K, d).astype(np.float64)
    residual = z.astype(np.float64)
    limit = RQ_EXACT_TOL * (residual ** 2).sum(axis=1)
    exact = np.zeros(n, dtype=bool)
    for s in range(M):
        tokens[exact, s] = 0
        residual -= codebooks[s, tokens[:, s]]
        exact |= (residual ** 2).sum(axis=1) <= limit
    return tokens


def _encode_blocks(x: np.ndarray, norm: Normalizer, pca: Optional[PCA], index, sub, M: int, nbits: int):
    """Every row's tokens, and the reconstruction error and spread of the module docstring, over
    blocks of rows (:func:`~.preprocess.row_blocks`): (tokens (n, M) int64, sum ||z - z_hat||^2,
    sum ||z - mean z||^2), z the rows in the space the quantizer sees, z_hat faiss' decoding of its
    codes (before :func:`_settle_exhausted_stages`). The spread of the blocks is combined exactly
    (Chan et al.'s pairwise update of count, mean and squared deviations)."""
    tokens, err = [], 0.0
    count, mean, spread = 0, None, 0.0
    for first, last in row_blocks(x.shape[0]):
        block = norm(x[first:last])
        if pca is not None:
            block = pca(block)
        block_codes = index.sa_encode(block)
        z = _transformed(index, block)
        tokens.append(_settle_exhausted_stages(unpack_codes(block_codes, M, nbits), z, sub))
        err += float(((z - sub.sa_decode(block_codes)) ** 2).sum(axis=1, dtype=np.float64).sum())
        block_mean = z.mean(axis=0, dtype=np.float64)
        block_spread = float(((z - z.mean(axis=0)) ** 2).sum(dtype=np.float64))
        if mean is None:
            count, mean, spread = len(z), block_mean, block_spread
        else:
            total = count + len(z)
            delta = block_mean - mean
            spread += block_spread + float((delta ** 2).sum()) * count * len(z) / total
            mean, count = mean + delta * len(z) / total, total
    return np.concatenate(tokens), err, spread


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

    sel = None
    cap = params.max_train_items or AUTO_MAX_TRAIN_ITEMS
    if n > cap:
        sel = np.sort(np.random.default_rng(params.seed).choice(n, cap, replace=False))
    n_train = n if sel is None else sel.size
    norm = Normalizer.fit(params.normalize, x)

    d_q = plan_dims(D, n_train, params, notes)
    nbits = effective_nbits(n_train, params, notes)
    xtrain = norm(x if sel is None else x[sel])
    pca = PCA.fit(xtrain, d_q, params.seed) if d_q < D else None
    if pca is not None:
        xtrain = pca(xtrain)
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
    del xtrain
    tokens, err, spread = _encode_blocks(x, norm, pca, index, sub, M, nbits)
    seconds = time.perf_counter() - t0

    stats: Dict[str, Any] = {
        "quantizer": params.quantizer, "n_items": n, "dim_in": D, "dim_quantized": d_q,
        "num_subspaces": M, "nbits": nbits, "K": 2 ** nbits, "normalize": params.normalize,
        "n_train": n_train, "pca_explained": pca.explained if pca is not None else 1.0,
        **token_stats(tokens, 2 ** nbits),
        "recon_mse": float(err / (n * d_q)),
        "recon_rel": float(err / spread) if spread > 0 else 0.0,
        "seconds": round(seconds, 4), "from_cache": False, "warnings": notes,
    }
    return TokenizerResult(tokens=tokens, params=eff, stats=stats, index=index, normalizer=norm, pca=pca)
