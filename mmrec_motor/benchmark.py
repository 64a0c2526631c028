"""``mmrec-motor bench`` and ``mmrec-motor report``: a whole ID-vs-MOTOR benchmark in one folder.

    mmrec-motor bench -m FREEDOM,BPR -d lfm2k,toy --seeds 999,1000,1001 [--variants id,motor] \
        [--key=value ...] --out DIR
    mmrec-motor report DIR

``bench`` runs every model x dataset x variant x seed as its own runtime run
(:func:`mmrec_motor.bench.run_one`: each grid key but seed pinned to its first value) and writes

- ``DIR/bench.json``: the command lines that filled DIR and the overrides they passed (written first);
- ``DIR/runs/<model>-<dataset>-<variant>-<seed>.json``: quick_start's result dict, written atomically;
  a run whose JSON exists is skipped, so rerunning an interrupted bench only does what is missing;
- ``DIR/runs/<name>.error.txt``: the error of a run that failed (the other runs go on);
- ``DIR/log/<name>/`` and ``DIR/saved/``: each run's log and best checkpoint;
- ``DIR/results.csv`` and ``DIR/summary.md``: the reports, which ``report DIR`` rebuilds from the run
  JSONs (and bench.json's command lines) alone.
"""
from __future__ import annotations

import csv
import glob
import io
import json
import math
import os
import shlex
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, TextIO, Tuple

import numpy as np

from mmrec_motor.bench import markdown_table, mean_std, run_one
from mmrec_motor.config import ConfigError

VARIANTS = ("id", "motor")
# Keys that bench sets itself per run; passing them as overrides is refused.
BENCH_OWNED_KEYS = ("seed", "motor", "result_file", "topk_file")
RESULT_COLUMNS_HEAD = ["model", "dataset", "variant", "seed"]
RESULT_COLUMNS_TAIL = ["item_repr_params", "total_params", "train_seconds_per_epoch", "eval_seconds",
                       "epochs_run", "best_epoch"]


@dataclass(frozen=True)
class RunSpec:
    """One run of a bench: model x dataset x variant x seed."""

    model: str
    dataset: str
    variant: str
    seed: int

    @property
    def name(self) -> str:
        """The file stem of the run in ``DIR/runs``: ``<model>-<dataset>-<variant>-<seed>``."""
        return f"{self.model}-{self.dataset}-{self.variant}-{self.seed}"


# ----------------------------------------------------------------------------------------- files

def runs_dir(out: str) -> str:
    """The folder of the run JSONs (and error files) of bench folder ``out``."""
    return os.path.join(out, "runs")


def result_path(out: str, spec: RunSpec) -> str:
    """Where the result JSON of ``spec`` goes."""
    return os.path.join(runs_dir(out), spec.name + ".json")


def error_path(out: str, spec: RunSpec) -> str:
    """Where the error message of a failed ``spec`` goes."""
    return os.path.join(runs_dir(out), spec.name + ".error.txt")


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path``, then rename it over ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_json_atomic(path: str, payload: Any) -> None:
    """JSON ``payload`` to ``path`` atomically (a kill mid-write leaves no partial file)."""
    write_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")


# ------------------------------------------------------------------------------------- the plan

def split_list(text: str, what: str) -> List[str]:
    """``"a,b, c"`` -> ``["a", "b", "c"]``; an empty list is an error naming ``what``."""
    items = [part.strip() for part in str(text).split(",") if part.strip()]
    if not items:
        raise ConfigError(f"{what}: expected a comma-separated list, got {text!r}")
    return items


def parse_seeds(text: str) -> List[int]:
    """``"999,1000"`` -> ``[999, 1000]``."""
    try:
        return [int(s) for s in split_list(text, "--seeds")]
    except ValueError:
        raise ConfigError(f"--seeds: expected comma-separated integers, got {text!r}") from None


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


