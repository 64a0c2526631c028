"""The bench report of a run folder, rebuilt from its run JSONs (and bench.json) alone:

- ``results.csv``: one row per run (model, dataset, variant, seed, every valid and test metric at the
  best-valid epoch, item-representation and total parameters, train seconds per epoch, eval seconds,
  epochs run, best epoch);
- ``summary.md``: the command lines, then per dataset one row per model: ID and MOTOR test Recall@20
  and NDCG@20 (mean ± std over seeds), the relative change of the means, a paired t-test over seeds
  on test Recall@20, the 95% interval of the Recall@20 change over the test users
  (:func:`users_interval`, from the runs' per-user metrics files), item-representation parameters and
  train seconds per epoch with their MOTOR/ID ratios (:data:`SUMMARY_HEADER`).
"""
from __future__ import annotations

import csv
import io
import math
import os
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from mmrec_motor.experiments.bootstrap import change_interval, seed_mean
from mmrec_motor.experiments.store import (TUNED_VARIANTS, VARIANTS, load_runs, run_seed, run_variant,
                                           runs_dir, saved_user_metrics, spec_of, valid_score)
from mmrec_motor.experiments.tables import (commands_block, failures_block, markdown_table, mean,
                                            relative_change, stat)
from mmrec_motor.fileio import read_user_metrics, write_text

RESULT_COLUMNS_HEAD = ["model", "dataset", "variant", "seed"]
RESULT_COLUMNS_TAIL = ["item_repr_params", "total_params", "train_seconds_per_epoch", "eval_seconds",
                       "epochs_run", "best_epoch"]
SUMMARY_HEADER = ["model", "ID R@20", "MOTOR R@20", "Δ R@20", "ID N@20", "MOTOR N@20", "Δ N@20",
                  "p (paired t, R@20)", "Δ R@20, 95% over users", "seeds ID/MOTOR", "item params ID",
                  "item params MOTOR", "params MOTOR/ID", "s/epoch ID", "s/epoch MOTOR", "s/epoch MOTOR/ID"]


def result_row(result: Mapping[str, Any]) -> Dict[str, Any]:
    """One CSV row: identity, every valid and test metric, parameters, timings, epochs."""
    chosen = result["combinations"][result["chosen"]]
    row: Dict[str, Any] = {"model": result["model"], "dataset": result["dataset"],
                           "variant": run_variant(result), "seed": run_seed(result)}
    for split in ("valid", "test"):
        for metric, value in result["best"][split].items():
            row[f"{split}_{metric}"] = value
    combination = (result.get("config") or {}).get("tuning_combination")
    if combination is not None:
        row["tuning_combination"] = int(combination)
    row["valid_score"] = valid_score(result, missing=None)
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
        metrics += [k for k in row if k.startswith(("valid_", "test_")) and k != "valid_score"
                    and k not in metrics]
    head = RESULT_COLUMNS_HEAD + (["tuning_combination"] if any("tuning_combination" in r for r in rows) else [])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=head + metrics + RESULT_COLUMNS_TAIL, lineterminator="\n",
                            extrasaction="ignore")
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


def ratio(id_value: Optional[float], motor_value: Optional[float], fmt: str = "{:.2f}x") -> str:
    """``motor / id`` formatted; ``-`` when a side is missing."""
    if id_value is None or motor_value is None:
        return "-"
    return fmt.format(motor_value / id_value) if id_value else "n/a"


USERS_RESAMPLES, USERS_SEED = 2000, 0


