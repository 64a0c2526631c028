"""The run store: one folder ``DIR`` per bench or analysis, one file per run.

    DIR/bench.json               the command lines that filled DIR and the overrides they passed
    DIR/runs/<name>.json         a finished run's result dict (quick_start's, as ``--result_file``)
    DIR/runs/<name>.error.txt    the error of a run that failed (removed when it succeeds later)
    DIR/topk/<name>.tsv          a run's test top-50 (cold-items)
    DIR/users/<name>.npz         a run's valid and test metrics per user (``user_metrics_file``)
    DIR/log/<name>/, DIR/saved/  each run's log and best checkpoint

``<name>`` is :attr:`RunSpec.name`: ``<model>-<dataset>-<variant>-<seed>``, plus ``-<tag>`` for a run
with keys of its own (token-budget: ``-M<m>-b<nbits>``). A run whose JSON exists is done; every
write is atomic (:mod:`mmrec_motor.fileio`), so an interrupted command leaves whole files only.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from mmrec_motor.config import ConfigError
from mmrec_motor.fileio import read_json, write_json, write_text

VARIANTS = ("id", "motor")
# a run of the tuned protocol (bench --protocol tuned) reports as its side's "-tuned" variant
TUNED_VARIANTS = ("id-tuned", "motor-tuned")
ALL_VARIANTS = VARIANTS + TUNED_VARIANTS
# Keys that bench and the analyses set per run; passing them as overrides is refused.
BENCH_OWNED_KEYS = ("seed", "motor", "result_file", "topk_file", "user_metrics_file")


@dataclass(frozen=True)
class RunSpec:
    """One run: model x dataset x variant x seed, plus the keys of its own (``extra``) named by
    ``tag``."""

    model: str
    dataset: str
    variant: str
    seed: int
    tag: str = ""
    extra: Tuple[Tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        """The file stem of the run in ``DIR/runs`` (module docstring)."""
        base = f"{self.model}-{self.dataset}-{self.variant}-{self.seed}"
        return base + (f"-{self.tag}" if self.tag else "")


def runs_dir(out: str) -> str:
    """The folder of the run JSONs (and error files) of ``out``."""
    return os.path.join(out, "runs")


def result_path(out: str, spec: RunSpec) -> str:
    return os.path.join(runs_dir(out), spec.name + ".json")


def error_path(out: str, spec: RunSpec) -> str:
    return os.path.join(runs_dir(out), spec.name + ".error.txt")


def topk_path(out: str, spec: RunSpec) -> str:
    return os.path.join(out, "topk", spec.name + ".tsv")


def users_path(out: str, spec: RunSpec) -> str:
    return os.path.join(out, "users", spec.name + ".npz")


def load_result(out: str, spec: RunSpec) -> Optional[Dict[str, Any]]:
    """The run's result dict, or None when it has not finished."""
    path = result_path(out, spec)
    return read_json(path) if os.path.isfile(path) else None


def _existing(out: str, folder: str, stored: Optional[str]) -> Optional[str]:
    """``stored`` when that file exists, else the file of its name in ``DIR/<folder>`` (a run folder
    that moved or was merged) when that exists; None otherwise or when nothing was stored."""
    candidates = [stored, os.path.join(out, folder, os.path.basename(stored))] if stored else []
    return next((p for p in candidates if os.path.isfile(p)), None)


def saved_checkpoint(out: str, result: Mapping[str, Any]) -> Optional[str]:
    """The best checkpoint of a finished run: where its result says, or under ``DIR/saved`` (a folder
    that moved); None when neither exists."""
    try:
        stored = result["combinations"][result["chosen"]]["checkpoint"]
    except (KeyError, IndexError, TypeError):
        return None
    return _existing(out, "saved", stored)


def saved_user_metrics(out: str, result: Mapping[str, Any]) -> Optional[str]:
    """The per-user metrics file of a finished run: where its config says, or under ``DIR/users`` (a
    folder that moved or was merged); None when it has none (a run from before the file existed)."""
    return _existing(out, "users", (result.get("config") or {}).get("user_metrics_file"))


def write_result(out: str, spec: RunSpec, result: Mapping[str, Any]) -> None:
    """The run's result JSON; a stale error file of the run is removed."""
    write_json(result_path(out, spec), result)
    if os.path.exists(error_path(out, spec)):
        os.remove(error_path(out, spec))


def write_error(out: str, spec: RunSpec, text: str) -> None:
    write_text(error_path(out, spec), text)


def valid_score(result: Mapping[str, Any], missing: Optional[float] = float("-inf")) -> Optional[float]:
    """A run's best validation value of its ``valid_metric`` (``missing`` when it has none)."""
    return result["best"]["valid"].get(str(result.get("valid_metric", "recall@20")).lower(), missing)


def chosen_specs(out: str, specs: Sequence[RunSpec]) -> List[RunSpec]:
    """The specs a report shows: every untuned spec, and of the tuned protocol's runs (tag ``t<k>``)
    per model x dataset x variant x seed the finished one with the best validation score (ties: the
    lower k), as :func:`mmrec_motor.experiments.report.chosen_on_validation` picks for the summary."""
    best: Dict[Tuple[str, str, str, int], Tuple[float, int, RunSpec]] = {}
    out_specs: List[RunSpec] = []
    for spec in specs:
        if not spec.tag.startswith("t") or not spec.tag[1:].isdigit():
            out_specs.append(spec)
            continue
        result = load_result(out, spec)
        if result is None:
            continue
        score = valid_score(result)
        key = (spec.model, spec.dataset, spec.variant, spec.seed)
        candidate = (score, -int(spec.tag[1:]), spec)
        if key not in best or candidate[:2] > best[key][:2]:
            best[key] = candidate
    return out_specs + [entry[2] for entry in best.values()]


