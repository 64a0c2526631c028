"""Time the evaluation of valid and test: each split ranked apart (MMRec) against one ranking of the
union of their users (``JointRanking``, what the trainer does when neither split excludes items), on
a finished run's best checkpoint; prints whether both give the same metrics and the seconds of each
way, ``--repeat`` times alternating:

    python benchmarks/joint_ranking.py RUN_DIR/saved/VBPR-sports-id-<hash>.pth --repeat 2

The model is the checkpoint's, on this machine's device; nothing is trained.
"""
import argparse
import time

import torch

from mmrec_motor.evaluation import JointRanking
from mmrec_motor.quick_start import load_run, split_evaluators


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a run's best checkpoint (.pth)")
    parser.add_argument("--repeat", type=int, default=2, help="timed rounds of each way (default 2)")
    parser.add_argument("--num_threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.num_threads)
    run = load_run(args.checkpoint)
    valid, test, _ = split_evaluators(run.config, run.data)
    joint = JointRanking.of(valid, test)
    if joint is None:
        print("valid and test cannot share a ranking here (validation excludes items: cold-start protocol)")
        return 1

    def apart():
        return valid.evaluate(run.model), test.evaluate(run.model)

    def together():
        ranked = joint.rank(run.model)
        return joint.valid_metrics(ranked), joint.test_metrics(ranked)

    print(f"users: valid {len(valid.users)}, test {len(test.users)}, union {len(joint.union.users)}; "
          f"same metrics: {apart() == together()}")
    for _ in range(args.repeat):
        for name, way in (("apart", apart), ("joint", together)):
            began = time.perf_counter()
            way()
            print(f"{name}: {time.perf_counter() - began:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
