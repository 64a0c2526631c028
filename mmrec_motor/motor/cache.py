"""LMDB cache of token matrices, so that a dataset is tokenized once per setting.

Key (hex sha256) of an entry::

    sha256( FORMAT_VERSION | TOKENIZER_VERSION | faiss version | features: dtype, shape, raw bytes
            (C order) | every TokenizerParams field (sorted JSON) | n_items )

so a changed feature array, a changed parameter, a new faiss, a changed tokenizer algorithm or a new
storage format never returns stale tokens (it misses and the tokens are recomputed).

Value layout::

    b"MOTORTK1" | uint32 little-endian header length | header (JSON) | payload

header = {"format": FORMAT_VERSION, "shape": [n, M], "dtype": "uint8"|"uint16",
          "sha256": hex digest of payload, "stats": {...}}; payload = the tokens in that dtype, C order.
A value whose magic, header, length or checksum does not verify is *corrupt*: it is deleted, a
warning is emitted and the caller recomputes. An LMDB file that is unsound is moved aside
(``<path>.corrupt-<time>``) with a warning and a new one is created: checked *before* it is mapped
(:func:`lmdb_file_problem`: a ``data.mdb`` shorter than its own meta page says, as a truncated copy
is, would kill the process with SIGBUS on the first read), when it cannot be opened (garbage, another
LMDB version) and when LMDB reports a damaged page while reading or writing.
``TokenCache(path)`` on a directory that cannot be created or written raises ``RuntimeError``
naming the path; :func:`open_token_cache` then uses the user cache directory instead, with a warning
(:func:`user_cache_dir`: a read-only data folder still gets a token cache).
The map starts at 32 MiB and doubles when full.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import struct
import tempfile
import time
import warnings
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .tokenizer import TOKENIZER_VERSION, TokenizerParams, fit_tokenize, validate_features

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
    h.update(f"motor-token-cache/v{FORMAT_VERSION}|tokenizer {TOKENIZER_VERSION}|faiss {fv}|".encode())
    h.update((digest or feature_digest(features)).encode())
    h.update(json.dumps(params.to_dict(), sort_keys=True).encode())
    h.update(f"|n_items={n_items}".encode())
    return h.hexdigest().encode()


class CorruptEntry(Exception):
    pass


# --- the LMDB file, checked before it is mapped -------------------------------------------------------
_LMDB_MAGIC = 0xBEEFC0DE
# 64-bit LMDB 0.9: a page header (pgno u64, pad u16, flags u16, lower u16, upper u16) = 16 bytes, then
# the meta: magic u32, version u32, address u64, mapsize u64, two MDB_db records of 48 bytes (the first,
# the free DB, keeps the page size in its md_pad u32), last_pg u64, txnid u64.
_META_HEADER, _META_DBS, _META_LAST = 16, 16 + 24, 16 + 24 + 96


def lmdb_file_problem(folder: str) -> Optional[str]:
    """Why ``<folder>/data.mdb`` must not be opened, or None when it looks sound (or is absent/empty,
    which LMDB initialises). Reads the two meta pages with plain file reads (no mapping): both must
    carry LMDB's magic, a page size that is a power of two, and the file must hold every page up to
    the last one the newest meta page names."""
    path = os.path.join(folder, "data.mdb")
    try:
        size = os.path.getsize(path)
        if size == 0:
            return None
        with open(path, "rb") as handle:
            head = handle.read(_META_LAST + 16)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"data.mdb cannot be read ({exc})"
    if len(head) < _META_LAST + 16:
        return f"data.mdb is {size} bytes, shorter than one LMDB meta page"
    magic, version = struct.unpack_from("<II", head, _META_HEADER)
    if magic != _LMDB_MAGIC:
        return "data.mdb is not an LMDB file (no LMDB magic number in its first page)"
    page = struct.unpack_from("<I", head, _META_DBS)[0]
    if page < 512 or page > 1 << 16 or page & (page - 1):
        return f"data.mdb names an impossible page size ({page})"
    if size < 2 * page:
        return f"data.mdb is {size} bytes, shorter than its two meta pages ({2 * page} bytes)"
    last_pages = []
    with open(path, "rb") as handle:
        for index in (0, 1):
            handle.seek(index * page)
            meta = handle.read(_META_LAST + 16)
            if struct.unpack_from("<I", meta, _META_HEADER)[0] != _LMDB_MAGIC:
                return f"meta page {index} of data.mdb is damaged (no LMDB magic number)"
            last_pages.append(struct.unpack_from("<Q", meta, _META_LAST)[0])
    needed = (max(last_pages) + 1) * page
    if size < needed:
        return (f"data.mdb is {size} bytes but its meta page names {max(last_pages) + 1} pages of {page} "
                f"bytes ({needed} bytes): truncated")
    return None


# --- where a cache may live ---------------------------------------------------------------------------
def user_cache_dir(kind: str, original: str) -> str:
    """The user's cache folder for a cache that cannot live at ``original``:
    ``$XDG_CACHE_HOME/mmrec-motor/<kind>/<name>-<hash of original's absolute path>`` (XDG_CACHE_HOME
    defaults to ``~/.cache``), so two read-only data folders never share one."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    original = os.path.abspath(original)
    tag = hashlib.sha1(original.encode()).hexdigest()[:10]
    name = os.path.basename(os.path.dirname(original)) or "root"
    return os.path.join(root, "mmrec-motor", kind, f"{name}-{tag}")


