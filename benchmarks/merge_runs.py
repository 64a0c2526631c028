"""Merge bench or analysis folders that ran side by side (one per model and seed, e.g. from
benchmarks/gpu_session.sh) into one folder, and write its reports.

    python benchmarks/merge_runs.py --kind cold-items OUT SRC [SRC ...] [--key=value ...]

``--kind`` is bench, cold-items, cold-start or token-budget. Copies every ``SRC/runs/*.json``,
``SRC/topk/*.tsv`` and ``SRC/users/*.npz`` into OUT (the same name with other content is an error),
writes ``OUT/bench.json`` with the sources' command lines (and the first source's overrides), then
the reports that the kind writes: ``results.csv`` / ``summary.md`` and, for an analysis, its table.
``--key=value`` are config overrides for loading the data where the report needs it (cold-items:
``--data_path=...``).
Runs that did not finish in a source (no JSON) are simply absent from the reports.
"""
import argparse
import filecmp
import glob
import os
import shutil

from mmrec_motor.config import parse_overrides
from mmrec_motor.experiments import cold_items, cold_start, token_budget
from mmrec_motor.experiments.report import write_reports
from mmrec_motor.experiments.store import runs_dir, spec_of
from mmrec_motor.fileio import read_json, write_json


def copy_unique(source: str, target_dir: str) -> None:
    target = os.path.join(target_dir, os.path.basename(source))
    if os.path.exists(target) and not filecmp.cmp(source, target, shallow=False):
        raise SystemExit(f"{target} exists with other content than {source}; merge into an empty OUT")
    os.makedirs(target_dir, exist_ok=True)
    shutil.copyfile(source, target)


def merged_runs(out: str, kind: str) -> list:
    """The RunSpecs of every run JSON in OUT (token-budget names carry -M<m>-b<nbits>)."""
    paths = sorted(glob.glob(os.path.join(runs_dir(out), "*.json")))
    return [spec_of(read_json(path), os.path.basename(path)[:-len(".json")] if kind == "token-budget" else "")
            for path in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", required=True, choices=["bench", "cold-items", "cold-start", "token-budget"])
    parser.add_argument("out")
    parser.add_argument("sources", nargs="+")
    args, rest = parser.parse_known_args()
    overrides = parse_overrides(rest)
    commands, first = [], None
    for source in args.sources:
        record = read_json(os.path.join(source, "bench.json"))
        first = first or record
        commands += [c for c in record["commands"] if c not in commands]
        for path in glob.glob(os.path.join(runs_dir(source), "*.json")):
            copy_unique(path, runs_dir(args.out))
        for folder, pattern in (("topk", "*.tsv"), ("users", "*.npz")):
            for path in glob.glob(os.path.join(source, folder, pattern)):
                copy_unique(path, os.path.join(args.out, folder))
    write_json(os.path.join(args.out, "bench.json"), {**first, "commands": commands})
    runs = merged_runs(args.out, args.kind)
    written = []
    if args.kind != "token-budget":
        written += list(write_reports(args.out).values())
    if args.kind == "cold-items":
        written += cold_items.cold_items_report(args.out, runs, overrides)
    elif args.kind == "cold-start":
        written += cold_start.cold_start_report(args.out, runs)
    elif args.kind == "token-budget":
        written += token_budget.token_budget_report(args.out, runs)
    print(f"{len(runs)} runs merged into {args.out}; wrote {', '.join(written)}")


if __name__ == "__main__":
    main()
