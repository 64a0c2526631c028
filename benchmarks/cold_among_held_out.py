"""Diagnostic for the inductive cold-start protocol: how much of a model's cold score comes from
ranking the held-out items, as a group, above the trained ones (docs/benchmarks.md section 25).

Why. The protocol holds out a share of the items with interactions and moves all their interactions
to test (mmrec_motor/data/cold.py), so a held-out item has many more test interactions than a
trained item has (on sports20, seed 999: 4.1 against 0.49). A rule that makes every item
without a training edge score higher (a longer row) lifts the cold score, and the all-item score
too, whatever it knows about which held-out item a user wants. Content-kNN has no such group
preference. This separates the two:

* ``cold R@20``: the protocol's score (every item ranked, training items masked);
* ``held-out share``: the mean share of the cold users' top 20 taken by held-out items (content-kNN's
  share is the reference; a share far above it is a group preference);
* ``among held-out R@20``: the same users and items, only the held-out items ranked (every trained
  item excluded), so no group preference can help: how well the model orders the held-out items
  for a user, which is what their tokens can carry.

For each checkpoint (a finished cold-start run's best model, ``quick_start.load_run``) and for
content-kNN on the same held-out draw (built from the run's config, nothing trained):

    python benchmarks/cold_among_held_out.py RUN_DIR/saved/LightGCN-sports20-motor-<hash>.pth [more.pth ...]

``--cold_item_test own`` scores the same models on the protocol's other test rows (data/cold.py):
train and valid are the same under ``all`` and ``own``, so a run trained under one is exactly the
run of the other, and only its test is rebuilt. Then ``all R@20`` is the ordinary test score,
comparable to a run without the protocol, and ``MPR`` the held-out test items' mean percentile rank.

``--bootstrap R`` adds, under each run, its change over content-kNN in cold R@20 and in among
held-out R@20 with a 95% interval from R rounds of a paired bootstrap over the cold users
(:mod:`mmrec_motor.experiments.bootstrap`): a few hundred users with a few dozen hits between them
(sports20) leave wide intervals, which a single number hides.
"""
import argparse
from typing import Dict, Tuple

import numpy as np

from mmrec_motor.config import Config
from mmrec_motor.data.cold import TEST_ROWS
from mmrec_motor.experiments.bootstrap import change_interval
from mmrec_motor.quick_start import (among_held_out_evaluator, build_model, cold_metrics, evaluator, load_data,
                                     load_run)

K = 20


def held_out_scores(config, data, model) -> Tuple[float, ...]:
    """(cold Recall@K, held-out share of the cold users' top K, Recall@K among the held-out items,
    the held-out test items' MPR, Recall@K on all test items)."""
    model.eval()
    scores = cold_metrics(config, data, evaluator(config, data, data.cold_test), model)
    every = evaluator(config, data, data.test).evaluate(model)
    return (scores["cold_test"][f"recall@{K}"], scores["cold_test_share"][f"held_out_share@{K}"],
            scores["cold_test_among"][f"recall@{K}"], scores["cold_test_mpr"], every[f"recall@{K}"])


def per_user_cold(config, data, model) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """{"cold": (cold users, each one's Recall@K with every item ranked), "among": (the same users,
    Recall@K with only the held-out items ranked)}."""
    evaluators = {"cold": evaluator(config, data, data.cold_test), "among": among_held_out_evaluator(config, data)}
    return {name: (ev.users, ev.per_user(ev.rank(model), "recall", K)) for name, ev in evaluators.items()}


def against_knn(knn: Dict[str, Tuple[np.ndarray, np.ndarray]], run: Dict[str, Tuple[np.ndarray, np.ndarray]],
                rounds: int) -> str:
    """The run's change over content-kNN per score, with its bootstrap interval over the cold users."""
    parts = []
    for name, label in (("cold", f"cold R@{K}"), ("among", f"among held-out R@{K}")):
        if not np.array_equal(knn[name][0], run[name][0]):
            raise SystemExit("content-kNN and the run evaluate different cold users")
        parts.append(f"{label} {change_interval(knn[name][1], run[name][1], rounds).text()}")
    return f"    vs content-kNN over {len(run['cold'][0])} cold users: " + "; ".join(parts)


def content_knn(config) -> Tuple[object, object, object]:
    """(config, data, model) of content-kNN on the run's dataset, held-out draw and test rows."""
    keys = ("data_path", "cold_item_ratio", "cold_item_seed", "cold_item_test", "seed", "num_threads",
            "use_gpu", "gpu_id")
    knn = Config("ContentKNN", config["dataset"], {k: config[k] for k in keys if k in config})
    data = load_data(knn)
    model, _ = build_model(knn, data)
    return knn, data, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="cold-start runs' best checkpoints (RUN_DIR/saved/*.pth)")
    parser.add_argument("--cold_item_test", choices=TEST_ROWS, default=None,
                        help="score on these test rows (default: the run's own setting)")
    parser.add_argument("--bootstrap", type=int, default=0, metavar="R",
                        help="rounds of a bootstrap over the cold users against content-kNN (default 0: none)")
    args = parser.parse_args()
    overrides = {} if args.cold_item_test is None else {"cold_item_test": args.cold_item_test}
    references: Dict[tuple, str] = {}
    knn_users: Dict[tuple, Dict[str, Tuple[np.ndarray, np.ndarray]]] = {}
    previous = None
    print(f"{'run':<40} {'cold R@20':>9} {'held-out share':>14} {'among held-out R@20':>19} {'MPR':>6} "
          f"{'all R@20':>8}")
    for path in args.checkpoints:
        run = load_run(path, overrides=overrides)
        if run.data.cold_items is None or len(run.data.cold_items) == 0:
            raise SystemExit(f"{path}: not a cold-start run (cold_item_ratio is 0)")
        draw = (run.config["dataset"], run.config["cold_item_ratio"], run.config["cold_item_seed"] or
                run.config["seed"], run.config["cold_item_test"])
        if draw not in references:
            knn_config, knn_data, knn_model = content_knn(run.config)
            if not np.array_equal(knn_data.cold_items, run.data.cold_items):
                raise SystemExit(f"{path}: content-kNN's held-out draw differs from the run's")
            references[draw] = (f"-- {draw[0]}, held-out draw of seed {draw[2]}, {len(run.data.cold_items)} "
                                f"items ({len(run.data.cold_items) / run.data.n_items:.1%} of the catalogue), "
                                f"cold_item_test {run.config['cold_item_test'] or 'all'}: "
                                f"{len(run.data.cold_test)} held-out test rows\n"
                                + line("content-kNN", held_out_scores(knn_config, knn_data, knn_model)))
            if args.bootstrap:
                knn_users[draw] = per_user_cold(knn_config, knn_data, knn_model)
        if draw != previous:
            print(references[draw])
            previous = draw
        name = f"{run.config['model']} {'motor' if run.config['motor'] else 'id'} (seed {run.config['seed']})"
        print(line(name, held_out_scores(run.config, run.data, run.model)), flush=True)
        if args.bootstrap:
            print(against_knn(knn_users[draw], per_user_cold(run.config, run.data, run.model), args.bootstrap),
                  flush=True)


def line(name: str, scores: Tuple[float, ...]) -> str:
    cold, share, among, mpr, every = scores
    return f"{name:<40} {cold:>9.4f} {share:>14.4f} {among:>19.4f} {mpr:>6.4f} {every:>8.4f}"


if __name__ == "__main__":
    main()
