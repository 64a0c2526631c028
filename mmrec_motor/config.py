"""Configuration: MMRec's yaml layering, plus command-line overrides.

Precedence (later wins), the one place it is written down:

1. ``configs/overall.yaml``                  global defaults (MMRec's overall.yaml, plus our keys)
2. ``configs/model/MOTOR.yaml``              MOTOR's defaults (``motor_*`` keys), always loaded so that
                                             a dataset or backbone yaml can override them (a text-only
                                             dataset sets ``motor_modalities: ['t']``)
3. ``configs/dataset/<dataset>.yaml``        if it exists; a dataset folder without a yaml runs on
                                             defaults (``inter_file_name: <dataset>.inter``)
4. ``configs/model/<MODEL>.yaml``            the backbone's hyper-parameters and grid
5. the command line (``--key=value``, the value parsed as YAML) or the ``overrides`` dict

``hyper_parameters`` lists are concatenated across the yaml files (as MMRec does), ``seed`` is always
first, and a key given on the command line replaces the yaml value entirely. A grid key may hold a
scalar (``--reg_weight=0.001``): :func:`grid` treats it as a one-value list (MMRec crashes there).

``config[key]`` returns ``None`` for a key that no layer defines, as MMRec's ``Config`` does, so model
code written for MMRec reads optional keys the same way.
"""
from __future__ import annotations

import itertools
import os
import re
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import yaml


def package_data_dir(folder: str, marker: str, what: str) -> Path:
    """The shipped folder ``folder`` holding the file ``marker``: inside the installed package
    (a wheel puts it in ``mmrec_motor/<folder>``) or beside the package in the source tree; ``what``
    names it in the error when neither has it."""
    here = Path(__file__).resolve().parent
    for candidate in (here / folder, here.parent / folder):
        if (candidate / marker).is_file():
            return candidate
    raise FileNotFoundError(
        f"mmrec-motor's {what} were not found: looked for {marker} in {here / folder} and "
        f"{here.parent / folder}. Reinstall the package.")


CONFIG_ROOT = package_data_dir("configs", "overall.yaml", "configs")


class ConfigError(ValueError):
    """A configuration problem the user can fix: names the file or key and what was expected."""


def _yaml_loader() -> type:
    """A SafeLoader that reads ``1e-4`` as a float (plain YAML 1.1 reads it as a string)."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."))
    return Loader


_LOADER = _yaml_loader()


def parse_value(text: str) -> Any:
    """Parse one command-line value as YAML (``5`` -> 5, ``1e-3`` -> 0.001, ``[1,2]`` -> list)."""
    try:
        return yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        mark = getattr(exc, "problem_mark", None)
        where = f" at column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"cannot parse the command-line value {text!r} as YAML: {problem}{where} "
                          f"(quote a value with special characters: --key=\"'...'\")") from exc


def load_yaml(path: Path) -> Dict[str, Any]:
    """Read one yaml file into a dict; a syntax error names the file and line."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=_LOADER)
    except OSError as exc:        # a directory, a dangling link, no permission
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc}); expected a yaml file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); expected a yaml "
                          f"file") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where}: invalid YAML: {exc.problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value at the top level, "
                          f"found {type(data).__name__}")
    return data


def available_models() -> List[str]:
    """Backbones that have a yaml in configs/model (MOTOR.yaml holds MOTOR's keys, not a model)."""
    return sorted(p.stem for p in (CONFIG_ROOT / "model").glob("*.yaml") if p.stem != "MOTOR")


def available_datasets() -> List[str]:
    return sorted(p.stem for p in (CONFIG_ROOT / "dataset").glob("*.yaml"))


def parse_overrides(args: List[str]) -> Dict[str, Any]:
    """``['--epochs=5', '--motor', '--seed=[1,2]']`` -> ``{'epochs': 5, 'motor': True, 'seed': [1, 2]}``.

    A bare ``--flag`` means True; ``--key value`` (space-separated) is accepted too.
    """
    overrides: Dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"unexpected argument {arg!r}: overrides are written --key=value")
        body = arg[2:]
        if "=" in body:
            key, text = body.split("=", 1)
            overrides[key] = parse_value(text)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            overrides[body] = parse_value(args[i + 1])
            i += 1
        else:
            overrides[body] = True
        i += 1
    return overrides


# What a command-line value may be, judged from the yaml value it replaces (see _check_override_type).
_NULLABLE = {"motor_tcn_dim", "learning_rate_scheduler", "weight_decay", "user_knn_k", "aggr_mode",
             "vision_feature_file", "text_feature_file", "log_dir", "checkpoint_dir", "num_threads"}
