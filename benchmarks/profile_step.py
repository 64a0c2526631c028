"""Where one backbone's training step spends its time: torch's profiler over a few training
batches at the true size of an Amazon dataset, with random features of the real widths (as
``speed.py``). Prints the mean seconds per batch and the ops ordered by their own CPU time.

    python benchmarks/profile_step.py --model LGMRec --dataset baby --data_path ../shared/data \
        --variant id --num_threads 2

Speed only (random features). Time it on a quiet machine. Each batch goes through the trainer's
own training loop (``Trainer._train_epoch``: its optimizer with MOTOR's parameter group, clipping).
"""
import argparse
import itertools
import logging
import os
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile

from mmrec_motor.config import Config, parse_overrides
from mmrec_motor.data.loader import load_data
from mmrec_motor.experiments.bench import random_feature_copy
from mmrec_motor.experiments.plan import first_grid_values
from mmrec_motor.quick_start import build_model, build_optimizer, sampler_of
from mmrec_motor.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="LGMRec")
    parser.add_argument("--dataset", default="baby")
    parser.add_argument("--data_path", default="../shared/data")
    parser.add_argument("--variant", choices=["id", "motor"], default="id")
    parser.add_argument("--warmup", type=int, default=2, help="batches run before timing")
    parser.add_argument("--batches", type=int, default=5, help="batches timed, then profiled")
    parser.add_argument("--rows", type=int, default=15, help="ops shown")
    parser.add_argument("--num_threads", type=int, default=2)
    parser.add_argument("--scratch", default=None, help="folder for the random-feature copy")
    args, rest = parser.parse_known_args()
    torch.set_num_threads(args.num_threads)
    scratch = args.scratch or tempfile.mkdtemp(prefix="mmrec-motor-profile-")
    overrides = {**random_feature_copy(args.dataset, args.data_path, scratch),
                 "num_threads": args.num_threads, "log_dir": os.path.join(scratch, "log"),
                 **parse_overrides(rest)}
    values = first_grid_values(args.model, args.dataset, overrides)
    values.update({"motor": args.variant == "motor"})
    config = Config(args.model, args.dataset, values)
    data = load_data(config)
    model, _ = build_model(config, data)
    trainer = Trainer(config, model, logging.getLogger("profile_step"), build_optimizer(config, model))
    sampler = sampler_of(config, data)
    model.pre_epoch_processing()
    batches = iter(sampler)
    needed = args.warmup + 2 * args.batches
    if needed > len(sampler):
        raise SystemExit(f"--warmup + 2 x --batches = {needed} batches, but an epoch of "
                         f"{args.dataset} has {len(sampler)}")

    def train(n_batches: int) -> None:
        trainer._train_epoch(itertools.islice(batches, n_batches), epoch=1)

    train(args.warmup)
    start = time.perf_counter()
    train(args.batches)
    per_batch = (time.perf_counter() - start) / args.batches
    print(f"{args.model} {args.variant} on {args.dataset}: {per_batch:.3f} s per batch of "
          f"{config['train_batch_size']}, {len(sampler)} batches per epoch "
          f"(~{per_batch * len(sampler):.1f} s of batches per epoch), {args.num_threads} threads")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train(args.batches)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
