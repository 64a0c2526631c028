"""ID against MOTOR on a bench folder, with a paired bootstrap over the evaluated users
(:mod:`mmrec_motor.experiments.bootstrap`): the seed-to-seed spread that a bench's paired t-test
reads leaves out the noise of which users the fixed split evaluates. On sparse data (sports20: about
6,600 valid and 6,900 test users) that noise is of the size of the gaps measured.

For each model x dataset of DIR (a bench folder holding both sides, e.g. one that
``benchmarks/merge_runs.py`` filled), each side's runs (the tuned protocol: the combination each
seed chose on validation, as the summary picks it) give their per-user metrics: from the run's
per-user metrics file (``DIR/users``, which bench writes since it existed) or else by reloading the
run from its best checkpoint (``quick_start.load_run``, nothing trained). Each user's metric on valid
and on test is averaged over the side's seeds, and the script prints, for MOTOR over ID: the change
on valid and on test with 95% bootstrap intervals, and the valid-minus-test gap with its interval
(the users of the two splits drawn together). A gap whose interval holds 0 is what the users' noise alone gives.

    python benchmarks/user_bootstrap.py runs/s20_slm_tuned_all [--metric recall@20] [--resamples 2000]

Every run's per-user mean is checked against its result file (the line says ``reproduced``).

Whether choosing the best epoch on validation explains a gap (``--window W``, default 5): each run's
log holds valid and test at every evaluated epoch; per side the script prints both at the best epoch
and their means over the epochs best - W .. best + W. A side whose valid at the best epoch stands far
above its window's mean was chosen on a lucky epoch; a gap that the window keeps is not the epoch's.
"""
import argparse
import glob
import os
import re
from collections import defaultdict

import numpy as np
import torch

from mmrec_motor.experiments.bootstrap import change_interval, seed_mean, split_gap
from mmrec_motor.experiments.store import (chosen_specs, load_result, load_runs, run_variant, saved_checkpoint,
                                           saved_user_metrics, spec_of)
from mmrec_motor.fileio import read_user_metrics
from mmrec_motor.quick_start import load_run, split_evaluators


def epoch_curves(log_file: str, key: str):
    """(valid, test): float [evaluated epochs] of ``key`` (e.g. ``recall@20``) read from a run's log, where
    each evaluation writes a ``valid result:`` line and a ``test result:`` line, each followed by the
    metrics line, up to the run's closing ``best valid result:``."""
    curves, pending = {"valid": [], "test": []}, None
    pattern = re.compile(re.escape(key) + r": ([0-9.]+)")
    with open(log_file) as handle:
        for line in handle:
            stripped = line.rstrip()
            if stripped.endswith("best valid result:"):        # the run's summary after its last epoch
                break
            if stripped.endswith("valid result:") or stripped.endswith("test result:"):
                pending = "valid" if stripped.endswith("valid result:") else "test"
                continue
            found = pattern.search(line) if pending else None
            if found:
                curves[pending].append(float(found.group(1)))
            pending = None
    if not curves["valid"] or len(curves["valid"]) != len(curves["test"]):
        raise ValueError(f"{log_file}: expected one valid and one test {key} per evaluated epoch, found "
                         f"{len(curves['valid'])} and {len(curves['test'])} (test_every_epoch off?)")
    return np.array(curves["valid"]), np.array(curves["test"])


def around_best(valid: np.ndarray, test: np.ndarray, window: int):
    """(valid, test at the best valid epoch (the first best), their means over best +- window)."""
    best = int(np.argmax(valid))
    span = slice(max(0, best - window), best + window + 1)
    return valid[best], test[best], valid[span].mean(), test[span].mean()


