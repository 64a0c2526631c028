"""Writing files so that a reader never sees half of one, and the top-K file format.

Every write goes to ``<path>.tmp<pid>`` beside the target and is renamed over it with ``os.replace``
(atomic on POSIX): a kill or an error at any moment leaves either the previous file or the new one,
never a partial file, and a failed write removes its temporary. Two processes writing the same file
use different temporaries (their pids), so each rename installs a whole file. A temporary left by a
killed process is removed by :func:`remove_stale_temporaries` once its pid no longer runs.

:func:`write_all` stages several files and renames them only when every one was written, so a
failure leaves none of them (``result_file`` and ``topk_file`` are written that way).

Top-K file (``topk_file``): a header row ``userID<TAB>top_1 ... top_K``, then per evaluated user the
user ID and its K ranked item IDs, tab-separated integers.
"""
from __future__ import annotations

import io
import json
import os
from typing import Any, BinaryIO, Callable, List, Sequence, Tuple

import numpy as np

Writer = Callable[[BinaryIO], None]


def temporary_path(path: str) -> str:
    """``<path>.tmp<pid>``, after creating the folder of ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return f"{path}.tmp{os.getpid()}"


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)


def stage(path: str, write: Writer, fsync: bool = False) -> str:
    """Write the temporary of ``path`` with ``write(handle)`` (binary handle); returns its path. A
    failure removes it. ``fsync`` flushes it to disk before returning."""
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
    except BaseException:
        _remove(tmp)
        raise
    return tmp


def write_atomic(path: str, write: Writer, fsync: bool = False) -> None:
    """:func:`stage`, then rename the temporary over ``path`` (removed again if the rename fails)."""
    tmp = stage(path, write, fsync)
    try:
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
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
    """``torch.save`` of ``obj``, flushed to disk before the rename (checkpoints, graph caches)."""
    import torch

    write_atomic(path, lambda handle: torch.save(obj, handle), fsync=True)


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