def load_runs(out: str) -> List[Dict[str, Any]]:
    """Every run JSON in ``DIR/runs``, sorted by model, dataset, variant (id first), seed."""
    results = [read_json(path) for path in glob.glob(os.path.join(runs_dir(out), "*.json"))]
    return sorted(results, key=lambda r: tuple(run_row_key(r)))


def load_failures(out: str) -> Dict[str, str]:
    """``{run name: first line of its error}`` for the runs with an error file and no result JSON."""
    failures = {}
    for path in glob.glob(os.path.join(runs_dir(out), "*.error.txt")):
        name = os.path.basename(path)[: -len(".error.txt")]
        if os.path.isfile(os.path.join(runs_dir(out), name + ".json")):
            continue
        with open(path, encoding="utf-8") as handle:
            failures[name] = handle.readline().strip()
    return failures


def load_commands(out: str) -> List[str]:
    """The command lines recorded in ``DIR/bench.json`` (empty when it is missing)."""
    path = os.path.join(out, "bench.json")
    if not os.path.isfile(path):
        return []
    record = read_json(path)
    return list(record.get("commands") or [record.get("command", "")])


def check_overrides(overrides: Mapping[str, Any]) -> None:
    """Refuse the keys that bench sets per run (:data:`BENCH_OWNED_KEYS`)."""
    owned = [k for k in BENCH_OWNED_KEYS if k in overrides]
    if owned:
        raise ConfigError(f"bench sets {', '.join(owned)} itself (use --seeds / --variants; each run's "
                          f"result goes to DIR/runs); drop --{' --'.join(owned)}")


def record_bench(out: str, command: str, models: Sequence[str], datasets: Sequence[str],
                 variants: Sequence[str], seeds: Sequence[int], overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """Write (or extend) ``DIR/bench.json`` with this command line.

    A folder filled with other overrides is refused: its runs would be mixed with these in the
    reports. Adding models, datasets, variants or seeds with the same overrides is fine.
    """
    path = os.path.join(out, "bench.json")
    normal = json.loads(json.dumps(dict(overrides), sort_keys=True, default=str))
    commands: List[str] = []
    if os.path.isfile(path):
        previous = read_json(path)
        if previous.get("overrides") != normal:
            raise ConfigError(f"{out} holds a bench run with other overrides ({previous.get('overrides')}, "
                              f"now {normal}); use another --out, or delete {path} and {runs_dir(out)}")
        commands = list(previous.get("commands", []))
    if command not in commands:
        commands.append(command)
    record = {"commands": commands, "command": command, "models": list(models),
              "datasets": list(datasets), "variants": list(variants), "seeds": [int(s) for s in seeds],
              "overrides": normal}
    write_json(path, record)
    return record


# ----------------------------------------------------------------------------- result fields

def run_seed(result: Mapping[str, Any]) -> int:
    """The seed of a one-combination result (its chosen combination's parameters)."""
    seed = result["best"]["parameters"].get("seed", result["config"].get("seed"))
    return int(seed[0] if isinstance(seed, list) else seed)


def run_variant(result: Mapping[str, Any]) -> str:
    """``"motor"`` or ``"id"``; ``"motor-tuned"`` / ``"id-tuned"`` for a run of the tuned protocol
    (its config has a ``tuning_budget``)."""
    base = "motor" if result["motor"] else "id"
    return base + ("-tuned" if (result.get("config") or {}).get("tuning_budget") else "")


def run_row_key(result: Mapping[str, Any]) -> Tuple[str, str, int, int, int]:
    """The sort key of a result: model, dataset, variant (id, motor, id-tuned, motor-tuned), seed,
    tuned combination."""
    combination = (result.get("config") or {}).get("tuning_combination") or 0
    return (result["model"], result["dataset"], ALL_VARIANTS.index(run_variant(result)), run_seed(result),
            int(combination))


def spec_of(result: Mapping[str, Any], name: str = "") -> RunSpec:
    """The RunSpec of a finished run from its result; ``name`` (its file stem) gives the tag of a
    token-budget run (``-M<m>-b<nbits>``: motor_num_subspaces and motor_nbits). A run of the tuned
    protocol gets its tag ``t<k>`` from its config (its other keys are in the result's config)."""
    spec = RunSpec(result["model"], result["dataset"], "motor" if result["motor"] else "id", run_seed(result))
    config = result.get("config") or {}
    if config.get("tuning_budget"):
        return RunSpec(spec.model, spec.dataset, spec.variant, spec.seed, f"t{int(config['tuning_combination'])}")
    tag = name[len(spec.name) + 1:] if name.startswith(spec.name + "-") else ""
    if not tag:
        return spec
    m, b = tag.split("-")
    return RunSpec(spec.model, spec.dataset, spec.variant, spec.seed, tag,
                   (("motor_num_subspaces", int(m[1:])), ("motor_nbits", int(b[1:]))))
