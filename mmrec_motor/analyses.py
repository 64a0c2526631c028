"""Analyses of ID vs MOTOR (issue 5): cold items, token budget, inductive cold start.

    mmrec-motor cold-items -m FREEDOM,BPR -d lfm2k --seeds 999 [--variants id,motor] \
        [--buckets 0,5,10,20,50 | --n-buckets 5] [--key=value ...] --out DIR
    mmrec-motor token-budget -m FREEDOM -d lfm2k --subspaces 2,4,8 --nbits 4,6,8 --seeds 999 \
        [--id-baseline] [--key=value ...] --out DIR
    mmrec-motor cold-start -m FREEDOM,BPR -d lfm2k --ratio 0.1 --seeds 999 [--variants id,motor] \
        [--key=value ...] --out DIR

Each trains its runs like ``mmrec-motor bench`` (:func:`mmrec_motor.bench.run_one`: every grid key
but seed at its first value; ``--key=value`` overrides pass through) into bench's folder layout:
``DIR/bench.json`` (command lines and overrides; a folder filled with other overrides is refused),
``DIR/runs/<name>.json`` (a run whose JSON exists is skipped, so an interrupted analysis resumes),
``DIR/runs/<name>.error.txt``, ``DIR/log/<name>/``, ``DIR/saved/``. Then it writes a markdown table
and, when matplotlib is importable (``pip install mmrec-motor[plot]``), a PNG next to it:

- ``cold-items``: ``DIR/topk/<name>.tsv`` (each run's test top-50, ``topk_file``'s format) and
  ``DIR/cold_items.md`` / ``.png``: test Recall@20 and NDCG@20 per bucket of the items' number of
  training interactions (:func:`bucketed_metrics` defines them), ID vs MOTOR per model. Run names are
  bench's, so DIR may be a bench folder: a run whose JSON exists but has no top-K file gets one from
  its saved best checkpoint (kept only when its test metrics reproduce the JSON's exactly), else it
  is trained again. ``results.csv`` / ``summary.md`` are (re)written as by ``bench``.
- ``token-budget``: MOTOR runs over ``motor_num_subspaces`` x ``motor_nbits`` (run names
  ``<model>-<dataset>-motor-<seed>-M<m>-b<nbits>``; with ``--id-baseline`` also the ID runs) and
  ``DIR/token_budget.md`` / ``.png``: item-representation parameters and test Recall@20 / NDCG@20.
- ``cold-start``: bench runs with ``cold_item_ratio`` = ``--ratio`` (mmrec_motor/data/cold.py) and
  ``DIR/cold_start.md`` / ``.png``: Recall@20 / NDCG@20 and the mean percentile rank
  (``cold_test_mpr``) of the held-out items (``cold_test``), and Recall@20 / NDCG@20 on all test
  items, ID vs MOTOR; ``results.csv`` / ``summary.md`` as by ``bench``. A finished run from before
  ``cold_test_mpr`` gets it from its saved best checkpoint (only when that reproduces the run's
  held-out metrics).

Values over seeds are mean ± std (ddof=1); the exit status is 1 when a run failed (the others go on
and the tables show what finished).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple

import numpy as np

from mmrec_motor import benchmark
from mmrec_motor.bench import first_grid_values, markdown_table, mean_std, run_one
from mmrec_motor.benchmark import RunSpec
from mmrec_motor.config import Config, ConfigError, parse_overrides
from mmrec_motor.data.dataset import PairSet, Split
from mmrec_motor.evaluation import metric_curves

K = 20                  # the cut-off of every table here
METRICS = (("recall", f"Recall@{K}"), ("ndcg", f"NDCG@{K}"))   # result key, title
DEFAULT_BUCKETS = 5     # quantile buckets when --buckets is not given


# ------------------------------------------------------------------------ bucketed item metrics

def item_train_counts(train: Split, n_items: int) -> np.ndarray:
    """int64 [n_items]: each item's number of training interactions (distinct training users; a
    repeated (user, item) row counts once, as in the binary training matrix)."""
    keys = PairSet(train.users, train.items, n_items).keys
    return np.bincount(keys % n_items, minlength=n_items).astype(np.int64)


def parse_edges(text: str) -> List[int]:
    """``"0,5,10"`` -> ``[0, 5, 10]``: strictly increasing integers >= 0; 0 is prepended when missing
    so that every count falls in a bucket."""
    try:
        edges = [int(v) for v in benchmark.split_list(text, "--buckets")]
    except ValueError:
        raise ConfigError(f"--buckets: expected comma-separated integers, got {text!r}") from None
    if any(e < 0 for e in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ConfigError(f"--buckets: expected strictly increasing integers >= 0, got {text!r}")
    return edges if edges[0] == 0 else [0] + edges


def quantile_edges(counts: np.ndarray, n_buckets: int = DEFAULT_BUCKETS) -> List[int]:
    """Bucket edges from the quantiles of ``counts`` (the training count of the item of each test
    interaction), so that each bucket holds about 1/n_buckets of the test interactions: edge k is
    v_k + 1, v_k the k/n_buckets quantile (``inverted_cdf``: an observed count), plus a first edge 0.
    Ties merge buckets; a last bucket no count reaches is dropped."""
    counts = np.asarray(counts, dtype=np.int64)
    if n_buckets < 1:
        raise ConfigError(f"--n-buckets must be >= 1, got {n_buckets}")
    if len(counts) == 0:
        return [0]
    inner = [int(np.quantile(counts, k / n_buckets, method="inverted_cdf")) + 1 for k in range(1, n_buckets)]
    edges = sorted({0, *inner})
    while len(edges) > 1 and edges[-1] > counts.max():
        edges.pop()
    return edges


def bucket_index(counts: np.ndarray, edges: Sequence[int]) -> np.ndarray:
    """The bucket of each count: b with edges[b] <= count < edges[b+1] (the last bucket is open)."""
    return np.searchsorted(np.asarray(edges), np.asarray(counts), side="right") - 1


def bucket_label(edges: Sequence[int], b: int) -> str:
    """``0``, ``1–4``, ``≥ 50``: the training counts bucket b holds."""
    lo = edges[b]
    if b == len(edges) - 1:
        return f"≥ {lo}"
    hi = edges[b + 1] - 1
    return str(lo) if hi == lo else f"{lo}–{hi}"


def bucketed_metrics(users: np.ndarray, ranked: np.ndarray, test: Split, counts: np.ndarray,
                     edges: Sequence[int], k: int = K) -> List[Dict[str, Any]]:
    """Test Recall@k and NDCG@k per bucket of the items' training counts, then over all items.

    Let T_u be user u's test items (distinct), c(i) item i's number of training interactions
    (:func:`item_train_counts`), bucket b = {i : edges[b] <= c(i) < edges[b+1]} (the last bucket
    open), T_ub = T_u ∩ b and n_ub = |T_ub|. The ranking is the run's own full-sort top-k (every item
    ranked, the user's training items masked; ``ranked[u]`` for ``users[u]``), not restricted to b:

        Recall_b@k = mean over users with n_ub >= 1 of  |top-k(u) ∩ T_ub| / n_ub
        NDCG_b@k   = mean over users with n_ub >= 1 of  DCG_ub / IDCG(min(n_ub, k)),
                     DCG_ub = sum_{j <= k, j-th ranked item in T_ub} 1 / log2(j + 1),
                     IDCG(m) = sum_{j <= m} 1 / log2(j + 1)

    i.e. MMRec's Recall and NDCG (:func:`mmrec_motor.evaluation.metric_curves`) with T_ub as the
    relevance set; with a single bucket they are the ordinary test metrics. Every distinct test
    interaction falls in exactly one bucket.

    Returns one dict per bucket and a last one for all items: ``label``, ``lo``, ``hi`` (None for the
    open bucket / all), ``interactions`` (distinct test pairs), ``users`` (with n_ub >= 1), ``recall``,
    ``ndcg`` (unrounded; None when the bucket has no test interaction).
    """
    users, ranked = np.asarray(users, np.int64), np.asarray(ranked, np.int64)
    counts = np.asarray(counts, np.int64)
    if ranked.ndim != 2 or ranked.shape[0] != len(users) or ranked.shape[1] < k:
        raise ValueError(f"ranked must be [n_users={len(users)}, >= {k}], got {ranked.shape}")
    n_items = len(counts)
    relevant = PairSet(test.users, test.items, n_items)
    pair_users, pair_items = relevant.keys // n_items, relevant.keys % n_items
    row = np.searchsorted(users, pair_users)
    row = np.minimum(row, len(users) - 1)
    if len(users) == 0 or not (users[row] == pair_users).all() or (np.diff(users) <= 0).any():
        raise ValueError("users must be sorted, distinct and include every test user (the top-K file's "
                         "users are the test split's)")
    pair_bucket = bucket_index(counts[pair_items], edges)
    top = ranked[:, :k]
    hits = relevant.contains(users[:, None], top)
    top_bucket = bucket_index(counts[top], edges)
    out = []
    groups = [(b, pair_bucket == b, top_bucket == b) for b in range(len(edges))]
    groups.append((None, np.ones(len(pair_bucket), bool), np.ones(top.shape, bool)))
    for b, pair_in, top_in in groups:
        n_ub = np.bincount(row[pair_in], minlength=len(users))
        have = n_ub >= 1
        entry: Dict[str, Any] = {
            "label": "all items" if b is None else bucket_label(edges, b),
            "lo": None if b is None else int(edges[b]),
            "hi": None if b is None or b == len(edges) - 1 else int(edges[b + 1]),
            "interactions": int(pair_in.sum()), "users": int(have.sum()), "recall": None, "ndcg": None}
        if have.any():
            curves = metric_curves((hits & top_in)[have], n_ub[have])
            entry["recall"] = float(curves["recall"][:, k - 1].mean())
            entry["ndcg"] = float(curves["ndcg"][:, k - 1].mean())
        out.append(entry)
    return out


def read_topk(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """(users, ranked) from a ``topk_file`` (header row, then userID and the ranked item IDs)."""
    table = np.loadtxt(path, dtype=np.int64, delimiter="\t", skiprows=1, ndmin=2)
    return table[:, 0], table[:, 1:]


# ------------------------------------------------------------------------------------ the runs

@dataclass(frozen=True)
class Run:
    """One run of an analysis: a bench RunSpec, plus per-run overrides named by ``tag``."""

    spec: RunSpec
    tag: str = ""
    extra: Tuple[Tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name + (f"-{self.tag}" if self.tag else "")


def run_path(out: str, run: Run) -> str:
    return os.path.join(benchmark.runs_dir(out), run.name + ".json")


def topk_path(out: str, run: Run) -> str:
    return os.path.join(out, "topk", run.name + ".tsv")


def run_values(out: str, run: Run, overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """bench's overrides for the run, its own keys, and its own log folder."""
    values = benchmark.bench_overrides(out, run.spec, overrides)
    values["log_dir"] = os.path.join(out, "log", run.name)
    values.update(dict(run.extra))
    return values


