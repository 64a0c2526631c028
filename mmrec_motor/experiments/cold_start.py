"""``mmrec-motor cold-start``: ID vs MOTOR on items held out of training (inductive cold start).

    mmrec-motor cold-start -m FREEDOM,BPR -d lfm2k --ratio 0.1 --seeds 999 [--variants id,motor] \
        [--key=value ...] --out DIR

Bench runs with ``cold_item_ratio`` = ``--ratio`` (mmrec_motor/data/cold.py), trained as bench does
(:mod:`~mmrec_motor.experiments.runner`), then ``DIR/cold_start.md`` / ``.png``, ID vs MOTOR:
Recall@20 / NDCG@20 and the mean percentile rank (``cold_test_mpr``) of the held-out items
(``cold_test``), their share of the top 20 (``cold_test_share``), Recall@20 with only the held-out
items ranked (``cold_test_among``; quick_start.cold_metrics), and Recall@20 / NDCG@20 on all test
items; ``results.csv`` / ``summary.md`` as bench does. A finished run from before those scores gets
them from its saved best checkpoint (:func:`~mmrec_motor.quick_start.load_run`; only when that
reproduces the run's held-out metrics).
"""
from __future__ import annotations

import sys
from typing import Any, Dict, List, Sequence

import numpy as np

from mmrec_motor.config import ConfigError
from mmrec_motor.experiments.buckets import K
from mmrec_motor.experiments.plan import id_motor_plan, prepare_overrides
from mmrec_motor.experiments.report import write_reports
from mmrec_motor.experiments.runner import finish, run_protocol
from mmrec_motor.experiments.store import (VARIANTS, RunSpec, chosen_specs, load_result, result_path, run_seed,
                                           saved_checkpoint)
from mmrec_motor.experiments.tables import (markdown_table, mean, relative_change, report_head, save_png,
                                            stat, std, variant_label, write_report)
from mmrec_motor.fileio import write_json
from mmrec_motor.quick_start import cold_metrics, evaluator, load_run, quick_start


#: the cold-start scores a run record holds beside ``cold_test`` (quick_start.cold_metrics)
LATER_KEYS = ("cold_test_mpr", "cold_test_among", "cold_test_share")


def cold_keys_from_checkpoint(out: str, spec: RunSpec, result: Dict[str, Any]) -> bool:
    """Add the scores of :data:`LATER_KEYS` to a finished cold-start run that predates them, from
    its saved best checkpoint; the run JSON is rewritten only when the restored model also
    reproduces the run's held-out metrics (``cold_test``). True when done."""
    path = saved_checkpoint(out, result)
    if path is None or "cold_test" not in result["best"]:
        return False
    run = load_run(path, result["config"])
    if run.checkpoint.get("test") != result["best"]["test"]:
        return False
    scores = cold_metrics(run.config, run.data, evaluator(run.config, run.data, run.data.cold_test), run.model)
    if scores["cold_test"] != result["best"]["cold_test"]:
        return False
    for key in LATER_KEYS:
        result["best"].setdefault(key, scores[key])
        result["combinations"][result["chosen"]].setdefault(key, scores[key])
    write_json(result_path(out, spec), result)
    return True


EXPLANATION = " ".join("""
A seeded share (cold_item_ratio) of the items with interactions is held out of training: train and
valid keep none of their interactions; with cold_item_test all (the default) every one of them is a
test interaction, with own test keeps only their own test rows and is scored as without the protocol
(their train rows masked as a trained item's are), as the heading says (mmrec_motor/data/cold.py; the
draw uses cold_item_seed, by default the run's seed, so each seed holds out other items; users left without a
training row are dropped from valid/test). Cold: test Recall@{K} / NDCG@{K} on the held-out items' test
interactions only (users with >= 1 of them; every item ranked, training items masked). All: the ordinary
test metrics over all test interactions (held-out ones included). At the best-valid epoch; mean ± std
(ddof=1) over seeds; Δ: relative change of the means, MOTOR vs ID. Cold MPR: the held-out test items'
mean percentile rank in their users' whole rankings (0 = first, 0.5 = what a ranking that knows nothing
averages, 1 = last; mmrec_motor/evaluation.py), which tells apart models whose held-out items all miss
the top {K}. Held-out share@{K}: the share of the cold users' top {K} slots taken by held-out items.
With cold_item_test all, a held-out item has many more test interactions than a trained one
(with own, the same on average): a model that ranks items without a training edge high as a group
gains cold and all-item Recall whatever it knows about them (content-kNN, which has no such
preference, fills about the catalogue share). Among held-out R@{K}: the same users with only the
held-out items ranked (every trained item excluded), where no group preference helps: how well the
model orders the held-out items, which is what their tokens can carry. An ID backbone has only an
untrained embedding row for a held-out item; MOTOR builds it from the item's tokens.
""".split())


