"""What each config key may hold: one table (:data:`KEYS`), read by :class:`mmrec_motor.config.Config`.

Two checks use it, in this order:

1. a command-line value is checked against the kind of the yaml value it replaces
   (:func:`check_override`: an int key takes an int, a number key a number, a list key a list, a grid
   key a list of its kind); the table lists the exceptions to that rule (``nullable``: null is accepted;
   ``required``: a string key that null does not satisfy; ``one_item_list``: a scalar means a list of
   that one item; a key checked in step 2 is left to it, whose messages are more precise);
2. after layering, the keys are checked in the table's order (:func:`validate`): a ``check`` on each
   value of a grid key's list (``per_value``), else on the one value; a ``check_all`` on the keys that
   depend on each other (``topk``, ``metrics``, ``valid_metric``).

``volatile`` keys do not change what a run computes (paths, threads, device, ``epochs``), so
:func:`run_identity` leaves them out: a checkpoint is resumed only by a run whose other keys are equal.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

#: ``learner`` values -> the torch.optim class that implements them
OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop", "adamw": "AdamW"}
METRICS = ("recall", "ndcg", "precision", "map")

#: values of ``cold_item_test`` (mmrec_motor/data/cold.py); the first is the default
COLD_ITEM_TEST = ("all", "own")


class ConfigError(ValueError):
    """A configuration problem the user can fix: names the file or key and what was expected."""


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _path_or_null(v: Any) -> bool:
    return v is None or v is False or isinstance(v, str)


def _check_metrics(values: Dict[str, Any]) -> None:
    """``topk`` (positive ints), ``metrics`` (some of METRICS) and ``valid_metric`` (one they compute)."""
    topk = values.get("topk")
    if isinstance(topk, int):
        topk = values["topk"] = [topk]
    if not isinstance(topk, list) or not topk or not all(_int(k) and k > 0 for k in topk):
        raise ConfigError(f"config key 'topk' must be a list of positive integers, got {topk!r}")
    metrics = values.get("metrics")
    if isinstance(metrics, str):
        metrics = values["metrics"] = [metrics]
    bad = [m for m in metrics or [] if not isinstance(m, str) or m.lower() not in METRICS]
    if not metrics or bad:
        raise ConfigError(f"config key 'metrics' must list some of Recall, NDCG, Precision, MAP; "
                          f"got {metrics!r}")
    valid_metric = str(values.get("valid_metric", "")).lower()
    names = {f"{m.lower()}@{k}" for m in metrics for k in topk}
    if valid_metric not in names:
        raise ConfigError(f"config key 'valid_metric' is {values.get('valid_metric')!r}; "
                          f"expected one of the computed metrics: {', '.join(sorted(names))}")


@dataclass(frozen=True)
class Key:
    """How one key is checked (see the module docstring)."""

    check: Optional[Callable[[Any], bool]] = None
    message: str = ""                # format string with {key} and {value}
    per_value: bool = False          # check each value of a grid key's list
    check_all: Optional[Callable[[Dict[str, Any]], None]] = None   # checks keys that depend on each other
    checked_with: str = ""           # the key whose check_all checks this one
    nullable: bool = False
    required: bool = False
    one_item_list: bool = False
    volatile: bool = False
    path: bool = False               # an os.PathLike value becomes a str


POSITIVE_INT = Key(lambda v: _int(v) and v >= 1, "config key {key!r} must be a positive integer, got {value!r}",
                   per_value=True)
PATH = "config key {key!r} must be a path string or null, got {value!r}"

KEYS: Dict[str, Key] = {
    "epochs": replace(POSITIVE_INT, volatile=True),
    "train_batch_size": POSITIVE_INT,
    "eval_batch_size": POSITIVE_INT,
    "embedding_size": POSITIVE_INT,
    "eval_step": POSITIVE_INT,
    "test_every_epoch": Key(lambda v: isinstance(v, bool),
                            "config key 'test_every_epoch' must be True or False, got {value!r}", volatile=True),
    "stopping_step": Key(lambda v: _int(v) and v >= 0,
                         "config key 'stopping_step' must be an integer >= 0, got {value!r}"),
    "seed": Key(_int, "config key 'seed' must be an integer (or a list of them), got {value!r}",
                per_value=True, one_item_list=True),
    "topk": Key(one_item_list=True, check_all=_check_metrics),
    "metrics": Key(one_item_list=True, checked_with="topk"),
    "valid_metric": Key(required=True, checked_with="topk"),
    "data_path": Key(lambda v: isinstance(v, str),
                     "config key 'data_path' must be a path string, got {value!r}", required=True, volatile=True),
    "learner": Key(lambda v: str(v).lower() in OPTIMIZERS,
                   "config key 'learner' is {value!r}; expected one of " + ", ".join(OPTIMIZERS),
                   per_value=True, required=True),
    "learning_rate": Key(lambda v: _number(v) and v > 0,
                         "config key 'learning_rate' must be a number > 0, got {value!r}", per_value=True),
    "weight_decay": Key(lambda v: v is None or (_number(v) and v >= 0),
                        "config key 'weight_decay' must be a number >= 0, got {value!r}", per_value=True,
                        nullable=True),
    "learning_rate_scheduler": Key(
        lambda v: v is None or (isinstance(v, (list, tuple)) and len(v) == 2 and all(_number(x) for x in v)
                                and v[1] != 0),
        "config key 'learning_rate_scheduler' must be [factor, step] (two numbers, step != 0: lr * factor ** "
        "(epoch / step)), got {value!r}", per_value=True, nullable=True),
    "clip_grad_norm": Key(
        lambda v: v is None or (isinstance(v, dict) and "max_norm" in v and set(v) <= {
            "max_norm", "norm_type", "error_if_nonfinite"} and _number(v["max_norm"])),
        "config key 'clip_grad_norm' must be null or a mapping like {{max_norm: 5.0}} (optional norm_type), "
        "got {value!r}"),
    "nan_loss": Key(lambda v: isinstance(v, str) and v.lower() in ("raise", "stop"),
                    "config key 'nan_loss' is {value!r}; expected raise (a TrainingError naming the epoch "
                    "and batch) or stop (MMRec's rule: training ends there, the best-valid epoch so far is "
                    "reported)", volatile=True),
    "checkpoint_every": Key(lambda v: v in (None, False) or (_int(v) and v >= 0),
                            "config key 'checkpoint_every' must be an integer >= 0 (0: no per-epoch "
                            "checkpoints), got {value!r}", volatile=True),
    "verbose": Key(lambda v: v is None or isinstance(v, bool),
                   "config key 'verbose' is {value!r}; expected null (short lines, the default), True (every "
                   "metric of every epoch) or False (nothing on stdout)", nullable=True),
    "grid": Key(lambda v: v is None or str(v).lower() in ("full", "first"),
                "config key 'grid' is {value!r}; expected 'full' (every combination) or 'first' (each grid "
                "key but seed at its first value)", nullable=True, volatile=True),
    "cold_item_test": Key(lambda v: v is None or v in COLD_ITEM_TEST,
                          "config key 'cold_item_test' is {value!r}; expected all (every interaction of a "
                          "held-out item is a test one) or own (test keeps its own rows only)", nullable=True),
    "isolated_self_loops": Key(lambda v: v is None or isinstance(v, bool) or str(v).lower() == "auto",
                               "config key 'isolated_self_loops' must be True, False or auto, got {value!r}",
                               nullable=True),     # null (a config from before the key) = auto
    # a command-line "off" reads as YAML false: both mean off (mmrec_motor/motor/unseen.py)
    "motor_unseen_norm": Key(lambda v: v is None or v is False or (isinstance(v, str) and v.lower() in (
                                 "auto", "mean", "weighted", "off")),
                             "config key 'motor_unseen_norm' must be auto, mean, weighted or off, got {value!r}",
                             nullable=True),
    "motor_unseen_neighbours": Key(lambda v: v is None or v is False or (_int(v) and v >= 0) or (
                                       isinstance(v, str) and v.lower() in ("auto", "off")),
                                   "config key 'motor_unseen_neighbours' must be auto, off or an int >= 0 "
                                   "(neighbours), got {value!r}", nullable=True),
    "eval_item_chunk": Key(lambda v: v is None or (_int(v) and v >= 1),
                           "config key 'eval_item_chunk' must be null or a positive integer (items scored "
                           "at once in evaluation), got {value!r}", nullable=True, volatile=True),
    "num_threads": Key(lambda v: v is None or (_int(v) and v >= 1),
                       "config key 'num_threads' must be null or a positive integer, got {value!r}",
                       nullable=True, volatile=True),
    "tuning_budget": Key(lambda v: v is None or (_int(v) and v >= 1),
                         "config key 'tuning_budget' must be null or a positive integer, got {value!r}",
                         nullable=True, volatile=True),
    "tuning_combination": Key(lambda v: v is None or (_int(v) and v >= 0),
                              "config key 'tuning_combination' must be null or an integer >= 0, got {value!r}",
                              nullable=True, volatile=True),
    "result_file": Key(_path_or_null, PATH, volatile=True, path=True),
    "topk_file": Key(_path_or_null, PATH, volatile=True, path=True),
    "user_metrics_file": Key(_path_or_null, PATH, volatile=True, path=True),
    "checkpoint_dir": Key(_path_or_null, PATH, nullable=True, volatile=True, path=True),
    "log_dir": Key(_path_or_null, PATH, nullable=True, volatile=True, path=True),
    "graph_cache_dir": Key(_path_or_null, PATH, volatile=True, path=True),
    "inter_file_name": Key(required=True),
    "USER_ID_FIELD": Key(required=True),
    "ITEM_ID_FIELD": Key(required=True),
    "inter_splitting_label": Key(required=True),
    "vision_feature_file": Key(nullable=True),
    "text_feature_file": Key(nullable=True),
    "user_knn_k": Key(nullable=True),
    "aggr_mode": Key(nullable=True),
    "motor_tcn_dim": Key(nullable=True),
    "motor_modalities": Key(one_item_list=True),
    "motor_cache_dir": Key(volatile=True),
    "resume": Key(volatile=True),
    "device": Key(volatile=True),
    "gpu_id": Key(volatile=True),
    "use_gpu": Key(volatile=True),
}
_NO_RULE = Key()
_KIND_TEXT = {"int": "an integer", "number": "a number", "bool": "True or False", "str": "a string"}


def key(name: str) -> Key:
    return KEYS.get(name, _NO_RULE)


# ----------------------------------------------------------------------------- 1. overrides

def _kind(value: Any) -> Optional[str]:
    """'int', 'number', 'bool', 'str' for a yaml scalar; None when anything goes (null, list, dict)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "str"
    return None