def writable_dir(path: str) -> Optional[str]:
    """None when ``path`` is (or can be made) a folder a file can be written in, else why not. Tries
    for real (a temporary file), since permission bits do not tell all: a read-only mount or an
    immutable folder does not show in them. Before that, a folder whose nearest existing part has no
    write bit for anyone counts as read-only, also for root, who could write it: a shared data
    folder marked read-only should not fill with caches."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    mode = os.stat(existing).st_mode
    if stat.S_ISDIR(mode) and not mode & 0o222:
        return f"no write permission bit set (mode {stat.filemode(mode)}): {existing}"
    try:
        os.makedirs(path, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=path, prefix=".write-probe-")
        os.close(handle)
        os.remove(probe)
        return None
    except OSError as exc:
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if getattr(exc, "filename", None) else "")


_warned_fallbacks: set = set()


def usable_cache_dir(path: str, kind: str, what: str) -> Optional[str]:
    """``path`` when a cache can be written there; else the user cache directory (``kind`` names its
    sub-folder) with a warning, once per folder; None (no cache, warned) when neither can be written."""
    problem = writable_dir(path)
    if problem is None:
        return path
    fallback = user_cache_dir(kind, path)
    second = writable_dir(fallback)
    key = (os.path.abspath(path), kind)
    if key not in _warned_fallbacks:
        _warned_fallbacks.add(key)
        if second is None:
            warnings.warn(f"{what} {path} cannot be written ({problem}); using {fallback} instead "
                          f"(set {kind_key(kind)} to choose the folder)", stacklevel=3)
        else:
            warnings.warn(f"{what} {path} cannot be written ({problem}), nor {fallback} ({second}); "
                          f"running without it (set {kind_key(kind)} to a writable folder)", stacklevel=3)
    return fallback if second is None else None


def kind_key(kind: str) -> str:
    """The config key that sets the folder of a cache kind."""
    return {"token_cache": "motor_cache_dir", "graph_cache": "graph_cache_dir"}.get(kind, kind)


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
        problem = writable_dir(self.path)          # creates the folder where it may
        if problem is not None:
            raise RuntimeError(f"token cache directory {self.path!r} cannot be created or written "
                               f"({problem}); set motor_cache_dir to a writable folder")
        self._map_size = map_size
        self.env = self._open(map_size)
        self._check_format()

    # -- opening --------------------------------------------------------------------------------
    def _open(self, map_size: int):
        lmdb = self._lmdb
        problem = lmdb_file_problem(self.path)     # before LMDB maps it: a short file means SIGBUS
        if problem is not None:
            return self._rebuild(problem, map_size)
        try:
            return lmdb.open(self.path, map_size=map_size, subdir=True, max_dbs=0)
        except lmdb.Error as e:
            return self._rebuild(f"{e.__class__.__name__}: {e}", map_size)

    def _rebuild(self, problem: str, map_size: int):
        """Move the damaged cache folder aside (``<path>.corrupt-<time>``), warn, open a new one."""
        lmdb = self._lmdb
        aside = f"{self.path.rstrip(os.sep)}.corrupt-{int(time.time())}"
        while os.path.exists(aside):
            aside += "x"
        warnings.warn(f"token cache {self.path!r} cannot be opened ({problem}); moved it to {aside!r} and "
                      f"rebuilding", stacklevel=4)
        try:
            shutil.move(self.path, aside)
            os.makedirs(self.path, exist_ok=True)
            return lmdb.open(self.path, map_size=map_size, subdir=True, max_dbs=0)
        except (OSError, lmdb.Error) as e2:
            raise RuntimeError(f"token cache {self.path!r} is unreadable and cannot be rebuilt "
                               f"({e2}); delete it or set motor_cache_dir elsewhere") from e2

    def _recover(self, error: Exception) -> None:
        """LMDB found a damaged page while reading or writing: start a new cache in its place."""
        if self.env is not None:
            self.env.close()
        self.env = self._rebuild(f"a damaged page: {error.__class__.__name__}: {error}", self._map_size)
        self._write(_META_KEY, str(FORMAT_VERSION).encode())

    def _check_format(self) -> None:
        fmt = self._read(_META_KEY)
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
    def _read(self, key: bytes) -> Optional[bytes]:
        """The raw value of ``key``, None on a miss; a damaged page starts a new cache (None)."""
        lmdb = self._lmdb
        try:
            with self.env.begin() as txn:
                return txn.get(key)
        except (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError) as e:
            self._recover(e)
            return None

    def _write(self, key: bytes, value: bytes) -> None:
        lmdb = self._lmdb
        recovered = False
        for _ in range(16):
            try:
                with self.env.begin(write=True) as txn:
                    txn.put(key, value)
                return
            except lmdb.MapFullError:
                self.env.set_mapsize(max(self.env.info()["map_size"] * 2, 2 * len(value)))
            except (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError) as e:
                if recovered:
                    raise
                recovered = True
                self._recover(e)
        raise RuntimeError(f"token cache {self.path!r}: could not grow the LMDB map")  # pragma: no cover

    def delete(self, key: bytes) -> None:
        with self.env.begin(write=True) as txn:
            txn.delete(key)

    def get(self, key: bytes) -> Optional[Tuple[np.ndarray, Dict[str, Any]]]:
        """(tokens int64, stats) for a key, or None on a miss; a corrupt entry is deleted (warning), a
        damaged LMDB file moved aside (warning)."""
        value = self._read(key)
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


def open_token_cache(path: str) -> TokenCache:
    """``TokenCache(path)``, or, when ``path`` cannot be created or written (a read-only data folder),
    the cache in :func:`user_cache_dir` with a warning; RuntimeError when neither works."""
    try:
        return TokenCache(path)
    except RuntimeError:
        if writable_dir(path) is None:      # writable after all: the error was another one
            raise
    fallback = usable_cache_dir(path, "token_cache", "MOTOR token cache")
    if fallback is None:
        raise RuntimeError(f"token cache directory {path!r} and the user cache directory are not "
                           f"writable; set motor_cache_dir to a writable folder")
    return TokenCache(fallback)


def cached_tokenize(features, params: TokenizerParams, cache: Optional[TokenCache] = None,
                    n_items: Optional[int] = None, name: str = "features"):
    """Tokens and stats, through ``cache`` when one is given."""
    if cache is None:
        r = fit_tokenize(features, params, n_items, name)
        return r.tokens, dict(r.stats)
    return cache.tokenize(features, params, n_items, name)
