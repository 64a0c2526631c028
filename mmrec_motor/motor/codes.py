"""Token matrices: faiss' packed codes <-> tokens (n, M), and their statistics (utilisation per
sub-space, collisions of whole token tuples)."""
from __future__ import annotations

from typing import Any, Dict

import numpy as np


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
