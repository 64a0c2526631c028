"""Rerun the lfm2k accuracy tables of docs/benchmarks.md in one command: the ID vs MOTOR bench of every
backbone, both sides tuned, the cold-item buckets, the inductive cold start and the token-budget sweep.

    python benchmarks/reproduce.py --jobs 2 --out runs/reproduce --data_path=../shared/data
    python benchmarks/reproduce.py --tables cold-items --models LGMRec --seeds 999 --jobs 2 ...
    python benchmarks/reproduce.py --dry-run ...        # print the commands, run nothing

Every run becomes one command (one table x model x variant x seed; a token-budget seed is one command
for its whole grid) with its own folder ``OUT/parts/<table>/<unit>`` and caches, so
``benchmarks/parallel.py`` runs them ``--jobs`` at a time, stopping at ``--deadline`` seconds. Then
``benchmarks/merge_runs.py`` merges each table's parts into ``OUT/<table>`` and writes its reports
(``summary.md``, ``cold_items.md``, ``cold_start.md``, ``token_budget.md``, with PNGs when matplotlib
is installed). The folders resume: rerunning the same command trains only the runs that are missing.

The settings are those of the published tables: each grid at its first value, MOTOR at its defaults,
except the keys of ``MODEL_KEYS`` for the dataset (lfm2k, and any dataset without its own entry:
BPR at ``reg_weight=1.0``, benchmarks.md §1; sports20: the settings of §21-§26). (GRCN's MOTOR runs
take ``motor_learning_rate=0.001`` from configs/model/GRCN.yaml.) ``--key=value`` arguments go to
every command (``--num_threads=1`` is the default here; ``--use_gpu=False``, ...). The sports20
cold-start table of §26 (held-out items scored as without the protocol):

    python benchmarks/reproduce.py --tables cold-start -d sports20 --seeds 999 \
        --models ContentKNN,POP,LightGCN,FREEDOM,BPR,VBPR,BM3,LATTICE,SLMRec,GRCN,MMGCN \
        --cold_item_test=own --jobs 2 --out runs/reproduce_s20 --data_path=../shared/data

The ``tuned`` table is the "tuned" columns of §24 (every backbone with an item table, ID against
MOTOR, three seeds): ``bench --protocol tuned --budget 3`` (each side 3 combinations, chosen on
validation), except the cells that §24 filled otherwise, which ``TUNED_ARGS`` writes out: on sports20
BPR and VBPR over ``reg_weight`` 1e-2, 1e-3, 1e-4 (§21), GRCN at a learning rate of 1e-3 on both sides
(§20, §23), LATTICE at that rate with 2 combinations a side (§31, §32: ``reg_weight`` 0 and 1e-3 for
the ID side, MOTOR's defaults and, at its better point, LATTICE.yaml's second combination, own fine
cells for the items with >= 11 training interactions, §35; the same on lfm2k, where a NaN loss stops a
run as in MMRec); on lfm2k SLMRec and MGCN with ``--motor-search paired`` (§26, §27),
and GRCN at (``reg_weight``, ``learning_rate``) = (1e-3, 1e-2), MOTOR without fine cells there (§29).
BM3 on lfm2k runs the protocol with a budget of 3 (§24's cell is a budget of 2 on one seed, then its
choice on three); BM3.yaml's grid gives MOTOR's first combination own fine cells since §36. On
sports20, MGCN and LGMRec need image features and fail with that error; leave them out with
``--models``:

    python benchmarks/reproduce.py --tables tuned -d sports20 \
        --models LightGCN,SLMRec,BPR,VBPR,FREEDOM,BM3,LATTICE,MMGCN,GRCN --jobs 2 --out runs/tuned_s20 ...

Its summary gives each cell's paired t-test over the seeds and the interval of the change over the
test users.
Five sports20 cells of §24 are over six seeds (LightGCN, FREEDOM, BM3, LATTICE, GRCN: §32, §33 add
seeds 1002-1004 to the same commands); ``--seeds 999,1000,1001,1002,1003,1004`` runs those (LATTICE's:
nine, 999-1007, §35; BM3's with own cells: 1002-1007, §36).
"""
import argparse
import os
import shlex
import subprocess
import sys
from typing import Dict, List, Sequence, Tuple, Union

from mmrec_motor.config import ConfigError, available_models
from mmrec_motor.experiments.plan import parse_seeds, split_list
from mmrec_motor.motor.adapters import RefusedAdapter, registered_adapters

HERE = os.path.dirname(os.path.abspath(__file__))


def variants_of(model: str) -> List[str]:
    """id and motor, or id alone for a backbone without an item ID table (DualGNN, DRAGON)."""
    refused = isinstance(registered_adapters().get(model), RefusedAdapter)
    return ["id"] if refused else ["id", "motor"]


