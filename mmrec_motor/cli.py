"""The ``mmrec-motor`` command.

    mmrec-motor run -m MODEL -d DATASET [--motor] [--key=value ...]     train and evaluate (main.py)
    mmrec-motor tokenize -d DATASET [--neighbours N] [--key=value ...]  MOTOR's tokens and statistics

Every ``--key=value`` overrides that config key, the value parsed as YAML (``--epochs=5``,
``--seed=[1,2,3]``, ``--use_gpu=False``); ``--motor`` alone means ``--motor=True``.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import List, Optional

from mmrec_motor.config import Config, ConfigError, available_datasets, available_models, parse_overrides
from mmrec_motor.data.dataset import DataError
from mmrec_motor.trainer import TrainingError

USER_ERRORS = (ConfigError, DataError, TrainingError, ValueError, FileNotFoundError)


def _run(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="mmrec-motor run", description="Train and evaluate a backbone.")
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

    load_data(config)  # validates the folder (and generates toy)
    print(tokenize_dataset(config, neighbours=args.neighbours, text_file=args.text_file))
    return 0


COMMANDS = {"run": _run, "tokenize": _tokenize}


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {argv[0]!r}; expected one of {', '.join(COMMANDS)}",
                  file=sys.stderr)
            return 2
        return 0
    warnings.simplefilter("default")
    warnings.formatwarning = lambda message, category, *rest: f"warning: {message}\n"
    try:
        return COMMANDS[argv[0]](argv[1:])
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
