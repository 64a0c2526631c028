"""Item feature files: the one reader of the runtime, which checks each file once.

A feature file (``vision_feature_file``, ``text_feature_file``, or ``<x>_feature_file`` for another
MOTOR modality ``x``) is a ``.npy`` array in the dataset folder whose row i is item i: float32
[n_items, D] after reading. A key that is empty, or names a file that is absent, means "no features
of that kind" (MMRec's behaviour); a file that exists must be a finite 2-D real numeric array with
``n_items`` rows, else :class:`~mmrec_motor.data.dataset.DataError` names the file, the key, the shape
or dtype found and what was expected. A path that exists but is not a readable regular file (a
directory, a dangling symbolic link, a FIFO, no read permission) is such an error too, never taken for
an absent feature; :func:`check_feature_paths` checks every feature key that way when the data is
loaded, before any model is built.

MOTOR's features (:func:`load_named`) are memory-mapped, read-only, when the file holds float32 in C
order (the tokenizer reads them by blocks of rows, so a catalogue's features need not fit in memory);
a backbone's own features (:func:`load_features`) are read into memory, since backbones train on them.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from mmrec_motor.data.checks import path_problem
from mmrec_motor.data.dataset import DataError, dataset_dir

#: rows checked for NaN / inf at a time (no full-size temporary)
BLOCK_ROWS = 65536


def feature_path(config: Mapping[str, Any], key: str) -> Optional[str]:
    """The file ``config[key]`` names in the dataset folder, or None when the key is empty or nothing
    is there; DataError when something is there that cannot be read as a file."""
    name = config[key]
    if not name:
        return None
    path = os.path.join(dataset_dir(config), str(name))
    problem = path_problem(path)
    if problem:
        raise DataError(f"{path} ({key}) {problem}; expected a .npy array of shape (n_items, dim), or no "
                        f"file at all for no feature")
    return path if os.path.isfile(path) else None


def check_feature_paths(config: Mapping[str, Any]) -> None:
    """For a multimodal model or ``motor``: every ``*_feature_file`` key is checked by
    :func:`feature_path` (a directory or a dangling link is an error naming it, not an absent feature)."""
    if not (config.get("motor") or config.get("is_multimodal_model") is not False):
        return
    for key in sorted(k for k in config if str(k).endswith("_feature_file")):
        feature_path(config, key)


def _read(path: str, key: str, n_items: int, mapped: bool = False) -> np.ndarray:
    """The checked float32 [n_items, D] array of ``path``; ``mapped``: a read-only memory map when the
    file holds float32 in C order (else, and without ``mapped``, an array in memory)."""
    where = f"feature file {path} ({key})"
    if os.path.getsize(path) == 0:
        raise DataError(f"{where}: the file is empty (0 bytes); expected a .npy array of shape "
                        f"(n_items={n_items}, dim)")
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError, UnicodeDecodeError) as exc:
        hint = ("object arrays (dtype=object) are not accepted: save a numeric array"
                if "allow_pickle" in str(exc) or "Python objects" in str(exc) else "truncated, or not a .npy file?")
        raise DataError(f"{where}: not a readable .npy array ({hint}): {exc}") from exc
    if not isinstance(array, np.ndarray):
        raise DataError(f"{where}: holds a {type(array).__name__}, expected a .npy array of shape "
                        f"(n_items={n_items}, dim) (an .npz archive?)")
    if array.ndim != 2:
        raise DataError(f"{where}: expected a 2-D array (n_items={n_items}, dim), got shape {array.shape}")
    if array.shape[0] != n_items:
        raise DataError(f"{where}: has {array.shape[0]} rows but the dataset has n_items={n_items} "
                        f"(max itemID + 1); row i must be item i")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise DataError(f"{where}: expected a real numeric dtype, got {array.dtype}")
    keep_mapped = mapped and array.dtype == np.float32 and array.flags.c_contiguous
    array = array if keep_mapped else np.array(array, dtype=np.float32, order="C")
    finite = np.concatenate([np.isfinite(array[i:i + BLOCK_ROWS]).all(axis=1)
                             for i in range(0, max(len(array), 1), BLOCK_ROWS)])
    if not finite.all():
        rows = np.flatnonzero(~finite)
        raise DataError(f"{where}: {len(rows)} row(s) contain NaN or inf, first item IDs {rows[:5].tolist()}")
    return array


def load_feature(config: Mapping[str, Any], key: str, n_items: int) -> Optional[np.ndarray]:
    """The float32 [n_items, D] features of ``config[key]``, or None (module docstring)."""
    path = feature_path(config, key)
    return None if path is None else _read(path, key, n_items)


def load_features(config: Mapping[str, Any], n_items: int) -> Dict[str, Optional[np.ndarray]]:
    """``{'v': vision features or None, 't': text features or None}``: a backbone's features."""
    return {"v": load_feature(config, "vision_feature_file", n_items),
            "t": load_feature(config, "text_feature_file", n_items)}


def load_named(config: Mapping[str, Any], keys: Mapping[str, str],
               n_items: int) -> Dict[str, Tuple[str, np.ndarray]]:
    """``{name: (path, features)}`` for each ``name: key`` of ``keys`` whose file exists (MOTOR's
    modalities: ``{'v': 'vision_feature_file', ...}``), memory-mapped (module docstring)."""
    out = {}
    for name, key in keys.items():
        path = feature_path(config, key)
        if path is not None:
            out[name] = (path, _read(path, key, n_items, mapped=True))
    return out


def modality_list(value: Any) -> Sequence[str]:
    """``motor_modalities`` as a list of names (``'v,t'`` from a command line is split)."""
    if isinstance(value, str):
        return [m.strip() for m in value.split(",") if m.strip()]
    return [str(m) for m in value or []]