def load_result(out: str, run: Run) -> Optional[Dict[str, Any]]:
    path = run_path(out, run)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def restore_best(out: str, run: Run, overrides: Mapping[str, Any], result: Mapping[str, Any]):
    """(config, data, model) of a finished run, the model loaded with its saved best checkpoint; None
    when there is no such checkpoint or it is not this run's.

    The model is rebuilt as the run built it; the checkpoint is used only when its stored test metrics
    equal the run JSON's, so a checkpoint overwritten by another run is never used."""
    import torch

    from mmrec_motor.quick_start import build_model, load_data
    from mmrec_motor.trainer import init_seed

    try:
        stored = result["combinations"][result["chosen"]]["checkpoint"]
    except (KeyError, IndexError, TypeError):
        return None
    candidates = [stored, os.path.join(out, "saved", os.path.basename(stored))] if stored else []
    path = next((p for p in candidates if os.path.isfile(p)), None)
    if path is None:
        return None
    values = first_grid_values(run.spec.model, run.spec.dataset, run_values(out, run, overrides))
    values.update({"seed": run.spec.seed, "motor": run.spec.variant == "motor"})
    config = Config(run.spec.model, run.spec.dataset, values)
    config["seed"] = run.spec.seed
    if config["num_threads"]:
        torch.set_num_threads(int(config["num_threads"]))
    state = torch.load(path, map_location=config["device"], weights_only=False)
    if not isinstance(state, dict) or state.get("test") != result["best"]["test"]:
        return None
    data = load_data(config)
    init_seed(run.spec.seed)
    model, _ = build_model(config, data)
    model.load_state_dict(state["model"])
    return config, data, model