_REQUIRED_STRINGS = {"data_path", "inter_file_name", "USER_ID_FIELD", "ITEM_ID_FIELD",
                     "inter_splitting_label", "learner", "valid_metric"}
# Keys that Config._validate checks itself, with messages of their own.
_VALIDATED = {"epochs", "train_batch_size", "eval_batch_size", "embedding_size", "eval_step",
              "stopping_step", "seed", "topk", "metrics", "valid_metric", "data_path", "learner",
              "learning_rate", "weight_decay", "learning_rate_scheduler", "clip_grad_norm",
              "checkpoint_every", "num_threads", "result_file", "topk_file", "checkpoint_dir", "log_dir",
              "graph_cache_dir"}
_SCALAR_FOR_LIST = {"topk", "metrics", "motor_modalities", "seed"}   # a scalar means a one-item list
_KIND_TEXT = {"int": "an integer", "number": "a number", "bool": "True or False", "str": "a string"}


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


def _check_override_type(key: str, value: Any, default: Any, is_grid: bool, was_grid: bool) -> Any:
    """``value`` given for ``key`` on the command line, checked against the type of its yaml value
    ``default`` (a list when ``was_grid``, a grid key of the yamls); returns it (strings coerced) or
    raises ConfigError naming the key and what was expected.
    Keys whose yaml value is null, and keys the runtime validates itself, accept anything here."""
    if isinstance(default, list):
        kind, default_is_list = _list_kind(default), True
    else:
        kind, default_is_list = _kind(default), False
    if default is None or (kind is None and not default_is_list):
        return value
    shown = f"{_KIND_TEXT.get(kind, 'a value')} (the yaml default is {default!r})"
    if value is None:
        if key in _NULLABLE or key.startswith("motor_") or (kind == "str" and key not in _REQUIRED_STRINGS):
            return value
        raise ConfigError(f"config key {key!r} was given no value (null); expected {shown}")
    if isinstance(value, dict):
        if key.startswith("motor_") and not default_is_list:   # per-modality values, e.g. {v: 8, t: 4}
            items = {}
            for mod, item in value.items():
                ok, items[mod] = _coerce(kind, item)
                if not ok:
                    raise ConfigError(f"config key {key!r}: the value for modality {mod!r} is {item!r}; "
                                      f"expected {shown}")
            return items
        raise ConfigError(f"config key {key!r} was given a mapping {value!r}; expected {shown}")
    if isinstance(value, (list, tuple)):
        if not (is_grid or default_is_list):
            raise ConfigError(f"config key {key!r} was given a list {list(value)!r} but is not a grid key "
                              f"(hyper_parameters); expected {shown}")
        out = []
        for item in value:
            ok, item = _coerce(kind, item)
            if not ok:
                raise ConfigError(f"config key {key!r}: the list {list(value)!r} holds {item!r}; expected "
                                  f"each item to be {shown}")
            out.append(item)
        return out
    if default_is_list and not is_grid and not was_grid and key not in _SCALAR_FOR_LIST:
        raise ConfigError(f"config key {key!r} expects a list like {default!r}, got {value!r}")
    ok, coerced = _coerce(kind, value)
    if not ok:
        raise ConfigError(f"config key {key!r} expects {shown}" + (", or a list of them (a grid)"
                          if is_grid or default_is_list else "") + f"; got {value!r}")
    return coerced