def side_values(out: str, results, metric: str, k: int, window: int):
    """{(model, dataset, side): {"seeds": [...], "valid"/"test": (users, seed-mean per-user values)}}."""
    specs = chosen_specs(out, [spec_of(r) for r in results])
    sides = defaultdict(lambda: {"seeds": [], "valid": [], "test": [], "epochs": []})
    for spec in sorted(specs, key=lambda s: (s.model, s.dataset, s.variant, s.seed)):
        result = load_result(out, spec)
        per_user = run_per_user(out, spec.name, result, f"{metric}@{k}")
        side = sides[(spec.model, spec.dataset, run_variant(result))]
        side["seeds"].append(spec.seed)
        logs = sorted(glob.glob(os.path.join(result["config"]["log_dir"], "*.log")))
        try:                                            # the last log: a resumed run's own
            side["epochs"].append(around_best(*epoch_curves(logs[-1], f"{metric}@{k}"), window))
        except (IndexError, ValueError) as problem:     # no log, or test only at improvements
            print(f"  {spec.name}: no epoch window ({problem if logs else 'no log'})")
        for name, (users, values) in per_user.items():
            stored = result["best"][name].get(f"{metric}@{k}")
            same = stored is not None and round(float(values.mean()), 4) == stored
            print(f"  {spec.name} ({spec.tag or 'one run'}) {name} {metric}@{k} {values.mean():.4f}: "
                  f"{'reproduced' if same else f'NOT the stored {stored}'}")
            side[name].append((users, values))
    averaged = {}
    for key, side in sides.items():
        averaged[key] = {"seeds": side["seeds"],
                         "epochs": np.mean(side["epochs"], axis=0)         # None unless every run has its log
                         if len(side["epochs"]) == len(side["seeds"]) else None}
        for name in ("valid", "test"):
            averaged[key][name] = seed_mean(side[name], f"{key} {name}")
    return averaged


def run_per_user(out: str, name: str, result, key: str):
    """{"valid"/"test": (users, each user's ``key``)} of one run: from its per-user metrics file when it
    has one with ``key``, else by reloading its best checkpoint and ranking both splits."""
    path = saved_user_metrics(out, result)
    if path is not None:
        stored = read_user_metrics(path)
        if all(key in stored[split][1] for split in ("valid", "test")):
            return {split: (stored[split][0], stored[split][1][key]) for split in ("valid", "test")}
    checkpoint = saved_checkpoint(out, result)
    if checkpoint is None:
        raise FileNotFoundError(f"{out}: no per-user metrics file and no checkpoint for run {name}")
    run = load_run(checkpoint)
    metric, _, k = key.partition("@")
    valid, test, _ = split_evaluators(run.config, run.data)
    return {split: (ev.users, ev.per_user(ev.rank(run.model), metric, int(k)))
            for split, ev in (("valid", valid), ("test", test))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="a bench folder with ID and MOTOR runs of the same seeds")
    parser.add_argument("--metric", default="recall@20", help="metric@K per user (default recall@20)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap rounds (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's random seed (default 0)")
    parser.add_argument("--window", type=int, default=5, help="epochs each side of the best (default 5)")
    parser.add_argument("--num_threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.num_threads)
    metric, _, k = args.metric.lower().partition("@")
    if not k.isdigit():
        parser.error(f"--metric: expected metric@K such as recall@20, got {args.metric!r}")
    values = side_values(args.out, load_runs(args.out), metric, int(k), args.window)
    for (model, dataset, side), a in sorted(values.items()):
        if side.startswith("motor"):
            continue
        b = values.get((model, dataset, side.replace("id", "motor")))
        if b is None or sorted(a["seeds"]) != sorted(b["seeds"]):
            print(f"{model} {dataset}: no MOTOR side with ID's seeds {a['seeds']}; skipped")
            continue
        if any(not np.array_equal(a[name][0], b[name][0]) for name in ("valid", "test")):
            raise ValueError(f"{model} {dataset}: ID and MOTOR evaluate different users (different splits?)")
        valid, test, gap = split_gap(a["valid"][1], b["valid"][1], a["valid"][0],
                                     a["test"][1], b["test"][1], a["test"][0], args.resamples, args.seed)
        alone = change_interval(a["test"][1], b["test"][1], args.resamples, args.seed)
        print(f"{model} {dataset} {side} vs {side.replace('id', 'motor')}, seeds {sorted(a['seeds'])}, "
              f"{args.metric} averaged over seeds per user:")
        print(f"  valid: ID {a['valid'][1].mean():.4f}, MOTOR {b['valid'][1].mean():.4f}, {valid.text()}")
        print(f"  test:  ID {a['test'][1].mean():.4f}, MOTOR {b['test'][1].mean():.4f}, {test.text()} "
              f"(test users alone: [{100 * alone.low:+.1f}%, {100 * alone.high:+.1f}%])")
        print(f"  valid - test gap: {gap.text()}")
        for name, numbers in (("ID", a), ("MOTOR", b)):
            if numbers["epochs"] is not None:
                at_v, at_t, win_v, win_t = numbers["epochs"]
                print(f"  {name} over its logs: best epoch valid {at_v:.4f} test {at_t:.4f}; epochs best +-"
                      f"{args.window}: valid {win_v:.4f} test {win_t:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
