"""Before a run trains: every place it will write can be written, and temporaries that killed runs
left beside its output files are gone.

Permission bits do not answer "can I write here" (root ignores them; a read-only mount or an
immutable folder does not show in them), so each folder is tried for real with a temporary file
(:func:`mmrec_motor.motor.cache.writable_dir`), at the nearest folder that exists: nothing is created
before the run has finished (``result_file``, ``topk_file``) or starts (``log_dir``,
``checkpoint_dir``). A folder that cannot be written is a :class:`ConfigError` naming the key, the path
and the folder, before any training (instead of a traceback when the log opens, after the first epoch
when the first checkpoint is saved, or at the very end for the result file).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from mmrec_motor.config import ConfigError
from mmrec_motor.motor.cache import writable_dir

# (key, is a folder itself)
_OUTPUTS = (("result_file", False), ("topk_file", False), ("log_dir", True), ("checkpoint_dir", True))


def nearest_existing(path: str) -> str:
    """``path`` itself when it exists, else the closest folder above it that does."""
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_writable_outputs(config: Mapping[str, Any]) -> None:
    """ConfigError when ``result_file``, ``topk_file``, ``log_dir`` or ``checkpoint_dir`` could not be
    written (see the module docstring)."""
    for key, is_folder in _OUTPUTS:
        value = config[key]
        if not value:
            continue
        target = os.path.abspath(str(value))
        folder = target if is_folder else os.path.dirname(target)
        existing = nearest_existing(folder)
        if not os.path.isdir(existing):
            raise ConfigError(f"config key {key!r} is {value!r}, but {existing} is not a folder; choose "
                              f"another path")
        problem = writable_dir(existing)
        if problem is not None:
            raise ConfigError(f"config key {key!r} is {value!r}, but {existing} cannot be written "
                              f"({problem}); choose another path (--{key}=...)")


def remove_stale_temporaries(config: Mapping[str, Any]) -> None:
    """Delete ``<result_file>.tmp<pid>`` / ``<topk_file>.tmp<pid>`` left by killed runs (a pid that no
    longer runs); a temporary of a live process is left alone."""
    from mmrec_motor.trainer import _remove_stale_temporaries

    for key in ("result_file", "topk_file"):
        if config[key]:
            _remove_stale_temporaries(os.path.abspath(str(config[key])))