def _list_kind(values: List[Any]) -> Optional[str]:
    kinds = {_kind(v) for v in values}
    if kinds == {"int"}:
        return "int"
    if kinds and kinds <= {"int", "number"}:
        return "number"
    return kinds.pop() if len(kinds) == 1 else None


def _coerce(kind: Optional[str], value: Any) -> Tuple[bool, Any]:
    """(ok, value) for one scalar of the expected kind; numbers and paths given to a string key
    become strings (a folder named 2024 reads as an int in YAML)."""
    import numpy as np

    if kind is None:
        return True, value
    if isinstance(value, (bool, np.bool_)):
        return kind == "bool", bool(value)
    if kind == "int":
        return isinstance(value, (int, np.integer)), int(value) if isinstance(value, (int, np.integer)) else value
    if kind == "number":
        return isinstance(value, (int, float, np.integer, np.floating)), value
    if kind == "str":
        if isinstance(value, (str, os.PathLike)):
            return True, os.fspath(value)
        if isinstance(value, (int, float)):
            return True, str(value)
        return False, value
    return False, value


def check_override(name: str, value: Any, default: Any, is_grid: bool, was_grid: bool) -> Any:
    """``value`` given for ``name`` on the command line, checked against the kind of its yaml value
    ``default`` (a list when ``was_grid``, a grid key of the yamls); returns it (strings coerced) or
    raises ConfigError naming the key and what was expected. Keys whose yaml value is null, and keys
    with a ``check`` of their own, accept anything here."""
    rule = key(name)
    if rule.check is not None or rule.check_all is not None or rule.checked_with:
        return value
    if isinstance(default, list):
        kind, default_is_list = _list_kind(default), True
    else:
        kind, default_is_list = _kind(default), False
    if default is None or (kind is None and not default_is_list):
        return value
    shown = f"{_KIND_TEXT.get(kind, 'a value')} (the yaml default is {default!r})"
    if value is None:
        if rule.nullable or name.startswith("motor_") or (kind == "str" and not rule.required):
            return value
        raise ConfigError(f"config key {name!r} was given no value (null); expected {shown}")
    if isinstance(value, dict):
        if name.startswith("motor_") and not default_is_list:   # per-modality values, e.g. {v: 8, t: 4}
            items = {}
            for mod, item in value.items():
                ok, items[mod] = _coerce(kind, item)
                if not ok:
                    raise ConfigError(f"config key {name!r}: the value for modality {mod!r} is {item!r}; "
                                      f"expected {shown}")
            return items
        raise ConfigError(f"config key {name!r} was given a mapping {value!r}; expected {shown}")
    if isinstance(value, (list, tuple)):
        if not (is_grid or default_is_list):
            raise ConfigError(f"config key {name!r} was given a list {list(value)!r} but is not a grid key "
                              f"(hyper_parameters); expected {shown}")
        out = []
        for item in value:
            ok, item = _coerce(kind, item)
            if not ok:
                raise ConfigError(f"config key {name!r}: the list {list(value)!r} holds {item!r}; expected "
                                  f"each item to be {shown}")
            out.append(item)
        return out
    if default_is_list and not is_grid and not was_grid and not rule.one_item_list:
        raise ConfigError(f"config key {name!r} expects a list like {default!r}, got {value!r}")
    ok, coerced = _coerce(kind, value)
    if not ok:
        raise ConfigError(f"config key {name!r} expects {shown}" + (", or a list of them (a grid)"
                          if is_grid or default_is_list else "") + f"; got {value!r}")
    return coerced