TABLES = ("bench", "tuned", "cold-items", "cold-start", "token-budget")
# each table's models and seeds (docs/benchmarks.md; LGMRec's cold items there have 5 seeds)
# the 13 backbones of §12 (the untrained baselines POP and ContentKNN are not in those tables)
BASELINES = ("POP", "ContentKNN")
DEFAULT_MODELS = {
    "bench": [m for m in available_models() if m not in BASELINES],
    "tuned": [m for m in available_models() if m not in BASELINES and variants_of(m) == ["id", "motor"]],
    "cold-items": ["FREEDOM", "BM3", "LGMRec"],
    "cold-start": ["FREEDOM", "BM3", "LGMRec"],
    "token-budget": ["FREEDOM"],
}
DEFAULT_SEEDS = {
    "bench": [999, 1000, 1001, 1002, 1003],
    "tuned": [999, 1000, 1001],
    "cold-items": [999, 1000, 1001],
    "cold-start": [999, 1000, 1001],
    "token-budget": [999, 1000, 1001],
}
# the table's own arguments after -m ... --seeds ...
TABLE_ARGS = {
    "bench": [],
    "tuned": ["--protocol", "tuned", "--budget", "3"],
    "cold-items": [],
    "cold-start": ["--ratio", "0.1"],
    "token-budget": ["--subspaces", "2,4,8", "--nbits", "4,6,8", "--id-baseline"],
}
# per dataset, config keys of one model in every table (where the published tables left the model's
# yaml): on lfm2k BPR at reg_weight 1.0 (§1); on sports20 (§21-§26) BPR and VBPR at 1e-2 (their first
# grid value, 2.0, ranks below most-popular there) and LATTICE and GRCN at a learning rate of 1e-3
# (their grids' first rates barely train them there, §20); any other dataset takes lfm2k's
MODEL_KEYS: Dict[str, Dict[str, Dict[str, str]]] = {
    "lfm2k": {"BPR": {"reg_weight": "1.0"}},
    "sports20": {"BPR": {"reg_weight": "0.01"}, "VBPR": {"reg_weight": "0.01"},
                 "LATTICE": {"learning_rate": "0.001"}, "GRCN": {"learning_rate": "0.001"}},
}


# the tuned table's cells that §24 filled otherwise than with TABLE_ARGS["tuned"] (module docstring):
# per dataset and model, the arguments that replace TABLE_ARGS and MODEL_KEYS, or per variant
_PAIRED = TABLE_ARGS["tuned"] + ["--motor-search", "paired"]
# LATTICE at a learning rate of 1e-3, 2 combinations a side (§31, §32, §35); on lfm2k, seed 999's MOTOR
# defaults end at a NaN loss at epoch 110, so there MMRec's rule (stop, keep the best epoch) applies
_LATTICE = ["--protocol", "tuned", "--budget", "2", "--learning_rate=0.001"]
TUNED_ARGS: Dict[str, Dict[str, Union[List[str], Dict[str, List[str]]]]] = {
    "sports20": {"BPR": TABLE_ARGS["tuned"] + ["--reg_weight=[1e-2,1e-3,1e-4]"],
                 "VBPR": TABLE_ARGS["tuned"] + ["--reg_weight=[1e-2,1e-3,1e-4]"],
                 "GRCN": ["--learning_rate=0.001"], "LATTICE": _LATTICE},
    "lfm2k": {"SLMRec": _PAIRED, "MGCN": _PAIRED, "LATTICE": _LATTICE + ["--nan_loss=stop"],
              "GRCN": {"id": ["--reg_weight=0.001", "--learning_rate=0.01"],
                       "motor": ["--reg_weight=0.001", "--learning_rate=0.01", "--motor_fine_nbits=null"]}},
}


def command_of(table: str) -> str:
    """The ``mmrec-motor`` command that runs ``table`` (and the ``merge_runs.py --kind`` of its parts):
    the tuned table is a bench folder."""
    return "bench" if table == "tuned" else table


def table_args(table: str, model: str, variant: str, dataset: str) -> List[str]:
    """The arguments of one run after its seeds and variant: the table's own and the model's keys for
    the dataset (``TUNED_ARGS`` for the tuned table, ``MODEL_KEYS`` for the others)."""
    if table == "tuned":
        cell = TUNED_ARGS.get(dataset, {}).get(model, TABLE_ARGS["tuned"])
        return list(cell[variant] if isinstance(cell, dict) else cell)
    keys = MODEL_KEYS.get(dataset, MODEL_KEYS["lfm2k"]).get(model, {})
    return TABLE_ARGS[table] + [f"--{k}={v}" for k, v in keys.items()]