class Config(Mapping[str, Any]):
    """The merged configuration of one run (see the module docstring for the precedence).

    Args:
        model: backbone name, exactly as its yaml (``FREEDOM``).
        dataset: dataset name; a yaml in configs/dataset or a folder ``<data_path>/<dataset>``.
        overrides: command-line values, applied last.
    """

    def __init__(self, model: str, dataset: str, overrides: Optional[Mapping[str, Any]] = None):
        overrides = dict(overrides or {})
        self.command_line_keys = frozenset(overrides)      # grid: first keeps these grids whole
        if model not in available_models():
            raise ConfigError(f"unknown model {model!r}; available: {', '.join(available_models())}")
        self.files: List[Path] = []
        values: Dict[str, Any] = {}
        grid_keys: List[str] = []
        layers = [CONFIG_ROOT / "overall.yaml", CONFIG_ROOT / "model" / "MOTOR.yaml",
                  CONFIG_ROOT / "dataset" / f"{dataset}.yaml", CONFIG_ROOT / "model" / f"{model}.yaml"]
        for path in layers:
            if not os.path.lexists(path):        # a dataset without a yaml; anything else is read
                continue
            layer = load_yaml(path)
            grid_keys += list(layer.pop("hyper_parameters", None) or [])
            values.update(layer)
            self.files.append(path)
        self.yaml_keys = set(values)
        self._yaml_grid_keys = set(grid_keys)
        unknown = sorted(k for k in overrides if k not in values and k not in ("hyper_parameters",
                                                                               "inter_file_name"))
        for key in unknown:
            warnings.warn(f"--{key} is not defined by any yaml for {model}/{dataset} "
                          f"({', '.join(p.name for p in self.files)}); check the spelling. It is kept.",
                          stacklevel=2)
        if "hyper_parameters" in overrides:
            grid_keys = list(overrides.pop("hyper_parameters") or [])
            if not all(isinstance(k, str) for k in grid_keys):
                raise ConfigError(f"config key 'hyper_parameters' must be a list of key names, "
                                  f"got {grid_keys!r}")
        grid_keys = ["seed"] + [k for k in dict.fromkeys(grid_keys) if k != "seed"]
        for key in list(overrides):
            if key in values and key not in _VALIDATED:
                overrides[key] = _check_override_type(key, overrides[key], values[key], key in grid_keys,
                                                      key in self._yaml_grid_keys)
        values.update(overrides)
        values["model"], values["dataset"] = model, dataset
        values.setdefault("inter_file_name", f"{dataset}.inter")
        values["hyper_parameters"] = grid_keys
        self._values = values
        self._validate()
        self._values["device"] = self._resolve_device()

    # --- dict-like access (MMRec's Config returns None for a missing key) ---
    def __getitem__(self, key: str) -> Any:
        return self._values.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self._values[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def to_dict(self) -> Dict[str, Any]:
        return dict(self._values)

    @property
    def dataset_dir(self) -> Path:
        return Path(self["data_path"]) / self["dataset"]

    def _each(self, key: str) -> List[Any]:
        """The values a key takes: every item of a grid key's list, else the one value."""
        value = self._values.get(key)
        if key in self.grid_keys() and isinstance(value, list):
            return value
        return [value]

    def _validate(self) -> None:
        """Checks of the keys the runtime itself reads; each error names the key and what was expected."""
        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        def is_number(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        for key in ["epochs", "train_batch_size", "eval_batch_size", "embedding_size", "eval_step"]:
            for value in self._each(key):
                if not is_int(value) or value < 1:
                    raise ConfigError(f"config key {key!r} must be a positive integer, got {value!r}")
        stopping = self._values.get("stopping_step")
        if not is_int(stopping) or stopping < 0:
            raise ConfigError(f"config key 'stopping_step' must be an integer >= 0, got {stopping!r}")
        for seed in self._each("seed"):
            if not is_int(seed):
                raise ConfigError(f"config key 'seed' must be an integer (or a list of them), got {seed!r}")
        topk = self._values.get("topk")
        if isinstance(topk, int):
            topk = self._values["topk"] = [topk]
        if not isinstance(topk, list) or not topk or not all(
                isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in topk):
            raise ConfigError(f"config key 'topk' must be a list of positive integers, got {topk!r}")
        metrics = self._values.get("metrics")
        if isinstance(metrics, str):
            metrics = self._values["metrics"] = [metrics]
        known = {"recall", "ndcg", "precision", "map"}
        bad = [m for m in metrics or [] if not isinstance(m, str) or m.lower() not in known]
        if not metrics or bad:
            raise ConfigError(f"config key 'metrics' must list some of Recall, NDCG, Precision, MAP; "
                              f"got {metrics!r}")
        valid_metric = str(self._values.get("valid_metric", "")).lower()
        names = {f"{m.lower()}@{k}" for m in metrics for k in topk}
        if valid_metric not in names:
            raise ConfigError(f"config key 'valid_metric' is {self._values.get('valid_metric')!r}; "
                              f"expected one of the computed metrics: {', '.join(sorted(names))}")
        if not isinstance(self._values.get("data_path"), str):
            raise ConfigError(f"config key 'data_path' must be a path string, "
                              f"got {self._values.get('data_path')!r}")
        from mmrec_motor.trainer import OPTIMIZERS

        for learner in self._each("learner"):
            if str(learner).lower() not in OPTIMIZERS:
                raise ConfigError(f"config key 'learner' is {learner!r}; expected one of "
                                  f"{', '.join(OPTIMIZERS)}")
        for rate in self._each("learning_rate"):
            if not is_number(rate) or not rate > 0:
                raise ConfigError(f"config key 'learning_rate' must be a number > 0, got {rate!r}")
        for decay in self._each("weight_decay"):
            if decay is not None and (not is_number(decay) or not decay >= 0):
                raise ConfigError(f"config key 'weight_decay' must be a number >= 0, got {decay!r}")
        for schedule in self._each("learning_rate_scheduler"):
            if schedule is not None and not (
                    isinstance(schedule, (list, tuple)) and len(schedule) == 2
                    and all(is_number(v) for v in schedule) and schedule[1] != 0):
                raise ConfigError(f"config key 'learning_rate_scheduler' must be [factor, step] (two "
                                  f"numbers, step != 0: lr * factor ** (epoch / step)), got {schedule!r}")
        clip = self._values.get("clip_grad_norm")
        if clip is not None and not (isinstance(clip, dict) and "max_norm" in clip and set(clip) <= {
                "max_norm", "norm_type", "error_if_nonfinite"} and is_number(clip["max_norm"])):
            raise ConfigError(f"config key 'clip_grad_norm' must be null or a mapping like "
                              f"{{max_norm: 5.0}} (optional norm_type), got {clip!r}")
        every = self._values.get("checkpoint_every")
        if every not in (None, False) and (not is_int(every) or every < 0):
            raise ConfigError(f"config key 'checkpoint_every' must be an integer >= 0 (0: no per-epoch "
                              f"checkpoints), got {every!r}")
        threads = self._values.get("num_threads")
        if threads is not None and (not is_int(threads) or threads < 1):
            raise ConfigError(f"config key 'num_threads' must be null or a positive integer, got {threads!r}")
        for key in ("result_file", "topk_file", "checkpoint_dir", "log_dir", "graph_cache_dir"):
            value = self._values.get(key)
            if isinstance(value, os.PathLike):
                value = self._values[key] = os.fspath(value)
            if value is not None and value is not False and not isinstance(value, str):
                raise ConfigError(f"config key {key!r} must be a path string or null, got {value!r}")
        if str(self._values.get("grid", "full")).lower() not in ("full", "first"):
            raise ConfigError(f"config key 'grid' is {self._values.get('grid')!r}; expected 'full' (every "
                              f"combination) or 'first' (each grid key but seed at its first value)")
        if self._values.get("verbose") not in (None, True, False):
            raise ConfigError(f"config key 'verbose' is {self._values.get('verbose')!r}; expected null (short "
                              f"lines, the default), True (every metric of every epoch) or False (nothing "
                              f"on stdout)")
        was_grid = self._yaml_grid_keys - set(self.grid_keys())
        for key in sorted(was_grid):
            value = self._values.get(key)
            if isinstance(value, list) and key not in _SCALAR_FOR_LIST and len(value) != 1:
                raise ConfigError(f"config key {key!r} is the list {value!r} but is no longer a grid key "
                                  f"(hyper_parameters={self.grid_keys()!r}); give it one value "
                                  f"(--{key}=...) or keep it in hyper_parameters")
            if isinstance(value, list) and len(value) == 1:
                self._values[key] = value[0]

    def grid_keys(self) -> List[str]:
        return list(self._values.get("hyper_parameters") or ["seed"])

    def _resolve_device(self) -> str:
        import torch

        if self._values.get("use_gpu") and torch.cuda.is_available():
            gpu_id = self._values.get("gpu_id") or 0
            return f"cuda:{gpu_id}"
        return "cpu"


def grid(config: Config) -> List[Tuple[Tuple[str, ...], Tuple[Any, ...]]]:
    """Every combination of the grid keys, seed first, in MMRec's order (itertools.product).

    Returns a list of ``(names, values)``; a key that is a scalar counts as a one-value list and a key
    that is missing counts as ``[None]`` (as MMRec). With ``grid: first`` (``configs/dataset/toy.yaml``
    sets it, so that the main job takes seconds) every grid key but ``seed`` keeps only its first
    value, except a list given on the command line, which is searched whole; ``--grid=full`` restores
    the whole grid.
    """
    names = tuple(config.grid_keys())
    options = []
    first_only = str(config["grid"] or "full").lower() == "first"
    command_line = getattr(config, "command_line_keys", frozenset())
    for name in names:
        value = config[name]
        values = value if isinstance(value, list) else [value]
        if first_only and name != "seed" and name not in command_line:
            values = values[:1]
        options.append(values)
    return [(names, combo) for combo in itertools.product(*options)]


def grid_note(config: Config, runs: int) -> str:
    """One line saying that ``grid: first`` left combinations out (empty when it left none out)."""
    if str(config["grid"] or "full").lower() != "first":
        return ""
    full = 1
    for name in config.grid_keys():
        value = config[name]
        full *= len(value) if isinstance(value, list) else 1
    if full == runs:
        return ""
    return (f"grid: first (each grid key but seed at its first value): {runs} of {full} combinations; "
            f"--grid=full runs them all")