def users_interval(side_rows: Mapping[str, Sequence[Mapping[str, Any]]], metric: str = "recall@20") -> str:
    """The 95% interval of MOTOR's change over ID on test ``metric`` over the test users, ``[low, high]``:
    each user's value averaged over a side's runs, the users resampled with replacement
    (:func:`mmrec_motor.experiments.bootstrap.change_interval`, :data:`USERS_RESAMPLES` rounds, seed
    :data:`USERS_SEED`). ``-`` when a run has no per-user metrics file (``user_metrics_path``: runs made
    before bench wrote them) or none of ``metric``; ``n/a`` (with the reason) when the runs evaluate
    different test users (the cold-start protocol draws its held-out items per seed) or ID scores 0."""
    per_side = {}
    for variant in VARIANTS:
        paths = [row.get("user_metrics_path") for row in side_rows[variant]]
        if not paths or None in paths:
            return "-"
        runs = []
        for path in paths:
            users, values = read_user_metrics(path)["test"]
            if metric not in values:
                return "-"
            runs.append((users, values[metric]))
        try:
            per_side[variant] = seed_mean(runs)
        except ValueError:
            return "n/a (seeds with other test users)"
    (id_users, id_values), (motor_users, motor_values) = per_side["id"], per_side["motor"]
    if not np.array_equal(id_users, motor_users):
        return "n/a (ID and MOTOR have other test users)"
    if id_values.sum() <= 0:
        return "n/a (ID scores 0)"
    change = change_interval(id_values, motor_values, USERS_RESAMPLES, USERS_SEED)
    return f"[{100 * change.low:+.1f}%, {100 * change.high:+.1f}%]"


def model_summary_row(model: str, rows: Sequence[Mapping[str, Any]]) -> List[str]:
    """One summary row: a model's ID and MOTOR runs on one dataset (the CSV rows of those runs)."""
    side = {v: [r for r in rows if r["variant"] == v] for v in VARIANTS}

    def values(variant: str, column: str) -> List[float]:
        return [float(r[column]) for r in side[variant] if r[column] is not None]

    by_seed = {v: {int(r["seed"]): float(r["test_recall@20"]) for r in side[v]} for v in VARIANTS}
    params = {v: mean(values(v, "item_repr_params")) for v in VARIANTS}
    seconds = {v: mean(values(v, "train_seconds_per_epoch")) for v in VARIANTS}
    return [model,
            stat(values("id", "test_recall@20")), stat(values("motor", "test_recall@20")),
            relative_change(values("id", "test_recall@20"), values("motor", "test_recall@20")),
            stat(values("id", "test_ndcg@20")), stat(values("motor", "test_ndcg@20")),
            relative_change(values("id", "test_ndcg@20"), values("motor", "test_ndcg@20")),
            paired_p_value(by_seed["id"], by_seed["motor"]),
            users_interval(side),
            f"{len(side['id'])}/{len(side['motor'])}",
            "-" if params["id"] is None else f"{params['id']:,.0f}",
            "-" if params["motor"] is None else f"{params['motor']:,.0f}",
            ratio(params["id"], params["motor"]),
            "-" if seconds["id"] is None else f"{seconds['id']:.3f}",
            "-" if seconds["motor"] is None else f"{seconds['motor']:.3f}",
            ratio(seconds["id"], seconds["motor"])]


