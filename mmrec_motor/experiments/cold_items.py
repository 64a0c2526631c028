"""``mmrec-motor cold-items``: ID vs MOTOR test metrics by the test items' training counts.

    mmrec-motor cold-items -m FREEDOM,BPR -d lfm2k --seeds 999 [--variants id,motor] \
        [--buckets 0,5,10,20,50 | --n-buckets 5] [--key=value ...] --out DIR

Trains its runs as bench does (:mod:`~mmrec_motor.experiments.runner`), each also writing its test
top-50 to ``DIR/topk/<name>.tsv`` (``topk_file``'s format), then writes ``DIR/cold_items.md`` / ``.png``:
test Recall@20 and NDCG@20 per bucket of the items' number of training interactions
(:func:`~mmrec_motor.experiments.buckets.bucketed_metrics` defines them), ID vs MOTOR per model, and
``results.csv`` / ``summary.md`` as bench does. Run names are bench's, so DIR may be a bench folder: a
run whose JSON exists but has no top-K file gets one from its saved best checkpoint
(:func:`~mmrec_motor.quick_start.load_run`; kept only when its test metrics reproduce the JSON's
exactly), else it is trained again.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple

import numpy as np

from mmrec_motor.data.dataset import PairSet
from mmrec_motor.data.loader import load_data
from mmrec_motor.experiments.buckets import (DEFAULT_BUCKETS, K, bucketed_metrics, item_train_counts,
                                             parse_edges, quantile_edges)
from mmrec_motor.experiments.plan import id_motor_plan, prepare_overrides, run_config
from mmrec_motor.experiments.report import write_reports
from mmrec_motor.experiments.runner import finish, run_protocol
from mmrec_motor.experiments.store import (VARIANTS, RunSpec, chosen_specs, load_result, saved_checkpoint,
                                           topk_path)
from mmrec_motor.experiments.tables import (markdown_table, mean, relative_change, report_head, save_png,
                                            stat, std, variant_label, write_report)
from mmrec_motor.fileio import read_topk, write_topk
from mmrec_motor.quick_start import evaluator, load_run, quick_start

METRICS = (("recall", f"Recall@{K}"), ("ndcg", f"NDCG@{K}"))   # result key, title


def topk_from_checkpoint(out: str, spec: RunSpec, result: Mapping[str, Any]) -> bool:
    """Write the top-K file of a finished run from its saved best checkpoint; True when done, which
    needs the new ranking's test metrics to equal the run JSON's too."""
    path = saved_checkpoint(out, result)
    run = None if path is None else load_run(path, result["config"])
    if run is None or run.checkpoint.get("test") != result["best"]["test"]:
        return False
    test = evaluator(run.config, run.data, run.data.test)
    ranked = test.rank(run.model)
    if test.metrics_of(ranked) != result["best"]["test"]:
        return False
    write_topk(topk_path(out, spec), test.users, ranked)
    return True


def reuse_with_topk(out: str) -> Callable[[RunSpec, Dict[str, Any], Callable[[str], None]], Optional[str]]:
    """The runner's ``reuse``: a finished run needs its top-K file, from its checkpoint if need be."""
    def reuse(spec: RunSpec, result: Dict[str, Any], say: Callable[[str], None]) -> Optional[str]:
        if os.path.isfile(topk_path(out, spec)):
            return ""
        try:
            if topk_from_checkpoint(out, spec, result):
                return "; top-K file rebuilt from its saved checkpoint"
        except Exception as exc:  # noqa: BLE001 - then train it again
            say(f"{spec.name}: its checkpoint gave no top-K file ({type(exc).__name__}: {exc})")
        say(f"{spec.name}: result exists but no top-K file (and no matching checkpoint): training it again")
        return None
    return reuse


EXPLANATION = " ".join("""
Test Recall@{K} and NDCG@{K} per bucket of the test item's number of training interactions c(i)
(distinct training users). For bucket b and user u, T_ub = u's test items whose c(i) is in b, n_ub =
|T_ub|; the ranking is the run's ordinary full-sort top-{K} over all items (training items masked).
Recall_b = |top-{K} ∩ T_ub| / n_ub, NDCG_b = DCG over the hits in T_ub / IDCG(min(n_ub, {K})), each
averaged over the users with n_ub >= 1 (MMRec's definitions with T_ub as the relevance set; `all items`
is the ordinary test metric). Each distinct test interaction falls in exactly one bucket. Mean ± std
(ddof=1) over seeds; Δ: relative change of the means, MOTOR vs ID; test interactions / users: in the
bucket (users with n_ub >= 1).
""".split())