def topk_from_checkpoint(out: str, run: Run, overrides: Mapping[str, Any], result: Mapping[str, Any]) -> bool:
    """Write the top-K file of a finished run from its saved best checkpoint (:func:`restore_best`);
    True when done, which needs the new ranking's test metrics to equal the run JSON's too."""
    from mmrec_motor.evaluation import TopKEvaluator
    from mmrec_motor.quick_start import _topk_to_tmp

    restored = restore_best(out, run, overrides, result)
    if restored is None:
        return False
    config, data, model = restored
    test = TopKEvaluator(data, data.test, config["metrics"], config["topk"], config["eval_batch_size"],
                         config["device"])
    ranked = test.rank(model)
    if test.metrics_of(ranked) != result["best"]["test"]:
        return False
    target = topk_path(out, run)
    os.replace(_topk_to_tmp(target, test.users, ranked), target)
    return True


def cold_mpr_from_checkpoint(out: str, run: Run, overrides: Mapping[str, Any], result: Dict[str, Any]) -> bool:
    """Add ``cold_test_mpr`` to a finished cold-start run that predates it, from its saved best
    checkpoint (:func:`restore_best`); the run JSON is rewritten only when the restored model also
    reproduces the run's held-out metrics (``cold_test``). True when done."""
    from mmrec_motor.evaluation import TopKEvaluator

    restored = restore_best(out, run, overrides, result)
    if restored is None or "cold_test" not in result["best"]:
        return False
    config, data, model = restored
    cold = TopKEvaluator(data, data.cold_test, config["metrics"], config["topk"], config["eval_batch_size"],
                         config["device"])
    if cold.evaluate(model) != result["best"]["cold_test"]:
        return False
    mpr = cold.mean_percentile_rank(model)
    result["best"]["cold_test_mpr"] = mpr
    result["combinations"][result["chosen"]]["cold_test_mpr"] = mpr
    benchmark.write_json_atomic(run_path(out, run), result)
    return True


def run_all(runs: Sequence[Run], out: str, overrides: Mapping[str, Any], with_topk: bool = False,
            stream: Optional[TextIO] = None) -> Dict[str, Any]:
    """Train every run without a result JSON (with ``with_topk``: or without a top-K file that its
    checkpoint cannot give); progress lines on ``stream`` (stderr). Returns bench's outcome dict."""
    stream = sys.stderr if stream is None else stream
    ran: List[str] = []
    skipped: List[str] = []
    failed: Dict[str, str] = {}
    durations: List[float] = []
    total = len(runs)
    for done, run in enumerate(runs, 1):
        result, note = load_result(out, run), ""
        if result is not None and with_topk and not os.path.isfile(topk_path(out, run)):
            try:
                rebuilt = topk_from_checkpoint(out, run, overrides, result)
                note = "; top-K file rebuilt from its saved checkpoint"
            except Exception as exc:  # noqa: BLE001 - then train it again
                rebuilt = False
                print(f"[{done}/{total}] {run.name}: its checkpoint gave no top-K file "
                      f"({type(exc).__name__}: {exc})", file=stream, flush=True)
            if not rebuilt:
                print(f"[{done}/{total}] {run.name}: result exists but no top-K file (and no matching "
                      f"checkpoint): training it again", file=stream, flush=True)
                result = None
        if result is not None:
            skipped.append(run.name)
            print(f"[{done}/{total}] {run.name} skipped (result exists{note})", file=stream, flush=True)
            continue
        values = run_values(out, run, overrides)
        if with_topk:
            values["topk_file"] = topk_path(out, run)
        start = time.perf_counter()
        try:
            result = run_one(run.spec.model, run.spec.dataset, run.spec.variant, run.spec.seed, values)
            benchmark.write_json_atomic(run_path(out, run), result)
            error = os.path.join(benchmark.runs_dir(out), run.name + ".error.txt")
            if os.path.exists(error):
                os.remove(error)
        except Exception as exc:  # noqa: BLE001 - a failing run is recorded, the rest go on
            message = f"{type(exc).__name__}: {exc}"
            failed[run.name] = message
            benchmark.write_atomic(os.path.join(benchmark.runs_dir(out), run.name + ".error.txt"),
                                   message + "\n\n" + traceback.format_exc())
            status = f"FAILED ({message.splitlines()[0][:200]})"
        else:
            ran.append(run.name)
            durations.append(time.perf_counter() - start)
            status = f"ok ({benchmark.format_seconds(durations[-1])})"
        left = sum(load_result(out, r) is None and r.name not in failed for r in runs[done:])
        eta = f"~{benchmark.format_seconds(float(np.mean(durations)) * left)} left" if durations else ""
        print(f"[{done}/{total}] {run.name} {status}" + (f"; {eta}" if left and eta else ""),
              file=stream, flush=True)
    return {"ran": ran, "skipped": skipped, "failed": failed}


def finish(out: str, outcome: Mapping[str, Any], written: Sequence[str]) -> int:
    """The closing lines on stderr; the exit status (1 when a run failed)."""
    print(f"{len(outcome['ran'])} run(s) done, {len(outcome['skipped'])} skipped (already done), "
          f"{len(outcome['failed'])} failed; wrote {', '.join(written)}", file=sys.stderr)
    for name, message in outcome["failed"].items():
        print(f"FAILED {name}: {message.splitlines()[0]}", file=sys.stderr)
    return 1 if outcome["failed"] else 0