def unit_command(table: str, model: str, variant: str, seed: int, dataset: str, out: str,
                 overrides: Sequence[str]) -> Tuple[str, str]:
    """(unit name, shell command) of one run, or of one seed's grid for token-budget (variant "all")."""
    unit = f"{model}-{variant}-{seed}"
    part = os.path.join(out, "parts", table, unit)
    cache = os.path.join(out, "cache", table, unit)
    argv = ["mmrec-motor", command_of(table), "-m", model, "-d", dataset, "--seeds", str(seed)]
    if table != "token-budget":
        argv += ["--variants", variant]
    argv += table_args(table, model, variant, dataset) + list(overrides)
    argv += [f"--graph_cache_dir={cache}/graph", f"--motor_cache_dir={cache}/motor", "--out", part]
    return unit, shlex.join(argv)


def plan(tables: Sequence[str], models: Dict[str, List[str]], seeds: Dict[str, List[int]], dataset: str,
         out: str, overrides: Sequence[str]) -> List[Tuple[str, str, str]]:
    """[(table, unit, command)] in run order: the tables in the order given, then seed, model, variant
    (so a deadline leaves whole seeds rather than whole models missing)."""
    commands = []
    for table in tables:
        for seed in seeds[table]:
            for model in models[table]:
                variants = ["all"] if table == "token-budget" else variants_of(model)
                for variant in variants:
                    unit, command = unit_command(table, model, variant, seed, dataset, out, overrides)
                    commands.append((table, unit, command))
    return commands


def main(argv: Sequence[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--tables", default=",".join(TABLES), help=f"some of {','.join(TABLES)} (default all)")
    parser.add_argument("--models", default=None, help="these backbones in every table (default: the tables')")
    parser.add_argument("--seeds", default=None, help="these seeds for every table (default: the tables')")
    parser.add_argument("-d", "--dataset", default="lfm2k")
    parser.add_argument("--out", default="runs/reproduce")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--deadline", type=float, default=None, help="seconds; then what still runs is stopped")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and run nothing")
    args, rest = parser.parse_known_args(argv)
    bad = [a for a in rest if not (a.startswith("--") and "=" in a)]
    if bad:
        parser.error(f"expected --key=value config overrides after the options, got {' '.join(bad)}")
    if not any(a.startswith("--num_threads=") for a in rest):
        rest = ["--num_threads=1"] + rest
    try:
        tables = split_list(args.tables, "--tables")
        chosen = split_list(args.models, "--models") if args.models else None
        seeds = parse_seeds(args.seeds) if args.seeds else None
    except ConfigError as exc:
        parser.error(str(exc))
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        parser.error(f"--tables: unknown {', '.join(unknown)}; expected some of {', '.join(TABLES)}")
    missing = [m for m in chosen or [] if m not in available_models()]
    if missing:
        parser.error(f"--models: unknown {', '.join(missing)}; available: {', '.join(available_models())}")
    models = {t: chosen or DEFAULT_MODELS[t] for t in tables}
    seeds = {t: seeds or DEFAULT_SEEDS[t] for t in tables}
    commands = plan(tables, models, seeds, args.dataset, args.out, rest)
    if args.dry_run:
        print("\n".join(command for _, _, command in commands))
        return 0
    os.makedirs(args.out, exist_ok=True)
    tasks = os.path.join(args.out, "tasks.txt")
    with open(tasks, "w", encoding="utf-8") as handle:
        handle.write("".join(command + "\n" for _, _, command in commands))
    parallel = [sys.executable, os.path.join(HERE, "parallel.py"), tasks, "--jobs", str(args.jobs),
                "--logs", os.path.join(args.out, "logs")]
    if args.deadline is not None:
        parallel += ["--deadline", str(args.deadline)]
    status = subprocess.call(parallel)
    data_keys = [a for a in rest if a.split("=", 1)[0] in ("--data_path", "--use_gpu")]
    for table in tables:
        folder = os.path.join(args.out, "parts", table)
        units = [os.path.join(folder, unit) for t, unit, _ in commands if t == table]
        sources = [u for u in units if os.path.isfile(os.path.join(u, "bench.json"))]
        if not sources:
            print(f"{table}: no finished part to merge", flush=True)
            status = status or 1
            continue
        merge = [sys.executable, os.path.join(HERE, "merge_runs.py"), "--kind", command_of(table),
                 os.path.join(args.out, table), *sources, *data_keys]
        status = subprocess.call(merge) or status
    return status


if __name__ == "__main__":
    sys.exit(main())