def cold_items_report(out: str, specs: Sequence[RunSpec], overrides: Mapping[str, Any],
                      edges: Optional[Sequence[int]] = None, n_buckets: int = DEFAULT_BUCKETS,
                      stream: Optional[TextIO] = None) -> List[str]:
    """Write ``DIR/cold_items.md`` (and ``.png``) from the runs' top-K files; returns the paths."""
    stream = sys.stderr if stream is None else stream
    lines = report_head(out, "Cold items: ID vs MOTOR by the items' training interactions",
                            EXPLANATION.format(K=K))
    plots: List[Tuple[str, List[str], Dict[Tuple[str, str], Dict[str, List[List[float]]]]]] = []
    for dataset in dict.fromkeys(s.dataset for s in specs):
        mine = [s for s in specs if s.dataset == dataset]
        loaded: Dict[Optional[int], Any] = {}

        def data_of(spec: RunSpec):
            """The run's data (per seed only when held-out items depend on the seed)."""
            config = run_config(out, spec, overrides)
            key = spec.seed if config["cold_item_ratio"] and config["cold_item_seed"] is None else None
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
        models = list(dict.fromkeys(s.model for s in mine))
        variants = [v for v in VARIANTS if any(s.variant == v for s in mine)]
        per: Dict[Tuple[str, str], List[List[Dict[str, Any]]]] = {}
        buckets: Optional[List[Dict[str, Any]]] = None
        for spec in mine:
            result = load_result(out, spec)
            if result is None or not os.path.isfile(topk_path(out, spec)):
                continue
            users, ranked = read_topk(topk_path(out, spec))
            run_data = data_of(spec)
            rows = bucketed_metrics(users, ranked, run_data.test,
                                    item_train_counts(run_data.train, run_data.n_items), data_edges)
            if abs(rows[-1]["recall"] - result["best"]["test"][f"recall@{K}"]) > 6e-5:
                print(f"warning: {spec.name}: all-item Recall@{K} from its top-K file "
                      f"({rows[-1]['recall']:.4f}) differs from its JSON "
                      f"({result['best']['test'][f'recall@{K}']}); other data settings?", file=stream)
            per.setdefault((spec.model, spec.variant), []).append(rows)
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
                header += [f"{model} {variant_label(v)}" for v in variants]
                if len(variants) == 2:
                    header.append(f"{model} Δ")
            table = []
            for i, bucket in enumerate(buckets):
                row = [bucket["label"], bucket["interactions"], bucket["users"]]
                for model in models:
                    values = {v: [rows[i][metric] for rows in per.get((model, v), [])] for v in variants}
                    row += [stat(values[v]) for v in variants]
                    if len(variants) == 2:
                        row.append(relative_change(values["id"], values["motor"]))
                    for v in variants:
                        series.setdefault((model, v), {}).setdefault(metric, []).append(
                            [mean(values[v]) or 0.0, std(values[v])])
                table.append(row)
            lines += [f"### Test {title} by bucket", "", markdown_table(header, table), ""]
        seeds = {f"{m} {v}": len(per.get((m, v), [])) for m in models for v in variants}
        lines += ["Seeds per column: " + ", ".join(f"{k} {n}" for k, n in seeds.items()), ""]
        plots.append((dataset, [b["label"] for b in buckets], series))
    return write_report(out, "cold_items", lines, specs, plots, _plot)


def _plot(plots, path: str) -> bool:
    def draw(axes):
        for row, (dataset, labels, series) in enumerate(plots):
            x = np.arange(len(labels))
            width = 0.8 / max(1, len(series))
            for col, (metric, title) in enumerate(METRICS):
                ax = axes[row][col]
                for j, ((model, variant), values) in enumerate(series.items()):
                    means, stds = np.array(values[metric]).T
                    ax.bar(x + (j - (len(series) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
                           label=f"{model} {variant_label(variant)}",
                           hatch="//" if variant == "motor" else None)
                ax.set_xticks(x)
                ax.set_xticklabels(labels, rotation=30, fontsize=8)
                ax.set_xlabel("item's training interactions")
                ax.set_title(f"{dataset}: test {title} by bucket")
                ax.legend(fontsize=7)

    return save_png(path, len(plots), 2, 6.5, 3.6, draw)


def run(args: Any, rest: List[str], argv: List[str]) -> int:
    """``mmrec-motor cold-items`` (its parser: :mod:`mmrec_motor.experiments.commands`)."""
    overrides = prepare_overrides(rest, "cold-items")
    edges = parse_edges(args.buckets) if args.buckets else None
    specs = id_motor_plan("cold-items", argv, args, overrides)
    specs, outcome = run_protocol(args, specs, overrides, quick_start, with_topk=True,
                                  reuse=reuse_with_topk(args.out))
    paths = write_reports(args.out)
    written = cold_items_report(args.out, chosen_specs(args.out, specs), overrides, edges, args.n_buckets)
    return finish(outcome, written + [paths["csv"], paths["summary"]])
