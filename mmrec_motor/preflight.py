"""Before a run trains: every place it will write can be written.

Permission bits do not answer "can I write here" (root ignores them; a read-only mount or an
immutable folder does not show in them), so each folder is tried for real with a temporary file
(:func:`mmrec_motor.motor.cache.writable_dir`), at the nearest folder that exists: nothing is created
before the run has finished (``result_file``, ``topk_file``, ``user_metrics_file``) or starts (``log_dir``,
``checkpoint_dir``). A path that cannot be written is a :class:`ConfigError` naming the key, the path
and the folder, before any training (instead of a traceback when the log opens, after the first epoch
when the first checkpoint is saved, or at the very end for the result file). Temporaries that killed
runs left beside an output are removed when it is written (:mod:`mmrec_motor.fileio`).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from mmrec_motor.keys import ConfigError
from mmrec_motor.motor.cache import writable_dir

# (key, is a folder itself)
_OUTPUTS = (("result_file", False), ("topk_file", False), ("user_metrics_file", False), ("log_dir", True),
            ("checkpoint_dir", True))


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
    """ConfigError when ``result_file``, ``topk_file``, ``user_metrics_file``, ``log_dir`` or
    ``checkpoint_dir`` could not be written (see the module docstring)."""
    for key, is_folder in _OUTPUTS:
        value = config[key]
        if not value:
            continue
        target = os.path.abspath(str(value))
        if not is_folder and os.path.isdir(target):
            raise ConfigError(f"config key {key!r} is {value!r}, which is a directory; expected a file path")
        existing = nearest_existing(target if is_folder else os.path.dirname(target))
        if not os.path.isdir(existing):
            raise ConfigError(f"config key {key!r} is {value!r}, but {existing} is not a writable directory; "
                              f"choose another path")
        problem = writable_dir(existing)
        if problem is not None:
            raise ConfigError(f"config key {key!r} is {value!r}, but {existing} cannot be written "
                              f"({problem}); choose another path (--{key}=...)")
