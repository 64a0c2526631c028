"""Merge bench or analysis folders that ran side by side (one per model and seed, e.g. from
benchmarks/gpu_session.sh) into one folder, and write its reports.

    python benchmarks/merge_runs.py --kind cold-items OUT SRC [SRC ...] [--key=value ...]

``--kind`` is bench, cold-items, cold-start or token-budget. Copies every ``SRC/runs/*.json`` and
``SRC/topk/*.tsv`` into OUT (the same name with other content is an error), writes ``OUT/bench.json``
with the sources' command lines (and the first source's overrides), then the reports that the kind
writes: ``results.csv`` / ``summary.md`` and, for an analysis, its table. ``--key=value`` are config
overrides for loading the data where the report needs it (cold-items: ``--data_path=...``).
Runs that did not finish in a source (no JSON) are simply absent from the reports.
"""
import argparse
import filecmp
import glob
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mmrec_motor import analyses, benchmark  # noqa: E402
from mmrec_motor.config import parse_overrides  # noqa: E402


def copy_unique(source: str, target_dir: str) -> None:
    target = os.path.join(target_dir, os.path.basename(source))
    if os.path.exists(target) and not filecmp.cmp(source, target, shallow=False):
        raise SystemExit(f"{target} exists with other content than {source}; merge into an empty OUT")
    os.makedirs(target_dir, exist_ok=True)
    shutil.copyfile(source, target)


def merged_runs(out: str, kind: str) -> list:
    """The analysis Runs of every run JSON in OUT (token-budget names carry -M<m>-b<nbits>)."""
    runs = []
    for path in sorted(glob.glob(os.path.join(benchmark.runs_dir(out), "*.json"))):
        with open(path, encoding="utf-8") as handle:
            result = json.load(handle)
        spec = benchmark.RunSpec(result["model"], result["dataset"], benchmark.run_variant(result),
                                 benchmark.run_seed(result))
        tag = os.path.basename(path)[len(spec.name) + 1:-len(".json")] if kind == "token-budget" else ""
        extra = ()
        if tag:
            m, b = tag.split("-")
            extra = (("motor_num_subspaces", int(m[1:])), ("motor_nbits", int(b[1:])))
        runs.append(analyses.Run(spec, tag, extra))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", required=True, choices=["bench", "cold-items", "cold-start", "token-budget"])
    parser.add_argument("out")
    parser.add_argument("sources", nargs="+")
    args, rest = parser.parse_known_args()
    overrides = parse_overrides(rest)
    commands, first = [], None
    for source in args.sources:
        with open(os.path.join(source, "bench.json"), encoding="utf-8") as handle:
            record = json.load(handle)
        first = first or record
        commands += [c for c in record["commands"] if c not in commands]
        for path in glob.glob(os.path.join(benchmark.runs_dir(source), "*.json")):
            copy_unique(path, benchmark.runs_dir(args.out))
        for path in glob.glob(os.path.join(source, "topk", "*.tsv")):
            copy_unique(path, os.path.join(args.out, "topk"))
    benchmark.write_json_atomic(os.path.join(args.out, "bench.json"), {**first, "commands": commands})
    runs = merged_runs(args.out, args.kind)
    written = []
    if args.kind != "token-budget":
        written += list(benchmark.write_reports(args.out).values())
    if args.kind == "cold-items":
        written += analyses.cold_items_report(args.out, runs, overrides)
    elif args.kind == "cold-start":
        written += analyses.cold_start_report(args.out, runs)
    elif args.kind == "token-budget":
        written += analyses.token_budget_report(args.out, runs)
    print(f"{len(runs)} runs merged into {args.out}; wrote {', '.join(written)}")


if __name__ == "__main__":
    main()
