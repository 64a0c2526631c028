"""LMDB cache of token matrices, so that a dataset is tokenized once per setting.

Key (hex sha256) of an entry::

    sha256( FORMAT_VERSION | faiss version | features: dtype, shape, raw bytes (C order)
            | every TokenizerParams field (sorted JSON) | n_items )

so a changed feature array, a changed parameter, a new faiss or a new storage format never returns
stale tokens (it misses and the tokens are recomputed).

Value layout::

    b"MOTORTK1" | uint32 little-endian header length | header (JSON) | payload

header = {"format": FORMAT_VERSION, "shape": [n, M], "dtype": "uint8"|"uint16",
          "sha256": hex digest of payload, "stats": {...}}; payload = the tokens in that dtype, C order.
A value whose magic, header, length or checksum does not verify is *corrupt*: it is deleted, a
warning is emitted and the caller recomputes. An LMDB file that cannot be opened (garbage, another
LMDB version) is moved aside (``*.corrupt``) with a warning and a new one is created; a directory
that cannot be created or written raises ``RuntimeError`` naming the path.
The map starts at 32 MiB and doubles when full.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import time
import warnings
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .tokenizer import TokenizerParams, fit_tokenize, validate_features

FORMAT_VERSION = 1
MAGIC = b"MOTORTK1"
_META_KEY = b"__motor_token_cache_format__"
INITIAL_MAP_SIZE = 32 << 20


def feature_digest(features: np.ndarray) -> str:
    """sha256 over dtype, shape and raw bytes (C order) of an array."""
    arr = np.ascontiguousarray(features)
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}|{arr.shape}|".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def cache_key(features: np.ndarray, params: TokenizerParams, n_items: Optional[int] = None,
              digest: Optional[str] = None) -> bytes:
    """The cache key of (features, params); see the module docstring."""
    try:
        import faiss
        fv = faiss.__version__
    except Exception:  # pragma: no cover
        fv = "?"
    h = hashlib.sha256()
    h.update(f"motor-token-cache/v{FORMAT_VERSION}|faiss {fv}|".encode())
    h.update((digest or feature_digest(features)).encode())
    h.update(json.dumps(params.to_dict(), sort_keys=True).encode())
    h.update(f"|n_items={n_items}".encode())
    return h.hexdigest().encode()


class CorruptEntry(Exception):
    pass


def encode_value(tokens: np.ndarray, stats: Dict[str, Any]) -> bytes:
    tokens = np.asarray(tokens)
    dtype = np.uint8 if tokens.max(initial=0) < 256 else np.uint16
    payload = np.ascontiguousarray(tokens, dtype=dtype).tobytes()
    header = json.dumps({"format": FORMAT_VERSION, "shape": list(tokens.shape),
                         "dtype": np.dtype(dtype).name, "sha256": hashlib.sha256(payload).hexdigest(),
                         "stats": stats}).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + payload


def decode_value(value: bytes) -> Tuple[np.ndarray, Dict[str, Any]]:
    """Parse and verify a stored value; raises CorruptEntry with the reason."""
    value = bytes(value)
    if len(value) < len(MAGIC) + 4 or value[:len(MAGIC)] != MAGIC:
        raise CorruptEntry("bad magic")
    (hlen,) = struct.unpack("<I", value[len(MAGIC):len(MAGIC) + 4])
    start = len(MAGIC) + 4
    try:
        header = json.loads(value[start:start + hlen].decode())
        shape = tuple(int(s) for s in header["shape"])
        dtype = np.dtype(header["dtype"])
        digest = header["sha256"]
        stats = header["stats"]
        fmt = header["format"]
    except Exception as e:
        raise CorruptEntry(f"unparsable header ({e.__class__.__name__})")
    if fmt != FORMAT_VERSION:
        raise CorruptEntry(f"format {fmt} != {FORMAT_VERSION}")
    payload = value[start + hlen:]
    if len(payload) != int(np.prod(shape)) * dtype.itemsize:
        raise CorruptEntry(f"payload is {len(payload)} bytes, expected {int(np.prod(shape)) * dtype.itemsize}")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CorruptEntry("checksum mismatch")
    return np.frombuffer(payload, dtype=dtype).reshape(shape).astype(np.int64), stats


class TokenCache:
    """LMDB store of token matrices (see the module docstring for key and value formats).

    Usage::

        cache = TokenCache(path)
        tokens, stats = cache.tokenize(features, params)   # stats['from_cache'] tells which
    """

    def __init__(self, path: str, map_size: int = INITIAL_MAP_SIZE):
        import lmdb
        self._lmdb = lmdb
        self.path = os.fspath(path)
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as e:
            raise RuntimeError(f"token cache directory {self.path!r} cannot be created ({e}); set "
                               f"motor_cache_dir to a writable folder") from e
        if not os.access(self.path, os.W_OK):
            raise RuntimeError(f"token cache directory {self.path!r} is not writable; set "
                               f"motor_cache_dir to a writable folder")
        self.env = self._open(map_size)
        self._check_format()

    # -- opening --------------------------------------------------------------------------------
    def _open(self, map_size: int):
        lmdb = self._lmdb
        try:
            return lmdb.open(self.path, map_size=map_size, subdir=True, max_dbs=0)
        except lmdb.Error as e:
            aside = f"{self.path.rstrip(os.sep)}.corrupt-{int(time.time())}"
            warnings.warn(f"token cache {self.path!r} cannot be opened ({e.__class__.__name__}: {e}); "
                          f"moved it to {aside!r} and rebuilding", stacklevel=3)
            try:
                shutil.move(self.path, aside)
                os.makedirs(self.path, exist_ok=True)
                return lmdb.open(self.path, map_size=map_size, subdir=True, max_dbs=0)
            except (OSError, lmdb.Error) as e2:
                raise RuntimeError(f"token cache {self.path!r} is unreadable and cannot be rebuilt "
                                   f"({e2}); delete it or set motor_cache_dir elsewhere") from e2

    def _check_format(self) -> None:
        with self.env.begin() as txn:
            fmt = txn.get(_META_KEY)
        if fmt is None or fmt != str(FORMAT_VERSION).encode():
            if fmt is not None:
                warnings.warn(f"token cache {self.path!r} has format {fmt!r}, expected "
                              f"{FORMAT_VERSION}: clearing it", stacklevel=3)
                with self.env.begin(write=True) as txn:
                    txn.drop(self.env.open_db(), delete=False)
            self._write(_META_KEY, str(FORMAT_VERSION).encode())

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- raw access -----------------------------------------------------------------------------
    def _write(self, key: bytes, value: bytes) -> None:
        lmdb = self._lmdb
        for _ in range(16):
            try:
                with self.env.begin(write=True) as txn:
                    txn.put(key, value)
                return
            except lmdb.MapFullError:
                self.env.set_mapsize(max(self.env.info()["map_size"] * 2, 2 * len(value)))
        raise RuntimeError(f"token cache {self.path!r}: could not grow the LMDB map")  # pragma: no cover

    def delete(self, key: bytes) -> None:
        with self.env.begin(write=True) as txn:
            txn.delete(key)

    def get(self, key: bytes) -> Optional[Tuple[np.ndarray, Dict[str, Any]]]:
        """(tokens int64, stats) for a key, or None on a miss; a corrupt entry is deleted (warning)."""
        with self.env.begin() as txn:
            value = txn.get(key)
        if value is None:
            return None
        try:
            return decode_value(value)
        except CorruptEntry as e:
            warnings.warn(f"token cache entry {key[:12].decode()}... in {self.path!r} is corrupt "
                          f"({e}): deleted, recomputing", stacklevel=2)
            self.delete(key)
            return None

    def put(self, key: bytes, tokens: np.ndarray, stats: Dict[str, Any]) -> None:
        self._write(key, encode_value(tokens, stats))

    def __len__(self) -> int:
        return max(self.env.stat()["entries"] - 1, 0)

    # -- high level -----------------------------------------------------------------------------
    def tokenize(self, features, params: TokenizerParams, n_items: Optional[int] = None,
                 name: str = "features") -> Tuple[np.ndarray, Dict[str, Any]]:
        """Tokens (n_items, M) int64 and stats for ``features``: from the cache, or fitted and stored.

        ``stats['from_cache']`` is True on a hit (then ``stats['seconds']`` is the original fit time
        and ``stats['lookup_seconds']`` the time of this lookup).
        """
        tokens, stats, _ = self.tokenize_result(features, params, n_items, name)
        return tokens, stats

    def tokenize_result(self, features, params: TokenizerParams, n_items: Optional[int] = None,
                        name: str = "features"):
        """Like :meth:`tokenize`, plus the :class:`TokenizerResult` of a fresh fit (None on a hit)."""
        t0 = time.perf_counter()
        x = validate_features(features, n_items, name)
        key = cache_key(x, params, n_items)
        hit = self.get(key)
        if hit is not None:
            tokens, stats = hit
            stats = dict(stats, from_cache=True, lookup_seconds=round(time.perf_counter() - t0, 4))
            return tokens, stats, None
        result = fit_tokenize(x, params, n_items, name)
        self.put(key, result.tokens, result.stats)
        return result.tokens, dict(result.stats), result


def cached_tokenize(features, params: TokenizerParams, cache: Optional[TokenCache] = None,
                    n_items: Optional[int] = None, name: str = "features"):
    """Tokens and stats, through ``cache`` when one is given."""
    if cache is None:
        r = fit_tokenize(features, params, n_items, name)
        return r.tokens, dict(r.stats)
    return cache.tokenize(features, params, n_items, name)
