"""Writing files so that a reader never sees half of one, and the top-K file format.

Every write goes to ``<path>.tmp<pid>`` beside the target and is renamed over it with ``os.replace``
(atomic on POSIX): a kill or an error at any moment leaves either the previous file or the new one,
never a partial file, and a failed write removes its temporary. Two processes writing the same file
use different temporaries (their pids), so each rename installs a whole file. A temporary left by a
killed process is removed by :func:`remove_stale_temporaries` once its pid no longer runs (each write
does that for its own path first). An ``OSError`` of a write that names no file (a full disk during
``torch.save``) gets the target's path, so that the message says which file.

Checkpoints (:func:`save_torch` of a dict) carry ``checksum: 'sha256:<hex>'``, a digest of their own
contents (:func:`digest`: every tensor's and array's dtype, shape and raw bytes, every other value's
``repr``, in a fixed order), which :func:`checksum_problem` recomputes after loading: ``torch.load``
reads a checkpoint whose tensor bytes were damaged (a bad disk, a partial copy) without complaint, and
the run would resume and fail epochs later with a NaN loss, pointing away from the file. Checkpoints
written before the checksum existed have none and load as they are.

:func:`write_all` stages several files and renames them only when every one was written, so a
failure leaves none of them (``result_file`` and ``topk_file`` are written that way).

Top-K file (``topk_file``): a header row ``userID<TAB>top_1 ... top_K``, then per evaluated user the
user ID and its K ranked item IDs, tab-separated integers.

Per-user metrics file (``user_metrics_file``): a compressed ``.npz`` with, per split ``s`` (valid,
test), ``s:users`` (int64 [n_s], the evaluated users) and ``s:<metric@k>`` (float64 [n_s], each
user's value, e.g. ``test:recall@20``), one array per configured metric and cut-off.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import sys
from typing import Any, BinaryIO, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

Writer = Callable[[BinaryIO], None]


def temporary_path(path: str) -> str:
    """``<path>.tmp<pid>``, after creating the folder of ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return f"{path}.tmp{os.getpid()}"


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)


def _name_the_file(exc: BaseException, path: str) -> None:
    """An OSError with an errno but no file name ("No space left on device") names ``path``."""
    if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
        exc.filename = path


def stage(path: str, write: Writer, fsync: bool = False) -> str:
    """Write the temporary of ``path`` with ``write(handle)`` (binary handle); returns its path. A
    failure removes it. ``fsync`` flushes it to disk before returning. Stale temporaries of ``path``
    are removed first."""
    tmp = temporary_path(path)
    remove_stale_temporaries(path)
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
    except BaseException as exc:
        _remove(tmp)
        _name_the_file(exc, path)
        raise
    return tmp


def write_atomic(path: str, write: Writer, fsync: bool = False) -> None:
    """:func:`stage`, then rename the temporary over ``path`` (removed again if the rename fails)."""
    tmp = stage(path, write, fsync)
    try:
        os.replace(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        _name_the_file(exc, path)
        raise


def write_all(outputs: Sequence[Tuple[str, Writer]]) -> None:
    """Stage every ``(path, write)``, then rename them all: a failure while writing leaves none of
    them (and no temporary) behind."""
    staged: List[Tuple[str, str]] = []
    try:
        for path, write in outputs:
            staged.append((stage(path, write), path))
    except BaseException:
        for tmp, _ in staged:
            _remove(tmp)
        raise
    for tmp, path in staged:
        os.replace(tmp, path)


def text_writer(text: str) -> Writer:
    """A writer of ``text`` as UTF-8, line ends as given."""
    return lambda handle: handle.write(text.encode("utf-8"))


def json_writer(payload: Any, trailing_newline: bool = True) -> Writer:
    """A writer of ``payload`` as JSON (indent 2; values JSON cannot hold written with ``str``)."""
    def write(handle: BinaryIO) -> None:
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
        json.dump(payload, text, indent=2, default=str)
        text.write("\n" if trailing_newline else "")
        text.flush()
        text.detach()           # the handle stays open for its owner
    return write


def write_text(path: str, text: str) -> None:
    write_atomic(path, text_writer(text))


def write_json(path: str, payload: Any, trailing_newline: bool = True) -> None:
    write_atomic(path, json_writer(payload, trailing_newline))


def save_torch(obj: Any, path: str) -> None:
    """``torch.save`` of ``obj``, flushed to disk before the rename (checkpoints, graph caches); a dict
    gets its checksum (module docstring)."""
    import torch

    obj = with_checksum(obj)
    write_atomic(path, lambda handle: torch.save(obj, handle), fsync=True)


# ------------------------------------------------------------------------------- checksums

CHECKSUM = "checksum"


def _feed(h: Any, obj: Any) -> None:
    torch = sys.modules.get("torch")           # not loaded: nothing here can be a tensor
    if torch is not None and isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.is_sparse:
            h.update(f"sparse{tuple(t.shape)}".encode())
            _feed(h, t._indices())
            _feed(h, t._values())
            return
        t = t.cpu().contiguous()
        h.update(f"tensor|{t.dtype}|{tuple(t.shape)}|".encode())
        try:
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        except (RuntimeError, TypeError):
            h.update(t.numpy().tobytes())
    elif isinstance(obj, np.ndarray):
        h.update(f"array|{obj.dtype.str}|{obj.shape}|".encode())
        h.update(np.ascontiguousarray(obj).tobytes() if obj.dtype != object else pickle.dumps(obj.tolist()))
    elif isinstance(obj, dict):
        h.update(f"dict|{len(obj)}|".encode())
        for key in sorted(obj, key=repr):
            h.update(repr(key).encode() + b"=")
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}|{len(obj)}|".encode())
        for item in obj:
            _feed(h, item)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(f"dataclass|{type(obj).__qualname__}|".encode())
        for f in dataclasses.fields(obj):
            h.update(f.name.encode() + b"=")
            _feed(h, getattr(obj, f.name))
    elif isinstance(obj, np.generic):
        h.update(f"scalar|{obj.dtype.str}|{obj.item()!r}".encode())
    elif obj is None or isinstance(obj, (str, bytes, int, float, bool, complex)):
        h.update(f"{type(obj).__name__}|{obj!r}".encode())
    else:                                       # anything else: its pickle (deterministic for plain data)
        h.update(f"pickle|{type(obj).__qualname__}|".encode() + pickle.dumps(obj, protocol=4))


