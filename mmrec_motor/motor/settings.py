"""The ``motor_*`` keys: their defaults and how each is read from a config.

:data:`DEFAULTS` holds every key's default (``configs/model/MOTOR.yaml`` documents them; keep both in
sync). A config may be a plain dict, any mapping, or MMRec's ``Config`` (a missing key reads None);
:func:`config_get` treats a missing key and None alike. The ``*_setting`` functions turn one key into
the value :func:`.hook.motorize` uses (``auto`` resolved, types checked), with an error that names the
key and the value when it is bad.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from .unseen import UNSEEN_NORM_MODES

#: defaults of every motor_* key (configs/model/MOTOR.yaml documents them; keep both in sync)
DEFAULTS: Dict[str, Any] = {
    "motor_modalities": ["v", "t"],
    "motor_quantizer": "rq",
    "motor_num_subspaces": 16,
    "motor_nbits": 8,
    "motor_normalize": "l2",
    "motor_pca_dim": None,
    "motor_max_train_items": None,
    "motor_tcn": "mean",
    "motor_tcn_layers": 2,
    "motor_tcn_rank": 8,
    "motor_tcn_dim": 16,
    "motor_cache_dir": None,
    "motor_seed": None,
    "motor_learning_rate": None,
    "motor_weight_decay": None,
    "motor_content": "init",
    "motor_token_dropout": 0.0,
    "motor_fine_dropout": 0.0,
    "motor_unseen_neighbours": "auto",
    "motor_fine_nbits": "auto",
    "motor_fine_items_per_cell": 4,
    "motor_fine_own_min_interactions": None,
    "motor_unseen_norm": "off",
    # read by the tuned protocol (mmrec_motor/experiments/tuning.py), not here
    "motor_tuning_grid": {"motor_fine_nbits": ["auto", None]},
}


def config_get(config, key: str, default: Any = None) -> Any:
    """``config[key]``, or ``default`` when the key is missing or None.

    Works for MMRec's Config (missing -> None), plain dicts (KeyError) and other mappings.
    """
    try:
        value = config[key]
    except (KeyError, IndexError):
        return default
    return default if value is None else value


def motor_setting(config, key: str) -> Any:
    return config_get(config, key, DEFAULTS.get(key))


def _set_to_null(config, key: str) -> bool:
    """True when ``key`` is present in ``config`` with the value None (a null that is *set*, unlike a
    missing key, which takes the default). Looked up with ``in`` where the config supports it (this
    project's Config and MMRec's do; there MOTOR.yaml's value is present unless a yaml or the command
    line overrides it)."""
    try:
        if config[key] is not None:
            return False
    except (KeyError, IndexError):
        return False
    if hasattr(type(config), "__contains__"):
        try:
            return key in config
        except Exception:  # pragma: no cover - a mapping that refuses `in`
            return False
    return False


def fine_bits_setting(config) -> Optional[str]:
    """``motor_fine_nbits``: missing -> the default (auto); an explicit null, 0 or false -> None (no fine
    tokens); else ``"auto"`` or an int as text."""
    key = "motor_fine_nbits"
    if _set_to_null(config, key):
        return None
    value = motor_setting(config, key)
    if value is None or value is False or value == 0 or str(value).lower() in ("off", "none", "null", "0"):
        return None
    if str(value).lower() == "auto":
        return "auto"
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise ValueError(f"motor_fine_nbits must be auto, null (off) or an int in [1, 20], got {value!r}")
    return str(int(value))


def fine_items_per_cell_setting(config) -> float:
    """``motor_fine_items_per_cell`` as a number (missing or null -> the default, 4); its range
    (>= 1) is checked where it is used, :func:`.fine.auto_nbits`."""
    value = motor_setting(config, "motor_fine_items_per_cell")
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"motor_fine_items_per_cell must be a number >= 1 (items a fine cell), "
                         f"got {value!r}") from None


def fine_own_min_setting(config) -> Optional[int]:
    """``motor_fine_own_min_interactions``: missing, null, 0 or false -> None (off); else an int >= 1
    (items with at least that many training interactions get a fine cell of their own, :func:`.fine.own_cells`)."""
    value = motor_setting(config, "motor_fine_own_min_interactions")
    if value is None or value is False or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"motor_fine_own_min_interactions must be null (off) or an integer >= 1 (training "
                         f"interactions), got {value!r}")
    return int(value)


def dropout_setting(config, key: str) -> float:
    """A dropout probability key (``motor_token_dropout``, ``motor_fine_dropout``) as a float (missing
    or null -> its default); its range, [0, 1), is checked by the network that uses it."""
    value = motor_setting(config, key)
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a probability in [0, 1), got {value!r}") from None


def unseen_norm_setting(config) -> str:
    """``motor_unseen_norm`` as mean / weighted / off (:mod:`.unseen`); default off; auto = mean iff
    cold_item_ratio > 0."""
    value = motor_setting(config, "motor_unseen_norm")
    mode = "off" if value is False else str(value).lower()
    if mode not in UNSEEN_NORM_MODES:
        raise ValueError(f"motor_unseen_norm must be one of {', '.join(UNSEEN_NORM_MODES)}, got {value!r}")
    return ("mean" if config_get(config, "cold_item_ratio", 0) else "off") if mode == "auto" else mode


#: ``motor_unseen_neighbours: auto`` under the cold-start protocol (MMRec's knn_k in FREEDOM and LATTICE)
AUTO_UNSEEN_NEIGHBOURS = 10


def unseen_neighbours_setting(config) -> int:
    """``motor_unseen_neighbours`` as k >= 0 (:func:`.unseen.unseen_neighbours`): auto (or null, a config
    from before the key) = 10 when cold_item_ratio > 0, else 0; false / off = 0."""
    value = motor_setting(config, "motor_unseen_neighbours")
    if value is False or str(value).lower() == "off":
        return 0
    if str(value).lower() == "auto":
        return AUTO_UNSEEN_NEIGHBOURS if config_get(config, "cold_item_ratio", 0) else 0
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise ValueError(f"motor_unseen_neighbours must be auto, off or an int >= 0 (neighbours), got {value!r}")
    return int(value)


def tcn_dim_setting(config) -> int:
    """``motor_tcn_dim``: missing -> the default (16); an explicit null or 0 -> 0 (= d, no projection)
    (:func:`_set_to_null`)."""
    key = "motor_tcn_dim"
    try:
        value = config[key]
    except (KeyError, IndexError):
        return int(DEFAULTS[key])
    if value is None:
        return 0 if _set_to_null(config, key) else int(DEFAULTS[key])
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) and not (
            isinstance(value, str) and value.strip().isdigit()):
        raise ValueError(f"motor_tcn_dim must be a non-negative int (0 or null = the embedding dim), "
                         f"got {value!r}")
    return int(value)