# ------------------------------------------------------------------------------ 2. validation

def validate(values: Dict[str, Any], grid_keys: List[str], yaml_grid_keys: set) -> None:
    """Check (and normalise in place) the layered ``values``; see the module docstring."""
    for name, rule in KEYS.items():
        if rule.path and isinstance(values.get(name), os.PathLike):
            values[name] = os.fspath(values[name])
        if rule.check_all is not None:
            rule.check_all(values)
        if rule.check is None:
            continue
        value = values.get(name)
        each = value if rule.per_value and name in grid_keys and isinstance(value, list) else [value]
        for item in each:
            if not rule.check(item):
                raise ConfigError(rule.message.format(key=name, value=item))
    for name in sorted(yaml_grid_keys - set(grid_keys)):
        value = values.get(name)
        if isinstance(value, list) and not key(name).one_item_list and len(value) != 1:
            raise ConfigError(f"config key {name!r} is the list {value!r} but is no longer a grid key "
                              f"(hyper_parameters={grid_keys!r}); give it one value "
                              f"(--{name}=...) or keep it in hyper_parameters")
        if isinstance(value, list) and len(value) == 1:
            values[name] = value[0]


# ------------------------------------------------------------------------------- run identity

#: Evaluation rules added after checkpoints began to store their run's config, each with the value
#: that computes what a run made before the key existed computed. A stored config that lacks one of
#: them takes this value in :func:`mmrec_motor.quick_start.load_run`, not today's default, so a
#: restored run ranks as it did when it was trained.
BEFORE_THE_KEY: Dict[str, Any] = {"isolated_self_loops": False, "motor_unseen_norm": "off",
                                  "motor_unseen_neighbours": 0}


