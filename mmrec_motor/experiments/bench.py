"""``mmrec-motor bench`` and ``mmrec-motor report``: a whole ID-vs-MOTOR benchmark in one folder.

    mmrec-motor bench -m FREEDOM,BPR -d lfm2k,toy --seeds 999,1000,1001 [--variants id,motor] \
        [--protocol defaults|tuned] [--budget 4] [--key=value ...] --out DIR
    mmrec-motor report DIR

``bench`` runs every model x dataset x variant x seed as its own runtime run into the run store
(:mod:`~mmrec_motor.experiments.store`; each grid key but seed at its first value,
:mod:`~mmrec_motor.experiments.plan`) through the runner (resumable, a failed run does not stop the
others), then writes the bench report (``results.csv``, ``summary.md``,
:mod:`~mmrec_motor.experiments.report`), which ``report DIR`` rebuilds from the run JSONs alone.
"""
from __future__ import annotations

import argparse
import os
import shlex
from typing import Any, Dict, List, Mapping

import numpy as np

from mmrec_motor.config import Config
from mmrec_motor.data.dataset import dataset_dir
from mmrec_motor.data.loader import load_data
from mmrec_motor.experiments.plan import (first_grid_values, parse_seeds, parse_variants, plan,
                                          prepare_overrides, split_list, trains, tuned_plan)
from mmrec_motor.experiments.report import write_reports
from mmrec_motor.experiments.runner import finish, run_protocol
from mmrec_motor.experiments.store import VARIANTS, record_bench
from mmrec_motor.quick_start import quick_start


def run(args: argparse.Namespace, rest: List[str], argv: List[str]) -> int:
    """``mmrec-motor bench`` (its parser: :mod:`mmrec_motor.experiments.commands`)."""
    overrides = prepare_overrides(rest, "bench", own_keys=("tuning_budget", "tuning_combination"))
    models, datasets = split_list(args.models, "-m"), split_list(args.datasets, "-d")
    variants, seeds = parse_variants(args.variants), parse_seeds(args.seeds)
    record_bench(args.out, shlex.join(["mmrec-motor", "bench", *argv]), models, datasets, variants, seeds,
                 overrides)
    if args.protocol == "tuned":
        specs = tuned_plan(models, datasets, variants, seeds, args.budget, overrides, args.motor_search)
    else:
        specs = [s for s in plan(models, datasets, variants, seeds) if s.variant == "id" or trains(s.model, s.dataset)]
    _, outcome = run_protocol(args, specs, overrides, quick_start)
    paths = write_reports(args.out)
    return finish(outcome, [paths["csv"], paths["summary"]], prefix="reports:")


def run_one(model: str, dataset: str, variant: str, seed: int, overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """Train and evaluate one run outside a run folder (benchmarks/accuracy.py, speed.py): each grid
    key but seed at its first value, ``overrides`` as given; returns quick_start's result dict."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be 'id' or 'motor', got {variant!r}")
    values = first_grid_values(model, dataset, overrides)
    values.update({"seed": seed, "motor": variant == "motor"})
    return quick_start(Config(model, dataset, values))


def script_parser(dataset: str) -> argparse.ArgumentParser:
    """The arguments of the side-by-side scripts (benchmarks/accuracy.py, speed.py): --models,
    --dataset (default ``dataset``), --data_path, --variants."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="FREEDOM,BPR")
    parser.add_argument("--dataset", default=dataset)
    parser.add_argument("--data_path", default="../shared/data")
    parser.add_argument("--variants", default="id,motor")
    return parser


def scratch_overrides(scratch: str) -> Dict[str, Any]:
    """Logs and best checkpoints of a script's runs in ``scratch``; no periodic checkpoints, quiet."""
    return {"log_dir": os.path.join(scratch, "log"), "checkpoint_dir": os.path.join(scratch, "saved"),
            "checkpoint_every": 0, "verbose": False}


def random_feature_copy(dataset: str, data_path: str, scratch: str, seed: int = 0) -> Dict[str, str]:
    """A copy of ``dataset`` under ``scratch`` for speed and memory runs (never for accuracy): its
    real ``.inter`` (linked) with random features of the real widths, image [n_items, 4096] and
    text [n_items, 384]. Returns the overrides that point a run at the copy."""
    source = Config("BPR", dataset, {"data_path": data_path})
    n_items = load_data(source).n_items              # generates toy on first use
    folder = os.path.join(scratch, dataset)
    os.makedirs(folder, exist_ok=True)
    inter = os.path.join(dataset_dir(source), source["inter_file_name"])
    link = os.path.join(folder, os.path.basename(inter))
    if not os.path.exists(link):
        os.symlink(os.path.abspath(inter), link)
    rng = np.random.default_rng(seed)
    files = {"vision_feature_file": ("image_feat.npy", 4096), "text_feature_file": ("text_feat.npy", 384)}
    for name, width in files.values():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            np.save(path, rng.standard_normal((n_items, width), dtype=np.float32))
    return {"data_path": scratch, **{key: name for key, (name, _) in files.items()}}