# ------------------------------------------------------------------------------------ helpers

def _known(values: Sequence[Optional[float]]) -> List[float]:
    """The values that are not None (a run without the metric)."""
    return [v for v in values if v is not None]


def _stat(values: Sequence[Optional[float]]) -> str:
    values = _known(values)
    return mean_std(values) if values else "-"


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    values = _known(values)
    return float(np.mean(values)) if values else None


def _std(values: Sequence[Optional[float]]) -> float:
    values = _known(values)
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _delta(id_values: Sequence[Optional[float]], motor_values: Sequence[Optional[float]]) -> str:
    return benchmark.relative_change(_known(id_values), _known(motor_values))


def _variant_label(variant: str) -> str:
    """``ID`` or ``MOTOR``."""
    return "ID" if variant == "id" else "MOTOR"


def _commands_block(out: str) -> List[str]:
    return ["Produced by:", "", "```bash", *(benchmark.load_commands(out) or ["# (no bench.json)"]), "```", ""]


def _report_head(out: str, title: str, explanation: str) -> List[str]:
    """A report's first lines: its title, the command lines that produced DIR, what the tables show."""
    return [f"# {title}", ""] + _commands_block(out) + [explanation, ""]


def _failures_block(out: str, runs: Sequence[Run]) -> List[str]:
    names = {r.name for r in runs}
    failures = {n: m for n, m in benchmark.load_failures(out).items() if n in names}
    if not failures:
        return []
    return ["## Failed runs", "", *[f"- `{n}`: {m}" for n, m in sorted(failures.items())], ""]