def _off_without_the_protocol(value: Any, before: Any) -> bool:
    """True when an evaluation rule of :data:`BEFORE_THE_KEY` does nothing with the cold-item protocol
    off: auto, off (a YAML ``off`` reads as False), or its value from before the key."""
    return str(value).lower() in ("auto", "off") or value is False or value == before


def run_identity(values: Mapping[str, Any]) -> str:
    """A hash of every setting that shapes the run (the keys that are not ``volatile``), so a
    checkpoint is only resumed by its own run. With the cold-item protocol off (ratio 0) its keys
    are left out too (``cold_item_test`` also at ``all``, the rule before the key), and
    ``isolated_self_loops``, ``motor_unseen_norm`` and ``motor_unseen_neighbours`` when they are
    ``auto`` or off (the same then); ``motor_fine_items_per_cell``, ``motor_fine_dropout``,
    ``motor_fine_own_min_interactions``, ``motor_unseen_norm`` and ``motor_unseen_neighbours`` when
    MOTOR is off, and the first three at their first values (4, 0, off): the identity of runs from
    before those keys existed."""
    relevant = {k: v for k, v in values.items() if not key(k).volatile}
    if not relevant.get("motor") or relevant.get("motor_fine_items_per_cell") == 4:
        relevant.pop("motor_fine_items_per_cell", None)
    if not relevant.get("motor") or not relevant.get("motor_fine_dropout"):
        relevant.pop("motor_fine_dropout", None)
    if not relevant.get("motor") or not relevant.get("motor_fine_own_min_interactions"):
        relevant.pop("motor_fine_own_min_interactions", None)
    if not relevant.get("motor"):
        relevant.pop("motor_unseen_norm", None)
        relevant.pop("motor_unseen_neighbours", None)
    if not relevant.get("cold_item_ratio") or relevant.get("cold_item_test") in (None, "all"):
        relevant.pop("cold_item_test", None)
    if not relevant.get("cold_item_ratio"):
        relevant.pop("cold_item_ratio", None)
        relevant.pop("cold_item_seed", None)
        for name in BEFORE_THE_KEY:                 # the evaluation rules: auto is off here, as off is
            if _off_without_the_protocol(relevant.get(name, "auto"), BEFORE_THE_KEY[name]):
                relevant.pop(name, None)
    return hashlib.sha1(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:12]