def bench_overrides(out: str, spec: RunSpec, overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """The overrides of one run: logs and checkpoints inside ``out``, no periodic checkpoints, quiet;
    the user's ``overrides`` come last and win."""
    values: Dict[str, Any] = {"log_dir": os.path.join(out, "log", spec.name),
                              "checkpoint_dir": os.path.join(out, "saved"),
                              "checkpoint_every": 0, "verbose": False}
    values.update(overrides)
    values["result_file"] = None    # bench writes the result itself
    values["topk_file"] = None
    return values


def check_overrides(overrides: Mapping[str, Any]) -> None:
    """Refuse the keys that bench sets per run (seed, motor, result_file, topk_file)."""
    owned = [k for k in BENCH_OWNED_KEYS if k in overrides]
    if owned:
        raise ConfigError(f"bench sets {', '.join(owned)} itself (use --seeds / --variants; each run's "
                          f"result goes to DIR/runs); drop --{' --'.join(owned)}")


def record_bench(out: str, command: str, models, datasets, variants, seeds,
                 overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """Write (or extend) ``DIR/bench.json`` with this command line.

    A folder filled with other overrides is refused: its runs would be mixed with these in the
    reports. Adding models, datasets, variants or seeds with the same overrides is fine.
    """
    path = os.path.join(out, "bench.json")
    normal = json.loads(json.dumps(dict(overrides), sort_keys=True, default=str))
    commands: List[str] = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            previous = json.load(handle)
        if previous.get("overrides") != normal:
            raise ConfigError(f"{out} holds a bench run with other overrides ({previous.get('overrides')}, "
                              f"now {normal}); use another --out, or delete {path} and {runs_dir(out)}")
        commands = list(previous.get("commands", []))
    if command not in commands:
        commands.append(command)
    record = {"commands": commands, "command": command, "models": list(models),
              "datasets": list(datasets), "variants": list(variants), "seeds": [int(s) for s in seeds],
              "overrides": normal}
    write_json_atomic(path, record)
    return record


# ------------------------------------------------------------------------------------- the runs

def format_seconds(seconds: float) -> str:
    """``3725`` -> ``1h02m05s``; ``65`` -> ``1m05s``; ``4.2`` -> ``4.2s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def progress_line(done: int, total: int, spec: RunSpec, status: str, durations: Sequence[float],
                  remaining: int) -> str:
    """``[3/8] FREEDOM-toy-id-999 ok (2.1s); ~10.5s left`` (time left = mean finished run x runs left)."""
    left = f"~{format_seconds(float(np.mean(durations)) * remaining)} left" if durations else "time left: ?"
    return f"[{done}/{total}] {spec.name} {status}; {left if remaining else 'all done'}"


def execute(spec: RunSpec, out: str, overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """Run ``spec`` and write its result JSON atomically; removes a stale error file on success."""
    result = run_one(spec.model, spec.dataset, spec.variant, spec.seed, bench_overrides(out, spec, overrides))
    write_json_atomic(result_path(out, spec), result)
    if os.path.exists(error_path(out, spec)):
        os.remove(error_path(out, spec))
    return result


def run_bench(specs: Sequence[RunSpec], out: str, overrides: Mapping[str, Any],
              stream: Optional[TextIO] = None) -> Dict[str, Any]:
    """Run every spec without a result JSON in ``out``; a failing run is recorded and the rest go on.

    A progress line per spec goes to ``stream`` (stderr). Returns ``{"ran": [...names],
    "skipped": [...], "failed": {name: message}}``.
    """
    stream = sys.stderr if stream is None else stream
    total, remaining = len(specs), sum(not os.path.isfile(result_path(out, s)) for s in specs)
    ran: List[str] = []
    skipped: List[str] = []
    failed: Dict[str, str] = {}
    durations: List[float] = []
    for done, spec in enumerate(specs, 1):
        if os.path.isfile(result_path(out, spec)):
            skipped.append(spec.name)
            print(f"[{done}/{total}] {spec.name} skipped (result exists)", file=stream, flush=True)
            continue
        start = time.perf_counter()
        remaining -= 1
        try:
            execute(spec, out, overrides)
        except Exception as exc:  # noqa: BLE001 - any failure of one run is recorded, the rest go on
            message = f"{type(exc).__name__}: {exc}"
            failed[spec.name] = message
            write_atomic(error_path(out, spec), message + "\n\n" + traceback.format_exc())
            status = f"FAILED ({message.splitlines()[0][:200]})"
        else:
            ran.append(spec.name)
            durations.append(time.perf_counter() - start)
            status = f"ok ({format_seconds(durations[-1])})"
        print(progress_line(done, total, spec, status, durations, remaining), file=stream, flush=True)
    return {"ran": ran, "skipped": skipped, "failed": failed}


# ---------------------------------------------------------------------------------- the reports

def load_runs(out: str) -> List[Dict[str, Any]]:
    """Every run JSON in ``DIR/runs``, sorted by model, dataset, variant, seed."""
    results = []
    for path in glob.glob(os.path.join(runs_dir(out), "*.json")):
        with open(path, encoding="utf-8") as handle:
            results.append(json.load(handle))
    return sorted(results, key=lambda r: tuple(run_row_key(r)))


def run_seed(result: Mapping[str, Any]) -> int:
    """The seed of a one-combination result (its chosen combination's parameters)."""
    seed = result["best"]["parameters"].get("seed", result["config"].get("seed"))
    return int(seed[0] if isinstance(seed, list) else seed)


def run_variant(result: Mapping[str, Any]) -> str:
    """``"motor"`` or ``"id"``."""
    return "motor" if result["motor"] else "id"


def run_row_key(result: Mapping[str, Any]) -> Tuple[str, str, int, int]:
    """The sort key of a result: model, dataset, variant (id before motor), seed."""
    return (result["model"], result["dataset"], VARIANTS.index(run_variant(result)), run_seed(result))


def result_row(result: Mapping[str, Any]) -> Dict[str, Any]:
    """One CSV row: identity, every valid and test metric, parameters, timings, epochs."""
    chosen = result["combinations"][result["chosen"]]
    row: Dict[str, Any] = {"model": result["model"], "dataset": result["dataset"],
                           "variant": run_variant(result), "seed": run_seed(result)}
    for split in ("valid", "test"):
        for metric, value in result["best"][split].items():
            row[f"{split}_{metric}"] = value
    row.update({"item_repr_params": result["item_representation"]["params"],
                "total_params": result["params"]["total"],
                "train_seconds_per_epoch": result["train_seconds_per_epoch"],
                "eval_seconds": result["eval_seconds"],
                "epochs_run": chosen["epochs_run"], "best_epoch": result["best"]["best_epoch"]})
    return row


def results_csv(results: Sequence[Mapping[str, Any]]) -> str:
    """``results.csv``: one row per run (metric columns: the union over runs, in first-seen order)."""
    rows = [result_row(r) for r in results]
    metrics: List[str] = []
    for row in rows:
        metrics += [k for k in row if k.startswith(("valid_", "test_")) and k not in metrics]
    header = RESULT_COLUMNS_HEAD + metrics + RESULT_COLUMNS_TAIL
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def paired_p_value(id_by_seed: Mapping[int, float], motor_by_seed: Mapping[int, float]) -> str:
    """Paired t-test (scipy.stats.ttest_rel) over the seeds both variants ran; ``"n/a"`` with fewer
    than two pairs, or when the differences have no variance."""
    seeds = sorted(set(id_by_seed) & set(motor_by_seed))
    if len(seeds) < 2:
        return "n/a"
    from scipy.stats import ttest_rel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = float(ttest_rel([motor_by_seed[s] for s in seeds], [id_by_seed[s] for s in seeds]).pvalue)
    return f"{p:.3g}" if math.isfinite(p) else "n/a"


def relative_change(id_values: Sequence[float], motor_values: Sequence[float]) -> str:
    """``(mean MOTOR - mean ID) / mean ID`` in percent, signed; ``-`` when a side is missing."""
    if not id_values or not motor_values:
        return "-"
    base = float(np.mean(id_values))
    if base == 0:
        return "n/a"
    return f"{(float(np.mean(motor_values)) - base) / base * 100:+.1f}%"


def ratio(id_value: Optional[float], motor_value: Optional[float], fmt: str = "{:.2f}x") -> str:
    """``motor / id`` formatted; ``-`` when a side is missing."""
    if id_value is None or motor_value is None:
        return "-"
    return fmt.format(motor_value / id_value) if id_value else "n/a"


def model_summary_row(model: str, rows: Sequence[Mapping[str, Any]]) -> List[str]:
    """One summary row: a model's ID and MOTOR runs on one dataset (the CSV rows of those runs)."""
    side = {v: [r for r in rows if r["variant"] == v] for v in VARIANTS}

    def values(variant: str, column: str) -> List[float]:
        return [float(r[column]) for r in side[variant] if r[column] is not None]

    def stat(variant: str, column: str) -> str:
        return mean_std(values(variant, column)) if values(variant, column) else "-"

    def mean(variant: str, column: str) -> Optional[float]:
        return float(np.mean(values(variant, column))) if values(variant, column) else None

    by_seed = {v: {int(r["seed"]): float(r["test_recall@20"]) for r in side[v]} for v in VARIANTS}
    params = {v: mean(v, "item_repr_params") for v in VARIANTS}
    seconds = {v: mean(v, "train_seconds_per_epoch") for v in VARIANTS}
    return [model,
            stat("id", "test_recall@20"), stat("motor", "test_recall@20"),
            relative_change(values("id", "test_recall@20"), values("motor", "test_recall@20")),
            stat("id", "test_ndcg@20"), stat("motor", "test_ndcg@20"),
            relative_change(values("id", "test_ndcg@20"), values("motor", "test_ndcg@20")),
            paired_p_value(by_seed["id"], by_seed["motor"]),
            f"{len(side['id'])}/{len(side['motor'])}",
            "-" if params["id"] is None else f"{params['id']:,.0f}",
            "-" if params["motor"] is None else f"{params['motor']:,.0f}",
            ratio(params["id"], params["motor"]),
            "-" if seconds["id"] is None else f"{seconds['id']:.3f}",
            "-" if seconds["motor"] is None else f"{seconds['motor']:.3f}",
            ratio(seconds["id"], seconds["motor"])]


SUMMARY_HEADER = ["model", "ID R@20", "MOTOR R@20", "Δ R@20", "ID N@20", "MOTOR N@20", "Δ N@20",
                  "p (paired t, R@20)", "seeds ID/MOTOR", "item params ID", "item params MOTOR",
                  "params MOTOR/ID", "s/epoch ID", "s/epoch MOTOR", "s/epoch MOTOR/ID"]


def summary_md(results: Sequence[Mapping[str, Any]], commands: Sequence[str],
               failures: Mapping[str, str]) -> str:
    """``summary.md``: the command lines, then per dataset one row per model (see SUMMARY_HEADER)."""
    rows = [result_row(r) for r in results]
    lines = ["# Benchmark: ID vs MOTOR", "", "Produced by:", "", "```bash"]
    lines += list(commands) or ["# (unknown: no bench.json in this folder)"]
    lines += ["```", "",
              "Test Recall@20 / NDCG@20 at the best-valid epoch, mean ± std (ddof=1) over seeds; Δ: relative "
              "change of the means, MOTOR vs ID; p: paired t-test (scipy.stats.ttest_rel) on test Recall@20 "
              "over the seeds both variants ran (n/a under two pairs); item params: the item representation "
              "(ID table, or token tables + cross network); s/epoch: mean training seconds per epoch.", ""]
    for dataset in sorted({r["dataset"] for r in rows}):
        table = [model_summary_row(model, [r for r in rows if r["dataset"] == dataset and r["model"] == model])
                 for model in sorted({r["model"] for r in rows if r["dataset"] == dataset})]
        lines += [f"## {dataset}", "", markdown_table(SUMMARY_HEADER, table), ""]
    if failures:
        lines += ["## Failed runs", ""]
        lines += [f"- `{name}`: {message}" for name, message in sorted(failures.items())]
        lines.append("")
    return "\n".join(lines)


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
    with open(path, encoding="utf-8") as handle:
        record = json.load(handle)
    return list(record.get("commands") or [record.get("command", "")])


def write_reports(out: str) -> Dict[str, str]:
    """(Re)write ``DIR/results.csv`` and ``DIR/summary.md`` from the run JSONs; returns their paths."""
    if not os.path.isdir(runs_dir(out)):
        raise FileNotFoundError(f"{runs_dir(out)} does not exist: not a bench folder")
    results = load_runs(out)
    paths = {"csv": os.path.join(out, "results.csv"), "summary": os.path.join(out, "summary.md")}
    write_atomic(paths["csv"], results_csv(results))
    write_atomic(paths["summary"], summary_md(results, load_commands(out), load_failures(out)))
    return paths


def bench_command(argv: Iterable[str]) -> str:
    """The command line to record: ``mmrec-motor bench`` and the arguments, shell-quoted."""
    return shlex.join(["mmrec-motor", "bench", *argv])
