"""``mmrec-motor token-budget``: MOTOR's item-representation size vs accuracy.

    mmrec-motor token-budget -m FREEDOM -d lfm2k --subspaces 2,4,8 --nbits 4,6,8 --seeds 999 \
        [--id-baseline] [--key=value ...] --out DIR

MOTOR runs over ``motor_num_subspaces`` x ``motor_nbits`` (run names
``<model>-<dataset>-motor-<seed>-M<m>-b<nbits>``; with ``--id-baseline`` also the ID runs), trained as
bench does (:mod:`~mmrec_motor.experiments.runner`), then ``DIR/token_budget.md`` / ``.png``:
item-representation parameters and test Recall@20 / NDCG@20.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from mmrec_motor.experiments.buckets import K
from mmrec_motor.experiments.plan import int_list, parse_seeds, prepare_overrides, record, split_list
from mmrec_motor.experiments.runner import finish, run_all
from mmrec_motor.experiments.store import RunSpec, load_result
from mmrec_motor.experiments.tables import markdown_table, mean, report_head, save_png, stat, std, write_report
from mmrec_motor.quick_start import quick_start


def token_budget_runs(models: Sequence[str], datasets: Sequence[str], subspaces: Sequence[int],
                      nbits: Sequence[int], seeds: Sequence[int], id_baseline: bool) -> List[RunSpec]:
    specs = []
    for model in models:
        for dataset in datasets:
            if id_baseline:
                specs += [RunSpec(model, dataset, "id", s) for s in seeds]
            for m in subspaces:
                for b in nbits:
                    specs += [RunSpec(model, dataset, "motor", s, f"M{m}-b{b}",
                                      (("motor_num_subspaces", m), ("motor_nbits", b))) for s in seeds]
    return specs


EXPLANATION = " ".join("""
MOTOR runs over motor_num_subspaces M (tokens per item per modality) x motor_nbits (K = 2^nbits
codewords per sub-space). L: tokens per item over all modalities; item params: token tables + Token
Cross Network (the ID row: the item ID table); collisions: share of items whose token tuple another item
has, per modality (mean over the seeds' tokenizers); test Recall@{K} / NDCG@{K} at the best-valid epoch,
mean ± std (ddof=1) over seeds.
""".split())


def token_budget_report(out: str, specs: Sequence[RunSpec]) -> List[str]:
    """Write ``DIR/token_budget.md`` (and ``.png``) from the run JSONs; returns the paths."""
    lines = report_head(out, "Token budget: MOTOR's item-representation size vs accuracy",
                            EXPLANATION.format(K=K))
    plots = []
    for dataset in dict.fromkeys(r.dataset for r in specs):
        for model in dict.fromkeys(r.model for r in specs if r.dataset == dataset):
            groups: Dict[str, List[Dict[str, Any]]] = {}
            order: List[str] = []
            for spec in specs:
                if spec.dataset != dataset or spec.model != model:
                    continue
                if spec.tag not in order:
                    order.append(spec.tag)
                result = load_result(out, spec)
                if result is not None:
                    groups.setdefault(spec.tag, []).append(result)
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
                                  stat(recall), stat(ndcg), len(results)])
                    points.append(("ID", None, item["params"], mean(recall), std(recall)))
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
                              stat(recall), stat(ndcg), len(results)])
                points.append((tag, int(stats[mods[0]]["nbits"]), item["params"], mean(recall), std(recall)))
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
    return write_report(out, "token_budget", lines, specs, plots, _plot)


def _plot(plots, path: str) -> bool:
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

    return save_png(path, 1, len(plots), 5.5, 4.0, draw)


def _per_modality(values: Mapping[str, str]) -> str:
    """``"4"`` when every modality has that value, else ``"v 4 / t 8"`` (nbits may be lowered per
    modality when it has fewer items than codewords)."""
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    return " / ".join(f"{m} {v}" for m, v in values.items())


def _per_modality(values: Mapping[str, str]) -> str:
    """``"4"`` when every modality has that value, else ``"v 4 / t 8"`` (nbits may be lowered per
    modality when it has fewer items than codewords)."""
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    return " / ".join(f"{m} {v}" for m, v in values.items())


def run(args: Any, rest: List[str], argv: List[str]) -> int:
    """``mmrec-motor token-budget`` (its parser: :mod:`mmrec_motor.experiments.commands`)."""
    overrides = prepare_overrides(rest, "token-budget", ("motor_num_subspaces", "motor_nbits"))
    models, datasets = split_list(args.models, "-m"), split_list(args.datasets, "-d")
    subspaces, nbits = int_list(args.subspaces, "--subspaces", 1), int_list(args.nbits, "--nbits", 1)
    seeds = parse_seeds(args.seeds)
    variants = ["id", "motor"] if args.id_baseline else ["motor"]
    record("token-budget", argv, args.out, overrides, models, datasets, variants, seeds)
    specs = token_budget_runs(models, datasets, subspaces, nbits, seeds, args.id_baseline)
    outcome = run_all(specs, args.out, overrides, quick_start)
    return finish(outcome, token_budget_report(args.out, specs))
