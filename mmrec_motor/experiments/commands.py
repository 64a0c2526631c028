"""The command lines of ``bench``, ``report`` and the analyses (``cold-items``, ``token-budget``,
``cold-start``): each command's parser, then the module that runs it.

The parsers import nothing but argparse, and the module that runs a command (with torch, pandas and
the runtime behind it) is imported only once its arguments are parsed, so that ``--help`` answers at
once (``tests/test_first_minutes.py``). Each ``<command>_main(argv)`` is what ``mmrec_motor.cli``
calls; it hands ``(args, rest, argv)`` to ``run`` of its module (``rest``: the ``--key=value``
overrides).
"""
from __future__ import annotations

import argparse
import importlib
from typing import Callable, List

DEFAULT_BUCKETS = 5     # cold-items: quantile buckets when --buckets is not given


def parser(name: str, description: str, variants: bool = True) -> argparse.ArgumentParser:
    """The parser of ``mmrec-motor <name>`` with the arguments bench and every analysis take (-m, -d,
    --seeds, --variants unless ``variants`` is False, --out)."""
    cli = argparse.ArgumentParser(prog=f"mmrec-motor {name}", allow_abbrev=False, description=description,
                                  epilog="--key=value overrides any config key of every run (see "
                                         "mmrec-motor run --help)")
    cli.add_argument("-m", "--models", required=True, help="comma-separated backbones")
    cli.add_argument("-d", "--datasets", required=True, help="comma-separated datasets")
    cli.add_argument("--seeds", default="999", help="comma-separated seeds (default 999)")
    if variants:
        cli.add_argument("--variants", default="id,motor", help="id, motor or id,motor (default)")
    cli.add_argument("--out", required=True, help="the folder of the runs, logs and reports")
    return cli


def add_protocol(cli: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--protocol, --budget and --motor-search (bench, cold-items, cold-start)."""
    cli.add_argument("--protocol", choices=("defaults", "tuned"), default="defaults",
                     help="defaults: each grid key at its first value (and MOTOR's defaults); tuned: each "
                          "side trains --budget combinations and reports its best on validation "
                          "(mmrec_motor/experiments/tuning.py)")
    cli.add_argument("--budget", type=int, default=4, help="combinations per side with --protocol tuned "
                                                          "(default 4)")
    cli.add_argument("--motor-search", dest="motor_search", choices=("staged", "paired"), default="staged",
                     help="how the MOTOR side of --protocol tuned spends its budget: staged (the default: the "
                          "backbone points with MOTOR's defaults first, then the best of them with MOTOR's other "
                          "combinations) or paired (the k-th backbone point with MOTOR's k-th own combination, "
                          "the protocol before 2026-12-03's fifth session)")
    return cli


def bench_parser() -> argparse.ArgumentParser:
    return add_protocol(parser("bench", "ID vs MOTOR over models x datasets x seeds (resumable)."))


def report_parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="mmrec-motor report",
                                  description="Rebuild results.csv and summary.md of a bench folder.")
    cli.add_argument("out", help="the bench folder (its runs/ holds the run JSONs)")
    return cli


def cold_items_parser() -> argparse.ArgumentParser:
    cli = parser("cold-items", "ID vs MOTOR test metrics by the items' training counts.")
    cli.add_argument("--buckets", default=None,
                     help="bucket edges on the item's training interactions, e.g. 0,5,10,20,50 "
                          "([0,5), [5,10), ..., [50,inf)); default: quantile edges")
    cli.add_argument("--n-buckets", type=int, default=DEFAULT_BUCKETS,
                     help=f"number of quantile buckets without --buckets (default {DEFAULT_BUCKETS})")
    return add_protocol(cli)


def token_budget_parser() -> argparse.ArgumentParser:
    cli = parser("token-budget", "MOTOR over sub-spaces x nbits: item parameters vs accuracy.", variants=False)
    cli.add_argument("--subspaces", default="2,4,8", help="motor_num_subspaces values (default 2,4,8)")
    cli.add_argument("--nbits", default="4,6,8", help="motor_nbits values (default 4,6,8)")
    cli.add_argument("--id-baseline", action="store_true", help="also run the ID variant (a reference row)")
    return cli


def cold_start_parser() -> argparse.ArgumentParser:
    cli = parser("cold-start", "ID vs MOTOR on items held out of training.")
    cli.add_argument("--ratio", type=float, default=0.1,
                     help="cold_item_ratio: share of the interacted items held out (default 0.1)")
    return add_protocol(cli)


def _command(make_parser: Callable[[], argparse.ArgumentParser], module: str,
             known_only: bool = False) -> Callable[[List[str]], int]:
    def main(argv: List[str]) -> int:
        cli = make_parser()
        if known_only:
            args, rest = cli.parse_args(argv), []
        else:
            args, rest = cli.parse_known_args(argv)
        return importlib.import_module(f"mmrec_motor.experiments.{module}").run(args, rest, argv)
    return main


bench_main = _command(bench_parser, "bench")
report_main = _command(report_parser, "report", known_only=True)
cold_items_main = _command(cold_items_parser, "cold_items")
token_budget_main = _command(token_budget_parser, "token_budget")
cold_start_main = _command(cold_start_parser, "cold_start")