def cold_start_report(out: str, specs: Sequence[RunSpec]) -> List[str]:
    """Write ``DIR/cold_start.md`` (and ``.png``) from the run JSONs; returns the paths."""
    lines = report_head(out, "Inductive cold start: ID vs MOTOR on held-out items",
                            EXPLANATION.format(K=K))
    header = ["model", f"ID cold R@{K}", f"MOTOR cold R@{K}", "Δ", f"ID cold N@{K}", f"MOTOR cold N@{K}", "Δ",
              "ID cold MPR", "MOTOR cold MPR", f"ID held-out share@{K}", f"MOTOR held-out share@{K}",
              f"ID among held-out R@{K}", f"MOTOR among held-out R@{K}", "Δ",
              f"ID all R@{K}", f"MOTOR all R@{K}", "Δ", f"ID all N@{K}", f"MOTOR all N@{K}", "Δ", "seeds ID/MOTOR"]
    plots = []
    for dataset in dict.fromkeys(s.dataset for s in specs):
        table, sizes, bars = [], {}, {}
        for model in dict.fromkeys(s.model for s in specs if s.dataset == dataset):
            res = {v: [x for x in (load_result(out, s) for s in specs if s.dataset == dataset
                                   and s.model == model and s.variant == v) if x is not None]
                   for v in VARIANTS}

            def values(variant, split, metric):
                return [r["best"].get(split, {}).get(f"{metric}@{K}") for r in res[variant]]

            def mprs(variant):         # runs from before the key have none: "-" in the table
                return [r["best"].get("cold_test_mpr") for r in res[variant]]

            def shares(variant):
                return [r["best"].get("cold_test_share", {}).get(f"held_out_share@{K}") for r in res[variant]]

            row: List[Any] = [model]
            for split in ("cold_test", "test"):
                for metric in ("recall", "ndcg"):
                    row += [stat(values("id", split, metric)), stat(values("motor", split, metric)),
                            relative_change(values("id", split, metric), values("motor", split, metric))]
                if split == "cold_test":
                    among = [values(v, "cold_test_among", "recall") for v in VARIANTS]
                    row += [stat(mprs(v)) for v in VARIANTS] + [stat(shares(v)) for v in VARIANTS]
                    row += [stat(a) for a in among] + [relative_change(*among)]
            row.append(f"{len(res['id'])}/{len(res['motor'])}")
            table.append(row)
            for r in res["id"] + res["motor"]:
                if "cold_items" in r["data"]:
                    sizes.setdefault((r["data"]["cold_items"], r["data"]["cold_test"],
                                      r["data"]["cold_test_users"], r["data"].get("cold_dropped_users")),
                                     set()).add(run_seed(r))
            bars[model] = {(v, s): (mean(values(v, s, "recall")), std(values(v, s, "recall")))
                           for v in VARIANTS for s in ("cold_test", "test")}
            for v in VARIANTS:
                bars[model][(v, "mpr")] = (mean(mprs(v)), std(mprs(v)))
        config = next((r["config"] for r in (load_result(out, s) for s in specs if s.dataset == dataset)
                       if r), {})
        protocol = f"cold_item_ratio {config.get('cold_item_ratio')}"
        if config.get("cold_item_test") not in (None, "all"):
            protocol += f", cold_item_test {config['cold_item_test']}"
        size_lines = [f"- {'seed' if len(seeds) == 1 else 'seeds'} {', '.join(map(str, sorted(seeds)))}: "
                      f"{a} held-out items, {b} test interactions of theirs ({c} users)"
                      + ("" if d is None else f", {d} user{'' if d == 1 else 's'} left without a training "
                                              f"row (dropped)")
                      for (a, b, c, d), seeds in sizes.items()]
        lines += [f"## {dataset} ({protocol})", "", *(size_lines or ["No finished run."]), "",
                  markdown_table(header, table), ""]
        plots.append((dataset, bars))
    return write_report(out, "cold_start", lines, specs, plots, _plot)


def _plot(plots, path: str) -> bool:
    """Per dataset two panels: Recall@20 (held-out and all items), and the held-out items' MPR."""
    def draw(axes):
        for ax, (dataset, bars) in zip(axes[1], plots):
            models = list(bars)
            x = np.arange(len(models))
            for j, variant in enumerate(VARIANTS):
                means = [bars[m][(variant, "mpr")][0] for m in models]
                ax.bar(x + (j - 0.5) * 0.35, [np.nan if v is None else v for v in means], 0.35,
                       yerr=[bars[m][(variant, "mpr")][1] for m in models], capsize=2,
                       label=variant_label(variant), color="C0" if variant == "id" else "C1",
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
                       label=f"{variant_label(key[0])} "
                             f"{'held-out items' if key[1] == 'cold_test' else 'all items'}",
                       color="C0" if key[0] == "id" else "C1", hatch="//" if key[0] == "motor" else None,
                       alpha=1.0 if key[1] == "cold_test" else 0.45)
            ax.set_xticks(x)
            ax.set_xticklabels(models)
            ax.set_ylabel(f"test Recall@{K}")
            ax.set_title(f"{dataset}: inductive cold start")
            ax.legend(fontsize=7)

    return save_png(path, 2, len(plots), 6.0, 3.8, draw)


def run(args: Any, rest: List[str], argv: List[str]) -> int:
    """``mmrec-motor cold-start`` (its parser: :mod:`mmrec_motor.experiments.commands`)."""
    overrides = prepare_overrides(rest, "cold-start", ("cold_item_ratio",))
    if not 0 < args.ratio < 1:
        raise ConfigError(f"--ratio must be in (0, 1), got {args.ratio}")
    overrides["cold_item_ratio"] = args.ratio
    specs = id_motor_plan("cold-start", argv, args, overrides)
    specs, outcome = run_protocol(args, specs, overrides, quick_start)
    for spec in specs:                   # runs from before a score of LATER_KEYS: from their checkpoints
        result = load_result(args.out, spec)
        if result is None or "cold_test" not in result["best"]:
            continue
        missing = [key for key in LATER_KEYS if key not in result["best"]]
        if missing:
            done = cold_keys_from_checkpoint(args.out, spec, result)
            print(f"{spec.name}: {', '.join(missing)} " + ("added from its saved checkpoint" if done else
                  "not known (no checkpoint that reproduces the run's metrics)"), file=sys.stderr)
    paths = write_reports(args.out)
    written = cold_start_report(args.out, chosen_specs(args.out, specs))
    return finish(outcome, written + [paths["csv"], paths["summary"]])
