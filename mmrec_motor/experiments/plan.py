"""From a command line to its runs: the lists (-m, -d, --seeds, --variants), the grid of
:class:`~mmrec_motor.experiments.store.RunSpec`, and the config each run trains with.

Every run of bench and of the analyses is one runtime run (:func:`mmrec_motor.quick_start.quick_start`)
with each grid key but ``seed`` pinned to its first yaml value (:func:`first_grid_values`, the
convention of the reference numbers in docs/benchmarks.md, "MMRec's defaults, no grid"), its seed and
variant, its own keys (``RunSpec.extra``), logs and checkpoints inside the folder (no periodic
checkpoints, quiet), and the user's ``--key=value`` overrides (:func:`run_config`).
"""
from __future__ import annotations

import argparse
import os
import shlex
from typing import Any, Dict, List, Mapping, Optional, Sequence

from mmrec_motor.config import Config, ConfigError, parse_overrides
from mmrec_motor.data.loader import load_data
from mmrec_motor.experiments.store import (VARIANTS, RunSpec, check_overrides, load_result, record_bench,
                                           topk_path, users_path, valid_score)


def split_list(text: str, what: str) -> List[str]:
    """``"a,b, c"`` -> ``["a", "b", "c"]``; an empty list is an error naming ``what``."""
    items = [part.strip() for part in str(text).split(",") if part.strip()]
    if not items:
        raise ConfigError(f"{what}: expected a comma-separated list, got {text!r}")
    return items


def int_list(text: str, what: str, minimum: Optional[int] = None) -> List[int]:
    """``"2,4"`` -> ``[2, 4]``; with ``minimum``, smaller values are refused and repeats dropped."""
    try:
        values = [int(v) for v in split_list(text, what)]
    except ValueError:
        raise ConfigError(f"{what}: expected comma-separated integers, got {text!r}") from None
    if minimum is None:
        return values
    if any(v < minimum for v in values):
        raise ConfigError(f"{what}: expected positive integers, got {text!r}")
    return list(dict.fromkeys(values))


def parse_seeds(text: str) -> List[int]:
    """``"999,1000"`` -> ``[999, 1000]``."""
    return int_list(text, "--seeds")


def parse_variants(text: str) -> List[str]:
    """``"id,motor"`` -> ``["id", "motor"]``; anything but id / motor is an error."""
    variants = split_list(text, "--variants")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"--variants: unknown {', '.join(unknown)}; expected id and/or motor")
    return variants


def plan(models: Sequence[str], datasets: Sequence[str], variants: Sequence[str],
         seeds: Sequence[int]) -> List[RunSpec]:
    """Every model x dataset x variant x seed, in that nesting order."""
    return [RunSpec(m, d, v, int(s)) for m in models for d in datasets for v in variants for s in seeds]


def trains(model: str, dataset: str) -> bool:
    """False for the untrained baselines (``req_training: False``: POP, ContentKNN), which have no
    item table and so no MOTOR variant."""
    return bool(Config(model, dataset, {})["req_training"])


def _tuned_spec(model: str, dataset: str, variant: str, seed: int, k: int, combo: Mapping[str, Any],
                n_combos: int) -> RunSpec:
    keys = tuple((key, value) for key, value in combo.items() if key != "motor")
    return RunSpec(model, dataset, variant, int(seed), f"t{k}", keys + (
        ("tuning_budget", n_combos), ("tuning_combination", k)))


def tuned_plan(models: Sequence[str], datasets: Sequence[str], variants: Sequence[str],
               seeds: Sequence[int], budget: int, overrides: Mapping[str, Any],
               search: str = "staged") -> List[RunSpec]:
    """The runs of the tuned protocol (:mod:`mmrec_motor.experiments.tuning`): per model x dataset x
    side x seed, the side's ``budget`` combinations, run k tagged ``t<k>`` with its pinned keys and the
    two tuning keys (``tuning_budget``: the side's whole count, ``tuning_combination``: k). An
    untrained baseline runs once, on the ID side, and has no MOTOR side. With ``search='staged'`` a
    MOTOR side lists its stage 1 only (:func:`staged_second_stage` adds the rest)."""
    from mmrec_motor.experiments.tuning import tuning_plan

    specs: List[RunSpec] = []
    for m in models:
        for d in datasets:
            side_budget = budget if trains(m, d) else 1
            # a staged MOTOR side counts its stage 2 too: as many combinations as the ID side
            total = len(tuning_plan(m, d, "id", side_budget, overrides))
            for v in variants:
                if v == "motor" and not trains(m, d):
                    continue
                combos = tuning_plan(m, d, v, side_budget, overrides, search if v == "motor" else "paired")
                for s in seeds:
                    for k, combo in enumerate(combos):
                        specs.append(_tuned_spec(m, d, v, s, k, combo, total))
    return specs