def chosen_on_validation(rows: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The tuned protocol's result rows: per model x dataset x side x seed, the combination with the
    best validation score (ties: the lower combination index), relabelled ``id`` / ``motor`` and
    carrying ``combinations``, the number of combinations that side trained."""
    groups: Dict[tuple, List[Mapping[str, Any]]] = {}
    for row in rows:
        if row["variant"] in TUNED_VARIANTS:
            groups.setdefault((row["model"], row["dataset"], row["variant"], row["seed"]), []).append(row)
    chosen = []
    for (model, dataset, variant, seed), group in sorted(groups.items()):
        best = max(group, key=lambda r: (r["valid_score"] if r["valid_score"] is not None else -math.inf,
                                         -r.get("tuning_combination", 0)))
        chosen.append({**best, "variant": variant[: -len("-tuned")], "combinations": len(group)})
    return chosen


def summary_md(results: Sequence[Mapping[str, Any]], out: str) -> str:
    """``summary.md``: the command lines, then per dataset one row per model (:data:`SUMMARY_HEADER`),
    then the runs a NaN loss ended and the failed runs of ``out``."""
    rows = [{**result_row(r), "user_metrics_path": saved_user_metrics(out, r)} for r in results]
    lines = ["# Benchmark: ID vs MOTOR", ""] + commands_block(out, "# (unknown: no bench.json in this folder)")
    lines += ["Test Recall@20 / NDCG@20 at the best-valid epoch, mean ± std (ddof=1) over seeds; Δ: relative "
              "change of the means, MOTOR vs ID; p: paired t-test (scipy.stats.ttest_rel) on test Recall@20 "
              "over the seeds both variants ran (n/a under two pairs); 95% over users: the interval of the R@20 "
              "change when the test users are resampled (each user's Recall@20 averaged over a side's seeds; "
              f"paired bootstrap, {USERS_RESAMPLES:,} rounds; - for runs without per-user files); item params: "
              "the item representation (ID table, or token tables + cross network); s/epoch: mean training seconds per epoch.", ""]
    plain = [r for r in rows if r["variant"] in VARIANTS]
    for dataset in sorted({r["dataset"] for r in plain}):
        table = [model_summary_row(model, [r for r in plain if r["dataset"] == dataset and r["model"] == model])
                 for model in sorted({r["model"] for r in plain if r["dataset"] == dataset})]
        lines += [f"## {dataset}", "", markdown_table(SUMMARY_HEADER, table), ""]
    tuned = chosen_on_validation(rows)
    for dataset in sorted({r["dataset"] for r in tuned}):
        lines += [f"## {dataset}, tuned protocol", "",
                  "Each side trained the same number of combinations (`combinations ID/MOTOR`, per seed: "
                  "the backbone grid reduced to evenly spaced points; on the MOTOR side, MOTOR's "
                  "`motor_tuning_grid` searched at the best of them (--motor-search staged) or paired with "
                  "them (paired), as the command line says; mmrec_motor/experiments/tuning.py) and reports "
                  "the test metrics of its best combination on validation.", ""]
        table = []
        for model in sorted({r["model"] for r in tuned if r["dataset"] == dataset}):
            mine = [r for r in tuned if r["dataset"] == dataset and r["model"] == model]
            counts = {v: max([r["combinations"] for r in mine if r["variant"] == v], default=0) for v in VARIANTS}
            table.append(model_summary_row(model, mine) + [f"{counts['id']}/{counts['motor']}"])
        lines += [markdown_table(SUMMARY_HEADER + ["combinations ID/MOTOR"], table), ""]
    return "\n".join(lines + nan_stops_block(results) + failures_block(out))


def nan_stops_block(results: Sequence[Mapping[str, Any]]) -> List[str]:
    """``## Runs ended by a NaN loss`` and one line per run whose chosen combination ``nan_loss: stop``
    ended (its metrics: the best-valid epoch before it, MMRec's rule); empty when none."""
    lines = []
    for result in results:
        where = result["combinations"][result["chosen"]].get("stopped_on_nan")
        if where:
            lines.append(f"- `{spec_of(result).name}`: at {where}; reported: its best-valid epoch before it, "
                         f"{result['best']['best_epoch']}")
    return ["## Runs ended by a NaN loss (nan_loss: stop)", "", *lines, ""] if lines else []


def write_reports(out: str) -> Dict[str, str]:
    """(Re)write ``DIR/results.csv`` and ``DIR/summary.md`` from the run JSONs; returns their paths."""
    if not os.path.isdir(runs_dir(out)):
        raise FileNotFoundError(f"{runs_dir(out)} does not exist: not a bench folder")
    results = load_runs(out)
    paths = {"csv": os.path.join(out, "results.csv"), "summary": os.path.join(out, "summary.md")}
    write_text(paths["csv"], results_csv(results))
    write_text(paths["summary"], summary_md(results, out))
    return paths


def run(args: Any, rest: List[str], argv: List[str]) -> int:
    """``mmrec-motor report DIR`` (its parser: :mod:`mmrec_motor.experiments.commands`)."""
    paths = write_reports(args.out)
    print(f"wrote {paths['csv']} and {paths['summary']}")
    return 0
