"""The ``mmrec-motor`` command.

    mmrec-motor run -m MODEL -d DATASET [--motor] [--key=value ...]     train and evaluate (main.py);
        run --help lists the common keys
    mmrec-motor tokenize -d DATASET [--neighbours N] [--key=value ...]  MOTOR's tokens and statistics
    mmrec-motor bench -m M1,M2 -d D1,D2 --seeds S1,S2 [--variants id,motor] [--key=value ...] --out DIR
        one run per model x dataset x variant x seed (resumable), then DIR/results.csv, DIR/summary.md
    mmrec-motor report DIR
        rebuild DIR/results.csv and DIR/summary.md from the run JSONs in DIR/runs
    mmrec-motor cold-items -m M1,M2 -d D --seeds S [--buckets 0,5,10,20,50] [--key=value ...] --out DIR
    mmrec-motor token-budget -m M -d D --subspaces 2,4,8 --nbits 4,6,8 --seeds S [--key=value ...] --out DIR
    mmrec-motor cold-start -m M1,M2 -d D --ratio 0.1 --seeds S [--key=value ...] --out DIR
        analyses (mmrec_motor/analyses.py): runs as bench, then DIR/<analysis>.md (and .png)
    mmrec-motor patch PATH_TO_MMREC [--check | --revert]
        apply (check, take out) the patch series that runs MOTOR inside upstream MMRec (--motor)

Every ``--key=value`` overrides that config key, the value parsed as YAML (``--epochs=5``,
``--seed=[1,2,3]``, ``--use_gpu=False``); ``--motor`` alone means ``--motor=True``.
"""
from __future__ import annotations

import argparse
import errno
import sys
import warnings
from typing import List, Optional, Tuple

# Only what the help texts need is imported here: torch, faiss, pandas load when a command runs,
# so that ``--help`` answers in well under a second (tests/test_first_minutes.py).
from mmrec_motor.config import Config, ConfigError, available_datasets, available_models, parse_overrides


def user_errors() -> Tuple[type, ...]:
    """Problems the user can fix; each message names the file or key and what was expected. They exit
    2 with "error: ..." on stderr and no traceback. (Looked up among the loaded modules only: they
    load torch.)"""
    errors = [ConfigError, ValueError, FileNotFoundError]
    for module, name in (("mmrec_motor.data.dataset", "DataError"), ("mmrec_motor.resources", "ResourceError"),
                         ("mmrec_motor.trainer", "TrainingError")):
        if module in sys.modules:          # an error of a module never loaded cannot have been raised
            errors.append(getattr(sys.modules[module], name))
    return tuple(errors)


RUN_KEYS = """\
common keys (every key of configs/*.yaml is --key=value, the value read as YAML):
  --motor                MOTOR's tokens replace the item ID table (keys: configs/model/MOTOR.yaml)
  --data_path=DIR        the folder that holds DATASET/ (default data/; real data: ../shared/data)
  --epochs=N             at most N epochs per combination (early stopping on valid_metric)
  --result_file=FILE     JSON: every combination's parameters and metrics, and the chosen one
  --topk_file=FILE       TSV: the chosen run's test top-50 per user
  --resume=True          continue each combination from its last checkpoint in checkpoint_dir
  --num_threads=N        torch's CPU threads (default: the cores free now)
  --verbose=True         every metric of every epoch (default: one line per epoch; False: none)
  --grid=full            the whole grid where the dataset yaml runs one combination (toy)
  --key=value            any other key: --learning_rate=1e-3 --seed=[1,2,3] --use_gpu=False

outputs: the log in log/ (log_dir), the best checkpoint of each combination in saved/
(checkpoint_dir), --result_file and --topk_file where you say."""


