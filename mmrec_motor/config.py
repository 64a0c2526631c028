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
``grid: first`` (ours; toy's yaml sets it) runs each grid key but ``seed`` at its first value, except
a list given on the command line (:attr:`Config.command_line_keys`).

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

from mmrec_motor.keys import KEYS, ConfigError, check_override, validate

__all__ = ["Config", "ConfigError", "CONFIG_ROOT", "available_datasets", "available_models", "grid",
           "grid_note", "load_yaml", "package_data_dir", "parse_overrides", "parse_value"]


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


def volatile_defaults() -> Dict[str, Any]:
    """overall.yaml's values of the ``volatile`` keys (those that do not change what a run computes):
    what a stored config made before such a key existed takes for it (:func:`quick_start.load_run`)."""
    return {k: v for k, v in load_yaml(CONFIG_ROOT / "overall.yaml").items() if k in KEYS and KEYS[k].volatile}


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
            if key in values:
                overrides[key] = check_override(key, overrides[key], values[key], key in grid_keys,
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

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Config":
        """The Config of a run's resolved ``values`` (:meth:`to_dict`, as a checkpoint or a result file
        stores it), checked again; its ``device`` is resolved anew on this machine."""
        config = cls.__new__(cls)
        config.files, config._values, config.command_line_keys = [], dict(values), frozenset()
        config.yaml_keys, config._yaml_grid_keys = set(values), set()
        config._validate()
        config._values["device"] = config._resolve_device()
        return config

    def _validate(self) -> None:
        """The checks of :mod:`mmrec_motor.keys`; each error names the key and what was expected."""
        validate(self._values, self.grid_keys(), self._yaml_grid_keys)

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
    first_only = _first_only(config)
    for name in names:
        value = config[name]
        values = value if isinstance(value, list) else [value]
        if first_only and name != "seed" and name not in config.command_line_keys:
            values = values[:1]
        options.append(values)
    return [(names, combo) for combo in itertools.product(*options)]


def _first_only(config: Config) -> bool:
    return str(config["grid"] or "full").lower() == "first"


def grid_note(config: Config, runs: int) -> str:
    """One line saying that ``grid: first`` left combinations out (empty when it left none out)."""
    if not _first_only(config):
        return ""
    full = 1
    for name in config.grid_keys():
        value = config[name]
        full *= len(value) if isinstance(value, list) else 1
    if full == runs:
        return ""
    return (f"grid: first (each grid key but seed at its first value): {runs} of {full} combinations; "
            f"--grid=full runs them all")