def _figure(rows: int, cols: int, width: float, height: float):
    """A matplotlib Figure (no pyplot, no global backend), or None when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure(figsize=(width * cols, height * rows), layout="constrained")


def _no_png(name: str) -> None:
    print(f"matplotlib is not installed (pip install 'mmrec-motor[plot]'): no {name}", file=sys.stderr)


def _save_png(path: str, rows: int, cols: int, width: float, height: float,
              draw: Callable[[Any], None]) -> bool:
    """Draw a rows x cols grid of width x height panels with ``draw(axes)`` (axes: a rows x cols
    array) and save it as the PNG ``path``; without matplotlib, False and a note on stderr."""
    fig = _figure(rows, cols, width, height)
    if fig is None:
        _no_png(path)
        return False
    draw(fig.subplots(rows, cols, squeeze=False))
    fig.savefig(path, dpi=120)
    return True


def _write_report(out: str, stem: str, lines: List[str], runs: Sequence[Run], plots: Sequence[Any],
                  plot: Callable[[Sequence[Any], str], bool]) -> List[str]:
    """Write ``DIR/<stem>.md`` (``lines``, then the runs' failures) and, when there is something to
    plot, ``DIR/<stem>.png`` with ``plot(plots, path)`` (False when it wrote none); returns the paths."""
    md = os.path.join(out, f"{stem}.md")
    benchmark.write_atomic(md, "\n".join(lines + _failures_block(out, runs)))
    written = [md]
    if plots:
        png = os.path.join(out, f"{stem}.png")
        if plot(plots, png):
            written.append(png)
    return written


def dataset_config(model: str, dataset: str, out: str, overrides: Mapping[str, Any],
                   seed: Optional[int] = None) -> Config:
    """The config a run of ``model`` on ``dataset`` (with ``seed``) gets, for its data; building it
    checks the overrides, so a bad key fails once, before any training."""
    spec = RunSpec(model, dataset, "id", 0 if seed is None else int(seed))
    values = first_grid_values(model, dataset, run_values(out, Run(spec), overrides))
    if seed is not None:
        values["seed"] = int(seed)
    return Config(model, dataset, values)


def check_data(models: Sequence[str], datasets: Sequence[str], seeds: Sequence[int], out: str,
               overrides: Mapping[str, Any]) -> None:
    """Build every model's config and load every dataset once (with the first seed), so that a bad
    key, model, dataset or cold-item split is one error before any training."""
    from mmrec_motor.quick_start import load_data

    for dataset in datasets:
        configs = [dataset_config(model, dataset, out, overrides, seeds[0]) for model in models]
        load_data(configs[0])


def _prepare(rest: List[str], name: str, own_keys: Sequence[str] = ()) -> Dict[str, Any]:
    """The ``--key=value`` overrides, refusing bench's own keys and those of the analysis."""
    overrides = parse_overrides(rest)
    benchmark.check_overrides(overrides)
    refused = [k for k in own_keys if k in overrides]
    if refused:
        raise ConfigError(f"{name} sets {', '.join(refused)} itself; drop --{' --'.join(refused)}")
    return overrides


def _parser(name: str, description: str, variants: bool = True) -> argparse.ArgumentParser:
    """The parser of ``mmrec-motor <name>`` with the arguments every analysis takes (-m, -d, --seeds,
    --variants unless ``variants`` is False, --out)."""
    parser = argparse.ArgumentParser(prog=f"mmrec-motor {name}", allow_abbrev=False, description=description)
    parser.add_argument("-m", "--models", required=True, help="comma-separated backbones")
    parser.add_argument("-d", "--datasets", required=True, help="comma-separated datasets")
    parser.add_argument("--seeds", default="999", help="comma-separated seeds (default 999)")
    if variants:
        parser.add_argument("--variants", default="id,motor", help="id, motor or id,motor (default)")
    parser.add_argument("--out", required=True, help="the analysis folder (runs, logs, tables)")
    return parser


def _record(name: str, argv: Sequence[str], out: str, overrides: Mapping[str, Any], models: Sequence[str],
            datasets: Sequence[str], variants: Sequence[str], seeds: Sequence[int]) -> None:
    """Check the data (:func:`check_data`), then record the command line and the plan in
    ``DIR/bench.json`` (a folder filled with other overrides is refused)."""
    check_data(models, datasets, seeds, out, overrides)
    command = shlex.join(["mmrec-motor", name, *argv])
    benchmark.record_bench(out, command, models, datasets, variants, seeds, overrides)


def _id_motor_runs(name: str, argv: Sequence[str], args: argparse.Namespace,
                   overrides: Mapping[str, Any]) -> List[Run]:
    """The runs of an ID vs MOTOR analysis: bench's plan over -m, -d, --variants and --seeds, after
    :func:`_record`."""
    models, datasets = benchmark.split_list(args.models, "-m"), benchmark.split_list(args.datasets, "-d")
    variants, seeds = benchmark.parse_variants(args.variants), benchmark.parse_seeds(args.seeds)
    _record(name, argv, args.out, overrides, models, datasets, variants, seeds)
    return [Run(spec) for spec in benchmark.plan(models, datasets, variants, seeds)]


# --------------------------------------------------------------------------------- cold items

def cold_items_report(out: str, runs: Sequence[Run], overrides: Mapping[str, Any],
                      edges: Optional[Sequence[int]] = None, n_buckets: int = DEFAULT_BUCKETS,
                      stream: Optional[TextIO] = None) -> List[str]:
    """Write ``DIR/cold_items.md`` (and ``.png``) from the runs' top-K files; returns the paths."""
    from mmrec_motor.quick_start import load_data

    stream = sys.stderr if stream is None else stream
    lines = _report_head(
        out, "Cold items: ID vs MOTOR by the items' training interactions",
        f"Test Recall@{K} and NDCG@{K} per bucket of the test item's number of training "
        f"interactions c(i) (distinct training users). For bucket b and user u, T_ub = u's test "
        f"items whose c(i) is in b, n_ub = |T_ub|; the ranking is the run's ordinary full-sort "
        f"top-{K} over all items (training items masked). Recall_b = |top-{K} ∩ T_ub| / n_ub, "
        f"NDCG_b = DCG over the hits in T_ub / IDCG(min(n_ub, {K})), each averaged over the users "
        f"with n_ub >= 1 (MMRec's definitions with T_ub as the relevance set; `all items` is the "
        f"ordinary test metric). Each distinct test interaction falls in exactly one bucket. "
        f"Mean ± std (ddof=1) over seeds; Δ: relative change of the means, MOTOR vs ID; "
        f"test interactions / users: in the bucket (users with n_ub >= 1).")
    plots: List[Tuple[str, List[str], Dict[Tuple[str, str], Dict[str, List[List[float]]]]]] = []
    for dataset in dict.fromkeys(r.spec.dataset for r in runs):
        mine = [r for r in runs if r.spec.dataset == dataset]
        loaded: Dict[Optional[int], Any] = {}

        def data_of(run: Run):
            """The run's data (per seed only when held-out items depend on the seed)."""
            config = dataset_config(run.spec.model, dataset, out, overrides, run.spec.seed)
            key = run.spec.seed if config["cold_item_ratio"] and config["cold_item_seed"] is None else None
            if key not in loaded:
                loaded[key] = load_data(config)
            return loaded[key]

        data = data_of(mine[0])
        counts = item_train_counts(data.train, data.n_items)
        test_pairs = PairSet(data.test.users, data.test.items, data.n_items).keys % data.n_items
        if edges is None:
            data_edges = quantile_edges(counts[test_pairs], n_buckets)
            how = (f"quantile edges of c(i) over the test interactions; {n_buckets} buckets asked, "
                   f"{len(data_edges)} kept after ties")
        else:
            data_edges, how = list(edges), "given by --buckets"
        print(f"{dataset}: bucket edges {', '.join(map(str, data_edges))} ({how})", file=stream)
        models = list(dict.fromkeys(r.spec.model for r in mine))
        variants = [v for v in benchmark.VARIANTS if any(r.spec.variant == v for r in mine)]
        per: Dict[Tuple[str, str], List[List[Dict[str, Any]]]] = {}
        buckets: Optional[List[Dict[str, Any]]] = None
        for run in mine:
            result = load_result(out, run)
            if result is None or not os.path.isfile(topk_path(out, run)):
                continue
            users, ranked = read_topk(topk_path(out, run))
            run_data = data_of(run)
            rows = bucketed_metrics(users, ranked, run_data.test,
                                    item_train_counts(run_data.train, run_data.n_items), data_edges)
            if abs(rows[-1]["recall"] - result["best"]["test"][f"recall@{K}"]) > 6e-5:
                print(f"warning: {run.name}: all-item Recall@{K} from its top-K file "
                      f"({rows[-1]['recall']:.4f}) differs from its JSON "
                      f"({result['best']['test'][f'recall@{K}']}); other data settings?", file=stream)
            per.setdefault((run.spec.model, run.spec.variant), []).append(rows)
            buckets = buckets or rows
        lines += [f"## {dataset}", "",
                  f"Bucket edges (training interactions): {', '.join(map(str, data_edges))} ({how}); "
                  f"{len(test_pairs)} distinct test interactions, {len(np.unique(data.test.users))} users.", ""]
        if buckets is None:
            lines += ["No finished run.", ""]
            continue
        series: Dict[Tuple[str, str], Dict[str, List[List[float]]]] = {}
        for metric, title in METRICS:
            header = ["training interactions", "test interactions", "users"]
            for model in models:
                header += [f"{model} {_variant_label(v)}" for v in variants]
                if len(variants) == 2:
                    header.append(f"{model} Δ")
            table = []
            for i, bucket in enumerate(buckets):
                row = [bucket["label"], bucket["interactions"], bucket["users"]]
                for model in models:
                    values = {v: [rows[i][metric] for rows in per.get((model, v), [])] for v in variants}
                    row += [_stat(values[v]) for v in variants]
                    if len(variants) == 2:
                        row.append(_delta(values["id"], values["motor"]))
                    for v in variants:
                        series.setdefault((model, v), {}).setdefault(metric, []).append(
                            [_mean(values[v]) or 0.0, _std(values[v])])
                table.append(row)
            lines += [f"### Test {title} by bucket", "", markdown_table(header, table), ""]
        seeds = {f"{m} {v}": len(per.get((m, v), [])) for m in models for v in variants}
        lines += ["Seeds per column: " + ", ".join(f"{k} {n}" for k, n in seeds.items()), ""]
        plots.append((dataset, [b["label"] for b in buckets], series))
    return _write_report(out, "cold_items", lines, runs, plots, _plot_cold_items)


def _plot_cold_items(plots, path: str) -> bool:
    def draw(axes):
        for row, (dataset, labels, series) in enumerate(plots):
            x = np.arange(len(labels))
            width = 0.8 / max(1, len(series))
            for col, (metric, title) in enumerate(METRICS):
                ax = axes[row][col]
                for j, ((model, variant), values) in enumerate(series.items()):
                    means, stds = np.array(values[metric]).T
                    ax.bar(x + (j - (len(series) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
                           label=f"{model} {_variant_label(variant)}",
                           hatch="//" if variant == "motor" else None)
                ax.set_xticks(x)
                ax.set_xticklabels(labels, rotation=30, fontsize=8)
                ax.set_xlabel("item's training interactions")
                ax.set_title(f"{dataset}: test {title} by bucket")
                ax.legend(fontsize=7)

    return _save_png(path, len(plots), 2, 6.5, 3.6, draw)


def cold_items_main(argv: List[str]) -> int:
    parser = _parser("cold-items", "ID vs MOTOR test metrics by the items' training counts.")
    parser.add_argument("--buckets", default=None,
                        help="bucket edges on the item's training interactions, e.g. 0,5,10,20,50 "
                             "([0,5), [5,10), ..., [50,inf)); default: quantile edges")
    parser.add_argument("--n-buckets", type=int, default=DEFAULT_BUCKETS,
                        help=f"number of quantile buckets without --buckets (default {DEFAULT_BUCKETS})")
    args, rest = parser.parse_known_args(argv)
    overrides = _prepare(rest, "cold-items")
    edges = parse_edges(args.buckets) if args.buckets else None
    runs = _id_motor_runs("cold-items", argv, args, overrides)
    outcome = run_all(runs, args.out, overrides, with_topk=True)
    paths = benchmark.write_reports(args.out)
    written = cold_items_report(args.out, runs, overrides, edges, args.n_buckets)
    return finish(args.out, outcome, written + [paths["csv"], paths["summary"]])


# ------------------------------------------------------------------------------- token budget

def token_budget_runs(models, datasets, subspaces, nbits, seeds, id_baseline: bool) -> List[Run]:
    runs = []
    for model in models:
        for dataset in datasets:
            if id_baseline:
                runs += [Run(RunSpec(model, dataset, "id", s)) for s in seeds]
            for m in subspaces:
                for b in nbits:
                    runs += [Run(RunSpec(model, dataset, "motor", s), f"M{m}-b{b}",
                                 (("motor_num_subspaces", m), ("motor_nbits", b))) for s in seeds]
    return runs


def token_budget_report(out: str, runs: Sequence[Run]) -> List[str]:
    """Write ``DIR/token_budget.md`` (and ``.png``) from the run JSONs; returns the paths."""
    lines = _report_head(
        out, "Token budget: MOTOR's item-representation size vs accuracy",
        f"MOTOR runs over motor_num_subspaces M (tokens per item per modality) x motor_nbits "
        f"(K = 2^nbits codewords per sub-space). L: tokens per item over all modalities; item params: "
        f"token tables + Token Cross Network (the ID row: the item ID table); collisions: share of "
        f"items whose token tuple another item has, per modality (mean over the seeds' tokenizers); test Recall@{K} / NDCG@{K} at the "
        f"best-valid epoch, mean ± std (ddof=1) over seeds.")
    plots = []
    for dataset in dict.fromkeys(r.spec.dataset for r in runs):
        for model in dict.fromkeys(r.spec.model for r in runs if r.spec.dataset == dataset):
            groups: Dict[str, List[Dict[str, Any]]] = {}
            order: List[str] = []
            for run in runs:
                if run.spec.dataset != dataset or run.spec.model != model:
                    continue
                if run.tag not in order:
                    order.append(run.tag)
                result = load_result(out, run)
                if result is not None:
                    groups.setdefault(run.tag, []).append(result)
            table, points = [], []
            for tag in order:
                results = groups.get(tag, [])
                if not results:
                    table.append([tag or "ID", "-", "-", "-", "-", "-", "-", "-", "-", 0])
                    continue
                item = results[0]["item_representation"]
                recall = [r["best"]["test"].get(f"recall@{K}") for r in results]
                ndcg = [r["best"]["test"].get(f"ndcg@{K}") for r in results]
                if not tag:
                    table.append(["ID table", "-", "-", "-", f"{item['params']:,}", "-", "-",
                                  _stat(recall), _stat(ndcg), len(results)])
                    points.append(("ID", None, item["params"], _mean(recall), _std(recall)))
                    continue
                report = item["motor"]
                stats = report["tokenizer"]
                mods = list(stats)
                m_text = _per_modality({m: str(stats[m]["num_subspaces"]) for m in mods})
                bits = _per_modality({m: f"{stats[m]['nbits']} ({stats[m]['K']})" for m in mods})
                length = sum(int(stats[m]["num_subspaces"]) for m in mods)
                collisions = " / ".join(     # each seed fits its own tokenizer: their mean
                    f"{m} {np.mean([r['item_representation']['motor']['tokenizer'][m]['collision_rate'] for r in results]):.3f}"
                    for m in mods)
                table.append([m_text, bits, length, collisions, f"{item['params']:,}",
                              f"{report['token_table_params']:,}", f"{report['tcn_params']:,}",
                              _stat(recall), _stat(ndcg), len(results)])
                points.append((tag, int(stats[mods[0]]["nbits"]), item["params"], _mean(recall), _std(recall)))
            header = ["M (per modality)", "nbits (K)", "L", "collisions", "item params", "token tables",
                      "TCN", f"test R@{K}", f"test N@{K}", "seeds"]
            modalities = ""
            for tag in order:
                if tag and groups.get(tag):
                    modalities = "+".join(groups[tag][0]["item_representation"]["motor"]["tokenizer"])
                    break
            lines += [f"## {model} on {dataset}" + (f" (modalities {modalities})" if modalities else ""), "",
                      markdown_table(header, table), ""]
            if points:
                plots.append((f"{model} on {dataset}", points))
    return _write_report(out, "token_budget", lines, runs, plots, _plot_token_budget)


def _plot_token_budget(plots, path: str) -> bool:
    def draw(axes):
        for ax, (title, points) in zip(axes[0], plots):
            for nbits in sorted({p[1] for p in points if p[1] is not None}):
                mine = sorted((p for p in points if p[1] == nbits and p[3] is not None), key=lambda p: p[2])
                if not mine:
                    continue
                ax.errorbar([p[2] for p in mine], [p[3] for p in mine], yerr=[p[4] for p in mine],
                            marker="o", capsize=2, label=f"nbits {nbits}")
                for p in mine:
                    ax.annotate(p[0].split("-")[0], (p[2], p[3]), fontsize=7, xytext=(3, 3),
                                textcoords="offset points")
            for p in points:
                if p[1] is None and p[3] is not None:
                    ax.axhline(p[3], color="gray", linestyle="--", linewidth=1)
                    ax.plot([p[2]], [p[3]], "ks", label="ID table")
            ax.set_xscale("log")
            ax.set_xlabel("item-representation parameters")
            ax.set_ylabel(f"test Recall@{K}")
            ax.set_title(title)
            ax.legend(fontsize=7)

    return _save_png(path, 1, len(plots), 5.5, 4.0, draw)


def _per_modality(values: Mapping[str, str]) -> str:
    """``"4"`` when every modality has that value, else ``"v 4 / t 8"`` (nbits may be lowered per
    modality when it has fewer items than codewords)."""
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    return " / ".join(f"{m} {v}" for m, v in values.items())


def _int_list(text: str, what: str) -> List[int]:
    try:
        values = [int(v) for v in benchmark.split_list(text, what)]
    except ValueError:
        raise ConfigError(f"{what}: expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise ConfigError(f"{what}: expected positive integers, got {text!r}")
    return list(dict.fromkeys(values))


def token_budget_main(argv: List[str]) -> int:
    parser = _parser("token-budget", "MOTOR over sub-spaces x nbits: item parameters vs accuracy.",
                     variants=False)
    parser.add_argument("--subspaces", default="2,4,8", help="motor_num_subspaces values (default 2,4,8)")
    parser.add_argument("--nbits", default="4,6,8", help="motor_nbits values (default 4,6,8)")
    parser.add_argument("--id-baseline", action="store_true", help="also run the ID variant (a reference row)")
    args, rest = parser.parse_known_args(argv)
    overrides = _prepare(rest, "token-budget", ("motor_num_subspaces", "motor_nbits"))
    models, datasets = benchmark.split_list(args.models, "-m"), benchmark.split_list(args.datasets, "-d")
    subspaces, nbits = _int_list(args.subspaces, "--subspaces"), _int_list(args.nbits, "--nbits")
    seeds = benchmark.parse_seeds(args.seeds)
    variants = ["id", "motor"] if args.id_baseline else ["motor"]
    _record("token-budget", argv, args.out, overrides, models, datasets, variants, seeds)
    runs = token_budget_runs(models, datasets, subspaces, nbits, seeds, args.id_baseline)
    outcome = run_all(runs, args.out, overrides)
    return finish(args.out, outcome, token_budget_report(args.out, runs))


# --------------------------------------------------------------------------------- cold start

def cold_start_report(out: str, runs: Sequence[Run]) -> List[str]:
    """Write ``DIR/cold_start.md`` (and ``.png``) from the run JSONs; returns the paths."""
    lines = _report_head(
        out, "Inductive cold start: ID vs MOTOR on held-out items",
        f"A seeded share (cold_item_ratio) of the items with interactions is held out of training: all "
        f"their interactions are test interactions, train and valid keep none "
        f"(mmrec_motor/data/cold.py; the draw uses cold_item_seed, by default the run's seed, so each "
        f"seed holds out other items; users left without a training row are dropped from valid/test). "
        f"Cold: test Recall@{K} / NDCG@{K} on the held-out items' test interactions only (users with "
        f">= 1 of them; every item ranked, training items masked). All: the ordinary test metrics over "
        f"all test interactions (held-out ones included). At the best-valid epoch; mean ± std (ddof=1) "
        f"over seeds; Δ: relative change of the means, MOTOR vs ID. Cold MPR: the held-out test items' "
        f"mean percentile rank in their users' whole rankings (0 = first, 0.5 = what a ranking that knows "
        f"nothing averages, 1 = last; mmrec_motor/evaluation.py), which tells apart models whose held-out "
        f"items all miss the top {K}. An ID backbone has only an "
        f"untrained embedding row for a held-out item; MOTOR builds it from the item's tokens.")
    header = ["model", f"ID cold R@{K}", f"MOTOR cold R@{K}", "Δ", f"ID cold N@{K}", f"MOTOR cold N@{K}", "Δ",
              "ID cold MPR", "MOTOR cold MPR",
              f"ID all R@{K}", f"MOTOR all R@{K}", "Δ", f"ID all N@{K}", f"MOTOR all N@{K}", "Δ", "seeds ID/MOTOR"]
    plots = []
    for dataset in dict.fromkeys(r.spec.dataset for r in runs):
        table, sizes, bars = [], {}, {}
        for model in dict.fromkeys(r.spec.model for r in runs if r.spec.dataset == dataset):
            res = {v: [x for x in (load_result(out, r) for r in runs if r.spec.dataset == dataset
                                   and r.spec.model == model and r.spec.variant == v) if x is not None]
                   for v in benchmark.VARIANTS}

            def values(variant, split, metric):
                return [r["best"].get(split, {}).get(f"{metric}@{K}") for r in res[variant]]

            def mprs(variant):         # runs from before the key have none: "-" in the table
                return [r["best"].get("cold_test_mpr") for r in res[variant]]

            row: List[Any] = [model]
            for split in ("cold_test", "test"):
                for metric in ("recall", "ndcg"):
                    row += [_stat(values("id", split, metric)), _stat(values("motor", split, metric)),
                            _delta(values("id", split, metric), values("motor", split, metric))]
                if split == "cold_test":
                    row += [_stat(mprs(v)) for v in benchmark.VARIANTS]
            row.append(f"{len(res['id'])}/{len(res['motor'])}")
            table.append(row)
            for r in res["id"] + res["motor"]:
                if "cold_items" in r["data"]:
                    sizes.setdefault((r["data"]["cold_items"], r["data"]["cold_test"],
                                      r["data"]["cold_test_users"], r["data"].get("cold_dropped_users")),
                                     set()).add(benchmark.run_seed(r))
            bars[model] = {(v, s): (_mean(values(v, s, "recall")), _std(values(v, s, "recall")))
                           for v in benchmark.VARIANTS for s in ("cold_test", "test")}
            for v in benchmark.VARIANTS:
                bars[model][(v, "mpr")] = (_mean(mprs(v)), _std(mprs(v)))
        ratio = next((r["config"].get("cold_item_ratio") for r in
                      (load_result(out, x) for x in runs if x.spec.dataset == dataset) if r), None)
        size_lines = [f"- {'seed' if len(seeds) == 1 else 'seeds'} {', '.join(map(str, sorted(seeds)))}: "
                      f"{a} held-out items, {b} test interactions of theirs ({c} users)"
                      + ("" if d is None else f", {d} user{'' if d == 1 else 's'} left without a training "
                                              f"row (dropped)")
                      for (a, b, c, d), seeds in sizes.items()]
        lines += [f"## {dataset} (cold_item_ratio {ratio})", "", *(size_lines or ["No finished run."]), "",
                  markdown_table(header, table), ""]
        plots.append((dataset, bars))
    return _write_report(out, "cold_start", lines, runs, plots, _plot_cold_start)


def _plot_cold_start(plots, path: str) -> bool:
    """Per dataset two panels: Recall@20 (held-out and all items), and the held-out items' MPR."""
    def draw(axes):
        for ax, (dataset, bars) in zip(axes[1], plots):
            models = list(bars)
            x = np.arange(len(models))
            for j, variant in enumerate(benchmark.VARIANTS):
                means = [bars[m][(variant, "mpr")][0] for m in models]
                ax.bar(x + (j - 0.5) * 0.35, [np.nan if v is None else v for v in means], 0.35,
                       yerr=[bars[m][(variant, "mpr")][1] for m in models], capsize=2,
                       label=_variant_label(variant), color="C0" if variant == "id" else "C1",
                       hatch="//" if variant == "motor" else None)
            ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="no knowledge (0.5)")
            ax.set_ylim(0, 1)
            ax.set_xticks(x)
            ax.set_xticklabels(models)
            ax.set_ylabel("held-out items' MPR (lower is better)")
            ax.set_title(f"{dataset}: where held-out items rank")
            ax.legend(fontsize=7)
        for ax, (dataset, bars) in zip(axes[0], plots):
            models = list(bars)
            x = np.arange(len(models))
            keys = [("id", "cold_test"), ("motor", "cold_test"), ("id", "test"), ("motor", "test")]
            width = 0.2
            for j, key in enumerate(keys):
                means = [bars[m][key][0] or 0.0 for m in models]
                stds = [bars[m][key][1] for m in models]
                ax.bar(x + (j - 1.5) * width, means, width, yerr=stds, capsize=2,
                       label=f"{_variant_label(key[0])} "
                             f"{'held-out items' if key[1] == 'cold_test' else 'all items'}",
                       color="C0" if key[0] == "id" else "C1", hatch="//" if key[0] == "motor" else None,
                       alpha=1.0 if key[1] == "cold_test" else 0.45)
            ax.set_xticks(x)
            ax.set_xticklabels(models)
            ax.set_ylabel(f"test Recall@{K}")
            ax.set_title(f"{dataset}: inductive cold start")
            ax.legend(fontsize=7)

    return _save_png(path, 2, len(plots), 6.0, 3.8, draw)


def cold_start_main(argv: List[str]) -> int:
    parser = _parser("cold-start", "ID vs MOTOR on items held out of training.")
    parser.add_argument("--ratio", type=float, default=0.1,
                        help="cold_item_ratio: share of the interacted items held out (default 0.1)")
    args, rest = parser.parse_known_args(argv)
    overrides = _prepare(rest, "cold-start", ("cold_item_ratio",))
    if not 0 < args.ratio < 1:
        raise ConfigError(f"--ratio must be in (0, 1), got {args.ratio}")
    overrides["cold_item_ratio"] = args.ratio
    runs = _id_motor_runs("cold-start", argv, args, overrides)
    outcome = run_all(runs, args.out, overrides)
    for run in runs:                     # runs from before cold_test_mpr: from their checkpoints
        result = load_result(args.out, run)
        if result is not None and "cold_test" in result["best"] and "cold_test_mpr" not in result["best"]:
            done = cold_mpr_from_checkpoint(args.out, run, overrides, result)
            print(f"{run.name}: cold_test_mpr " + ("added from its saved checkpoint" if done else
                  "not known (no checkpoint that reproduces the run's metrics)"), file=sys.stderr)
    paths = benchmark.write_reports(args.out)
    return finish(args.out, outcome, cold_start_report(args.out, runs) + [paths["csv"], paths["summary"]])


COMMANDS = {"cold-items": cold_items_main, "token-budget": token_budget_main, "cold-start": cold_start_main}