def _run(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="mmrec-motor run", epilog=RUN_KEYS,
                                     usage="mmrec-motor run [-h] [-m MODEL] [-d DATASET] [--key=value ...]",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Train and evaluate a backbone (python main.py ... is the "
                                                 "same).")
    parser.add_argument("-m", "--model", default="FREEDOM", help=f"one of {', '.join(available_models())}")
    parser.add_argument("-d", "--dataset", default="toy",
                        help=f"one of {', '.join(available_datasets())}, or a folder under data_path")
    args, rest = parser.parse_known_args(argv)
    overrides = parse_overrides(rest)
    config = Config(args.model, args.dataset, overrides)
    from mmrec_motor.quick_start import quick_start

    quick_start(config)
    return 0


def _tokenize(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="mmrec-motor tokenize",
                                     description="Tokenize a dataset's item features (fills the cache).")
    parser.add_argument("-d", "--dataset", default="toy")
    parser.add_argument("-m", "--model", default="FREEDOM", help="backbone whose yaml may override motor_* keys")
    parser.add_argument("--neighbours", type=int, default=0,
                        help="for a few random items, list the N items sharing most tokens with them")
    parser.add_argument("--text_file", default=None, help="a TSV of item texts, row i = item i")
    args, rest = parser.parse_known_args(argv)
    config = Config(args.model, args.dataset, parse_overrides(rest))
    from mmrec_motor.motor import tokenize_dataset
    from mmrec_motor.quick_start import load_data
    from mmrec_motor.threads import apply_threads

    print(apply_threads(config["num_threads"]), file=sys.stderr)

    load_data(config)  # validates the folder (and generates toy)
    print(tokenize_dataset(config, neighbours=args.neighbours, text_file=args.text_file))
    return 0


def _bench(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="mmrec-motor bench", allow_abbrev=False,
                                     description="ID vs MOTOR over models x datasets x seeds (resumable).")
    parser.add_argument("-m", "--models", required=True, help="comma-separated backbones")
    parser.add_argument("-d", "--datasets", required=True, help="comma-separated datasets")
    parser.add_argument("--seeds", default="999", help="comma-separated seeds (default 999)")
    parser.add_argument("--variants", default="id,motor", help="id, motor or id,motor (default)")
    parser.add_argument("--out", required=True, help="the bench folder (runs, logs, reports)")
    args, rest = parser.parse_known_args(argv)
    from mmrec_motor import benchmark

    overrides = parse_overrides(rest)
    benchmark.check_overrides(overrides)
    models, datasets = benchmark.split_list(args.models, "-m"), benchmark.split_list(args.datasets, "-d")
    variants, seeds = benchmark.parse_variants(args.variants), benchmark.parse_seeds(args.seeds)
    benchmark.record_bench(args.out, benchmark.bench_command(argv), models, datasets, variants, seeds, overrides)
    outcome = benchmark.run_bench(benchmark.plan(models, datasets, variants, seeds), args.out, overrides)
    paths = benchmark.write_reports(args.out)
    print(f"{len(outcome['ran'])} run(s) done, {len(outcome['skipped'])} skipped (already done), "
          f"{len(outcome['failed'])} failed; reports: {paths['csv']}, {paths['summary']}", file=sys.stderr)
    for name, message in outcome["failed"].items():
        print(f"FAILED {name}: {message.splitlines()[0]}", file=sys.stderr)
    return 1 if outcome["failed"] else 0


def _report(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="mmrec-motor report",
                                     description="Rebuild results.csv and summary.md of a bench folder.")
    parser.add_argument("out", help="the bench folder (its runs/ holds the run JSONs)")
    args = parser.parse_args(argv)
    from mmrec_motor.benchmark import write_reports

    paths = write_reports(args.out)
    print(f"wrote {paths['csv']} and {paths['summary']}")
    return 0


def _patch(argv: List[str]) -> int:
    from mmrec_motor.upstream import patch_command

    return patch_command(argv)


COMMANDS = {"run": _run, "tokenize": _tokenize, "bench": _bench, "report": _report, "patch": _patch}


def _analysis(name: str):
    def command(argv: List[str]) -> int:
        from mmrec_motor.analyses import COMMANDS as ANALYSES

        return ANALYSES[name](argv)
    return command


COMMANDS.update({name: _analysis(name) for name in ("cold-items", "token-budget", "cold-start")})


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {argv[0]!r}; expected one of {', '.join(COMMANDS)}",
                  file=sys.stderr)
            return 2
        return 0
    from mmrec_motor.threads import prefer_passive_wait

    prefer_passive_wait()           # before torch or faiss is loaded (mmrec_motor/threads.py)
    warnings.simplefilter("default")
    warnings.formatwarning = lambda message, category, *rest: f"warning: {message}\n"
    try:
        return COMMANDS[argv[0]](argv[1:])
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS:
            print(f"error: cannot read or write a file: {exc}", file=sys.stderr)
            return 2
        if not isinstance(exc, user_errors()):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


# The machine, not the code: a full disk or quota, a read-only file system, no permission, an I/O
# error. Such an OSError exits 2 with its message (which names the file), not a traceback.
_ENVIRONMENT_ERRNOS = {getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EIO")
                       if hasattr(errno, name)}
