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
        analyses (mmrec_motor/experiments/): runs as bench, then DIR/<analysis>.md (and .png)
    mmrec-motor patch PATH_TO_MMREC [--check | --revert]
        apply (check, take out) the patch series that runs MOTOR inside upstream MMRec (--motor)

Every ``--key=value`` overrides that config key, the value parsed as YAML (``--epochs=5``,
``--seed=[1,2,3]``, ``--use_gpu=False``); ``--motor`` alone means ``--motor=True``. Every command
answers ``--help``.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import sys
import warnings
from typing import Callable, Dict, List, Optional, Tuple, Union

# Only what the help texts need is imported here: torch, faiss, pandas load when a command runs, so
# that ``--help`` answers in well under a second (tests/test_first_minutes.py); the commands of other
# modules parse their arguments before they import anything heavy (mmrec_motor.experiments.commands).
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
  --user_metrics_file=F  .npz: the chosen run's valid and test metrics per user
  --resume=True          continue each combination from its last checkpoint in checkpoint_dir
  --num_threads=N        torch's CPU threads (default: the cores free now)
  --verbose=True         every metric of every epoch (default: one line per epoch; False: none)
  --grid=full            the whole grid where the dataset yaml runs one combination (toy)
  --key=value            any other key: --learning_rate=1e-3 --seed=[1,2,3] --use_gpu=False

outputs: the log in log/ (log_dir), the best checkpoint of each combination in saved/
(checkpoint_dir), --result_file, --topk_file and --user_metrics_file where you say."""


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
    from mmrec_motor.data.loader import load_data
    from mmrec_motor.motor.dataset_report import tokenize_dataset
    from mmrec_motor.threads import apply_threads

    print(apply_threads(config["num_threads"]), file=sys.stderr)

    load_data(config)  # validates the folder (and generates toy)
    print(tokenize_dataset(config, neighbours=args.neighbours, text_file=args.text_file))
    return 0


# The commands; those of other modules are named "module:function" and imported when they run (bench,
# report and the analyses parse their arguments first: mmrec_motor.experiments.commands).
COMMANDS: Dict[str, Union[Callable[[List[str]], int], str]] = {
    "run": _run,
    "tokenize": _tokenize,
    "bench": "mmrec_motor.experiments.commands:bench_main",
    "report": "mmrec_motor.experiments.commands:report_main",
    "patch": "mmrec_motor.upstream:patch_command",
    "cold-items": "mmrec_motor.experiments.commands:cold_items_main",
    "token-budget": "mmrec_motor.experiments.commands:token_budget_main",
    "cold-start": "mmrec_motor.experiments.commands:cold_start_main",
}


def command(name: str) -> Callable[[List[str]], int]:
    """The function of command ``name``."""
    target = COMMANDS[name]
    if callable(target):
        return target
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


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
        return command(argv[0])(argv[1:])
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