def digest(state: Any) -> str:
    """``sha256:<hex>`` of ``state``'s contents (the ``checksum`` key of a dict left out)."""
    h = hashlib.sha256()
    if isinstance(state, dict):
        state = {k: v for k, v in state.items() if k != CHECKSUM}
    _feed(h, state)
    return "sha256:" + h.hexdigest()


def with_checksum(state: Any) -> Any:
    """``state`` with its checksum under ``checksum`` (a dict; anything else is returned as it is)."""
    if not isinstance(state, dict):
        return state
    return {**{k: v for k, v in state.items() if k != CHECKSUM}, CHECKSUM: digest(state)}


def checksum_problem(state: Any) -> Optional[str]:
    """Why a loaded checkpoint cannot be trusted, or None (verified, or written without a checksum)."""
    if not isinstance(state, dict) or CHECKSUM not in state:
        return None
    stored, actual = state[CHECKSUM], digest(state)
    if stored != actual:
        return (f"its contents do not match the checksum written with it (stored {str(stored)[:19]}..., "
                f"computed {actual[:19]}...): the file is damaged")
    return None


def remove_stale_temporaries(path: str) -> None:
    """Delete ``<path>.tmp<pid>`` files of processes that no longer run (a killed writer's)."""
    folder, name = os.path.split(path)
    try:
        entries = os.listdir(folder or ".")
    except OSError:
        return
    for entry in entries:
        suffix = entry[len(name) + 4:] if entry.startswith(name + ".tmp") else ""
        if not suffix.isdigit() or int(suffix) == os.getpid():
            continue
        try:
            os.kill(int(suffix), 0)          # still running: another process is writing it
        except ProcessLookupError:
            try:
                os.remove(os.path.join(folder, entry))
            except OSError:
                pass
        except OSError:
            pass


def read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


# ------------------------------------------------------------------------------- top-K files

def topk_writer(users: np.ndarray, ranked: np.ndarray) -> Writer:
    """A writer of the top-K file of ``users`` [n] and their ``ranked`` item IDs [n, K]."""
    def write(handle: BinaryIO) -> None:
        table = np.column_stack([users, ranked])
        header = "userID\t" + "\t".join(f"top_{i + 1}" for i in range(ranked.shape[1]))
        np.savetxt(handle, table, fmt="%d", delimiter="\t", header=header, comments="")
    return write


def write_topk(path: str, users: np.ndarray, ranked: np.ndarray) -> None:
    write_atomic(path, topk_writer(users, ranked))


def read_topk(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """(users int64 [n], ranked int64 [n, K]) from a top-K file."""
    table = np.loadtxt(path, dtype=np.int64, delimiter="\t", skiprows=1, ndmin=2)
    return table[:, 0], table[:, 1:]


# ------------------------------------------------------------------------------- per-user metrics files

UserMetrics = Mapping[str, Tuple[np.ndarray, Mapping[str, np.ndarray]]]


def user_metrics_writer(splits: UserMetrics) -> Writer:
    """A writer of the per-user metrics file (module docstring) of ``{split: (users [n], {metric@k:
    values [n]})}``."""
    arrays = {}
    for split, (users, values) in splits.items():
        arrays[f"{split}:users"] = np.asarray(users, np.int64)
        for key, column in values.items():
            if np.shape(column) != arrays[f"{split}:users"].shape:
                raise ValueError(f"per-user metrics: {split} {key} has shape {np.shape(column)}, expected "
                                 f"one value per user {arrays[f'{split}:users'].shape}")
            arrays[f"{split}:{key}"] = np.asarray(column, np.float64)
    return lambda handle: np.savez_compressed(handle, **arrays)


def read_user_metrics(path: str) -> Dict[str, Tuple[np.ndarray, Dict[str, np.ndarray]]]:
    """``{split: (users int64 [n], {metric@k: float64 [n]})}`` from a per-user metrics file; a file
    whose arrays do not follow the format raises ValueError naming the file and the array."""
    with np.load(path) as stored:
        arrays = {key: stored[key] for key in stored.files}
    splits: Dict[str, Tuple[np.ndarray, Dict[str, np.ndarray]]] = {}
    for key in sorted(arrays, key=lambda k: not k.endswith(":users")):     # the users first
        split, sep, name = key.partition(":")
        if not sep or not name:
            raise ValueError(f"{path}: array {key!r} is not named <split>:users or <split>:<metric@k>")
        if name == "users":
            splits[split] = (arrays[key].astype(np.int64), {})
        elif split not in splits:
            raise ValueError(f"{path}: array {key!r} has no {split}:users array")
        elif arrays[key].shape != splits[split][0].shape:
            raise ValueError(f"{path}: array {key!r} has shape {arrays[key].shape}, expected "
                             f"{splits[split][0].shape} (one value per user of {split}:users)")
        else:
            splits[split][1][name] = arrays[key].astype(np.float64)
    return splits