def staged_second_stage(specs: Sequence[RunSpec], out: str, overrides: Mapping[str, Any],
                        search: str) -> List[RunSpec]:
    """Stage 2 of the staged MOTOR search for every finished stage 1 among ``specs`` (per model x
    dataset x seed; a group with a missing stage-1 result gets none): tags continue after stage 1's."""
    from mmrec_motor.experiments.tuning import is_staged, second_stage

    groups: Dict[tuple, List[RunSpec]] = {}
    for spec in specs:
        if spec.variant == "motor" and spec.tag.startswith("t"):
            groups.setdefault((spec.model, spec.dataset, spec.seed), []).append(spec)
    more: List[RunSpec] = []
    for (m, d, seed), group in groups.items():
        if not is_staged(m, d, overrides, search):
            continue
        results = [load_result(out, s) for s in group]
        if any(r is None for r in results):
            continue
        scores = [valid_score(r) for r in results]
        own_keys = ("tuning_budget", "tuning_combination")
        stage_one = [{k: v for k, v in s.extra if k not in own_keys} for s in group]
        total = dict(group[0].extra)["tuning_budget"]
        for j, combo in enumerate(second_stage(m, d, overrides, stage_one, scores, total)):
            more.append(_tuned_spec(m, d, "motor", seed, len(group) + j, combo, total))
    return more


def first_grid_values(model: str, dataset: str, overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """Overrides that pin each grid key (but seed) to its first yaml value, unless already given."""
    config = Config(model, dataset, dict(overrides))
    pinned = dict(overrides)
    for key in config.grid_keys():
        value = config[key]
        if key != "seed" and key not in overrides and isinstance(value, list):
            pinned[key] = value[0]
    return pinned


def run_values(out: str, spec: RunSpec, overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """The overrides of one run: logs and checkpoints inside ``out``, no periodic checkpoints, quiet;
    the user's ``overrides`` come next and win; then the run's own keys; no result or top-K file (the
    runner writes the result itself); the per-user metrics to ``DIR/users/<name>.npz``."""
    values: Dict[str, Any] = {"log_dir": os.path.join(out, "log", spec.name),
                              "checkpoint_dir": os.path.join(out, "saved"),
                              "checkpoint_every": 0, "verbose": False}
    values.update(overrides)
    values.update({"result_file": None, "topk_file": None, "user_metrics_file": users_path(out, spec)})
    values.update(dict(spec.extra))
    return values


def run_config(out: str, spec: RunSpec, overrides: Mapping[str, Any], with_topk: bool = False) -> Config:
    """The config ``spec`` trains with (module docstring); ``with_topk`` writes its test top-50 to
    ``DIR/topk/<name>.tsv``."""
    values = first_grid_values(spec.model, spec.dataset, run_values(out, spec, overrides))
    values.update({"seed": spec.seed, "motor": spec.variant == "motor"})
    if with_topk:
        values["topk_file"] = topk_path(out, spec)
    return Config(spec.model, spec.dataset, values)


def check_data(models: Sequence[str], datasets: Sequence[str], seeds: Sequence[int], out: str,
               overrides: Mapping[str, Any]) -> None:
    """Build every model's config and load every dataset once (with the first seed), so that a bad
    key, model, dataset or cold-item split is one error before any training."""
    for dataset in datasets:
        configs = [run_config(out, RunSpec(model, dataset, "id", int(seeds[0])), overrides)
                   for model in models]
        load_data(configs[0])


# ------------------------------------------------------------------------------ command lines

def prepare_overrides(rest: List[str], name: str, own_keys: Sequence[str] = ()) -> Dict[str, Any]:
    """The ``--key=value`` overrides, refusing bench's own keys and those of the analysis ``name``."""
    overrides = parse_overrides(rest)
    check_overrides(overrides)
    refused = [k for k in own_keys if k in overrides]
    if refused:
        raise ConfigError(f"{name} sets {', '.join(refused)} itself; drop --{' --'.join(refused)}")
    return overrides


def record(name: str, argv: Sequence[str], out: str, overrides: Mapping[str, Any], models: Sequence[str],
           datasets: Sequence[str], variants: Sequence[str], seeds: Sequence[int]) -> None:
    """Check the data (:func:`check_data`), then record the command line and the plan in
    ``DIR/bench.json`` (a folder filled with other overrides is refused)."""
    check_data(models, datasets, seeds, out, overrides)
    record_bench(out, shlex.join(["mmrec-motor", name, *argv]), models, datasets, variants, seeds, overrides)


def id_motor_plan(name: str, argv: Sequence[str], args: argparse.Namespace,
                  overrides: Mapping[str, Any]) -> List[RunSpec]:
    """The runs of an ID vs MOTOR command: :func:`plan` over -m, -d, --variants and --seeds (or, with
    ``--protocol tuned``, :func:`tuned_plan`), after :func:`record`; an untrained baseline (POP,
    ContentKNN) runs on the ID side only."""
    models, datasets = split_list(args.models, "-m"), split_list(args.datasets, "-d")
    variants, seeds = parse_variants(args.variants), parse_seeds(args.seeds)
    record(name, argv, args.out, overrides, models, datasets, variants, seeds)
    if getattr(args, "protocol", "defaults") == "tuned":
        return tuned_plan(models, datasets, variants, seeds, args.budget, overrides,
                          getattr(args, "motor_search", "staged"))
    return [s for s in plan(models, datasets, variants, seeds) if s.variant == "id" or trains(s.model, s.dataset)]
