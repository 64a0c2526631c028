"""Checks of a dataset's files and IDs beyond their format (:mod:`mmrec_motor.data.dataset` reads them).

* :func:`path_problem`: a path that exists but cannot be read as a file (a directory, a dangling
  symbolic link, a FIFO, no read permission). A feature file like that is an error naming it; it is
  never taken for an absent feature.
* :func:`check_id_space`: ``n_users = max userID + 1`` and ``n_items = max itemID + 1`` (as MMRec), so
  one stray ID of 1e9 implies tables of a billion rows. The tables are estimated before anything is
  allocated and compared with the memory available on the run's device; the error names the file,
  the line, the ID and the size.
* :func:`report_duplicates`: repeated (user, item) rows. They are kept, as MMRec keeps them: a repeated
  training row is one more BPR sample per epoch, and a repeated valid/test row counts again in the
  user's number of relevant items (the denominator of Recall, the length of the ideal ranking of
  NDCG and MAP) while the ranked item is still one hit (MMRec's ``EvalDataLoader`` counts rows and
  its evaluator tests ``item in items``). A pair in both train and valid/test can never be a hit
  there (training items are masked, as in MMRec). Both are warned with their counts.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Mapping, Optional

import numpy as np

# float32 values kept per ID-table entry while training: the parameter, its gradient and Adam's two
# moments (the optimizer of every yaml).
_COPIES = 4


def path_problem(path: str) -> Optional[str]:
    """Why ``path``, which exists (``os.path.lexists``), cannot be read as a regular file; None when it
    can, or when nothing is there at all."""
    if not os.path.lexists(path):
        return None
    if os.path.islink(path) and not os.path.exists(path):
        return f"is a symbolic link to {os.readlink(path)!r}, which does not exist (a dangling link)"
    if os.path.isdir(path):
        return "is a directory"
    if not os.path.isfile(path):
        return "is not a regular file (a FIFO, socket or device)"
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        return f"cannot be opened for reading ({exc.strerror or exc})"
    return None


def check_id_space(path: str, column: str, ids: np.ndarray, n_rows: int, embedding_size: Any,
                   other_rows: int, device: Any, error: type) -> None:
    """Raise ``error`` before any allocation when the ID tables implied by the largest ID in ``ids``
    (``n_rows = max + 1`` rows, plus ``other_rows`` of the other ID kind) would not fit in the memory
    available on ``device`` *and* the IDs are sparse (``n_rows`` over twice the distinct IDs: stray or
    unmapped IDs; with dense IDs the data is simply large and the later guards name what to lower).

    The estimate is the least a run allocates for them: ``embedding_size`` float32 values per ID, with
    a gradient and Adam's two moments each (4 copies)."""
    from mmrec_motor.resources import available_bytes, format_bytes

    width = embedding_size if isinstance(embedding_size, int) and embedding_size > 0 else 64
    needed = (int(n_rows) + int(other_rows)) * width * 4 * _COPIES
    free = available_bytes(str(device or "cpu"))
    if free is None or needed <= free:
        return
    distinct = len(np.unique(ids))
    if n_rows <= 2 * distinct:       # dense IDs: the data is this large; the later guards say what to do
        return
    row = int(np.argmax(ids))
    kind = "n_users" if column.lower().startswith("user") else "n_items"
    raise error(f"{path}: line {row + 2} has {column} {int(ids[row])}, so {kind} = max {column} + 1 = "
                f"{n_rows} (the file has {distinct} distinct {column}s) and the ID tables (one row of "
                f"embedding_size={width} float32 per ID, with gradient and Adam's two moments) would "
                f"allocate {format_bytes(needed)} ({needed} bytes), but {format_bytes(free)} is available "
                f"on {device or 'cpu'}; IDs must be 0-based and dense (0 .. count - 1): remap them")


def report_duplicates(path: str, label: str, splits: Mapping[str, Any], n_items: int) -> None:
    """Warn, with their counts, about repeated (user, item) rows within a split and about pairs of the
    training split that come back in valid or test (kept; see the module docstring)."""
    keys = {name: np.asarray(split.users, np.int64) * int(n_items) + np.asarray(split.items, np.int64)
            for name, split in splits.items()}
    for name, key in keys.items():
        unique, counts = np.unique(key, return_counts=True)
        repeated = int((counts - 1).sum())
        if repeated:
            first = int(unique[np.argmax(counts > 1)])
            warnings.warn(f"{path}: {repeated} repeated (userID, itemID) row(s) in {name} ({label}="
                          f"{_CODES.get(name, '?')}), e.g. user {first // n_items}, item {first % n_items}; "
                          f"kept, as MMRec: " + _KEPT[name], stacklevel=3)
    train = np.unique(keys.get("train", np.zeros(0, np.int64)))
    for name in ("valid", "test"):
        if name not in keys or not len(train):
            continue
        again = np.isin(keys[name], train)
        if again.any():
            first = int(keys[name][np.argmax(again)])
            warnings.warn(f"{path}: {int(again.sum())} {name} row(s) repeat a training (userID, itemID) pair, "
                          f"e.g. user {first // n_items}, item {first % n_items}; kept, as MMRec, but "
                          f"training items are masked when ranking, so they can never be hits",
                          stacklevel=3)


_CODES = {"train": 0, "valid": 1, "test": 2}
_KEPT = {"train": "each row is one more BPR sample per epoch",
         "valid": "each row counts in the user's number of valid items (Recall's denominator), the item "
                  "is one hit",
         "test": "each row counts in the user's number of test items (Recall's denominator), the item "
                 "is one hit"}
