"""A checksum stored inside every checkpoint the trainer writes, verified when a run resumes.

``torch.load`` reads a checkpoint whose tensor bytes were damaged (a bad disk, a partial copy, a
bit flip) without complaint: the run resumed, then stopped several epochs later with "loss is nan ...
lower learning_rate", pointing away from the file. So the saved dict carries
``checksum: 'sha256:<hex>'``, a digest of its own contents (:func:`digest`: every tensor's and array's
dtype, shape and raw bytes, and every other value's ``repr``, walked in a fixed order), and
:func:`checksum_problem` recomputes it after loading. Checkpoints written before the checksum existed
have none and are loaded as they are. The best-model checkpoint carries one too (readers that ignore
the extra key are unaffected).
"""
from __future__ import annotations

import dataclasses
import hashlib
import pickle
from typing import Any, Optional

import numpy as np
import torch

KEY = "checksum"


def _feed(h: "hashlib._Hash", obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
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
        state = {k: v for k, v in state.items() if k != KEY}
    _feed(h, state)
    return "sha256:" + h.hexdigest()


def with_checksum(state: Any) -> Any:
    """``state`` with its checksum under ``checksum`` (a dict; anything else is returned as it is)."""
    if not isinstance(state, dict):
        return state
    return {**{k: v for k, v in state.items() if k != KEY}, KEY: digest(state)}


def checksum_problem(state: Any) -> Optional[str]:
    """Why a loaded checkpoint cannot be trusted, or None (verified, or written without a checksum)."""
    if not isinstance(state, dict) or KEY not in state:
        return None
    stored, actual = state[KEY], digest(state)
    if stored != actual:
        return (f"its contents do not match the checksum written with it (stored {str(stored)[:19]}..., "
                f"computed {actual[:19]}...): the file is damaged")
    return None
