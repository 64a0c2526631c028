"""MOTOR's rules for unseen items on a finished cold-start run, nothing retrained:
``motor_unseen_neighbours`` k, with ``--norm`` ``motor_unseen_norm`` and with ``--loops`` the graph
backbones' ``isolated_self_loops`` too. ``--power`` t gives the unseen rows s^t instead of the
length rule's factor s (t = 1: the rule; t = 0: no rescaling, as ``off``), a diagnostic of the
lengths between the two (docs/benchmarks.md section 27); it applies where ``--norm`` is mean or weighted.
``--blend`` a: an unseen row becomes (1 - a) e_i + a (its neighbours' mean) instead of the half blend
(a = 1/2), a diagnostic too. ``--nlength`` P: after the blend, each unseen row's length is multiplied by
(its k content neighbours' mean row length / its own)^P, so its length follows how long the trained items
like it are (P = 0: unchanged); with ``--keep-group`` the unseen rows are then rescaled together to the
mean length they had before, so only their lengths relative to each other change (docs/benchmarks.md
section 28). ``--equal``: the target of ``--nlength`` is the unseen rows' mean length instead of each
one's neighbours', so P = 1 gives every unseen row one length and keeps their mean (section 30).

Loads the run's best checkpoint once per (loops, norm, power, blend, nlength, k)
(``quick_start.load_run`` with the keys overridden; the neighbours are derived from the features, not
saved), and prints test Recall@20 / NDCG@20 on the held-out items, their share of the cold users' top
20 and Recall@20 with only the held-out items ranked (``quick_start.cold_metrics``, docs/benchmarks.md
section 25), and Recall@20 on all test items:

    python benchmarks/unseen_neighbours.py RUN_DIR/saved/LightGCN-sports20-motor-<hash>.pth --k 0,5,10,20
    python benchmarks/unseen_neighbours.py RUN.pth --k 0,10 --norm mean,off --cold_item_test own
    python benchmarks/unseen_neighbours.py RUN.pth --k 10 --norm off --loops True,False --cold_item_test own
    python benchmarks/unseen_neighbours.py RUN.pth --k 10 --norm mean --power 0,0.5,1 --cold_item_test own
    python benchmarks/unseen_neighbours.py RUN.pth --k 10 --norm off --blend 0,0.5,1 --cold_item_test own
    python benchmarks/unseen_neighbours.py RUN.pth --k 10 --norm off --nlength 0,1 --keep-group --cold_item_test own
    python benchmarks/unseen_neighbours.py RUN.pth --k 10 --norm off --nlength 0,1 --equal --cold_item_test own

``--cold_item_test own`` scores on the protocol's other test rows (train and valid are the same, so
the model is the same; mmrec_motor/data/cold.py).

``full valid recall@20`` is validation as without the protocol: the dataset's own valid rows of the
users who still train, held-out items' rows included, every item ranked, each user's training rows
masked (held-out ones too). No held-out interaction was trained on, and none of these is a test
row, so a rule for unseen items can be chosen on it (docs/benchmarks.md section 26).

For backbones whose training never reads an unseen item's row (BPR, VBPR, LightGCN: their losses
and regularisers use the batch's rows) this is exactly the run with that k; where a full-table term
reads it (BM3's EmbLoss, FREEDOM's item-item graph) training would differ a little, so the numbers
are those of the trained model evaluated with the rule (docs/motor-design.md section 11).
"""
import argparse
import contextlib
import functools
import warnings

import numpy as np
import torch

from mmrec_motor.config import Config
from mmrec_motor.data.cold import TEST_ROWS, apply_cold_items
from mmrec_motor.data.dataset import Split
from mmrec_motor.experiments.plan import split_list
from mmrec_motor.motor import tcn, unseen
from mmrec_motor.quick_start import cold_metrics, evaluator, load_data, load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a cold-start MOTOR run's best checkpoint (RUN_DIR/saved/*.pth)")
    parser.add_argument("--k", default="0,5,10,20", help="comma-separated neighbour counts (0: off)")
    parser.add_argument("--norm", default=None, help="comma-separated motor_unseen_norm values (default: the run's)")
    parser.add_argument("--loops", default=None,
                        help="comma-separated isolated_self_loops values, True/False (default: the run's)")
    parser.add_argument("--power", default=None,
                        help="comma-separated exponents t in [0, 1] of the length rule's factor (default: 1)")
    parser.add_argument("--blend", default=None,
                        help="comma-separated weights a in [0, 1] of the neighbours' mean (default: 0.5)")
    parser.add_argument("--nlength", default=None,
                        help="comma-separated exponents P >= 0 of the neighbours' length ratio (default: 0)")
    parser.add_argument("--keep-group", action="store_true",
                        help="with --nlength: keep the unseen rows' mean length (only their relative lengths change)")
    parser.add_argument("--equal", action="store_true",
                        help="with --nlength: the target length is the unseen rows' mean (P = 1: all one length)")
    parser.add_argument("--cold_item_test", choices=TEST_ROWS, default=None,
                        help="score on these test rows (default: the run's own setting)")
    args = parser.parse_args()
    norms = [None] if args.norm is None else split_list(args.norm, "--norm")
    loops = [None] if args.loops is None else [flag(x) for x in split_list(args.loops, "--loops")]
    powers = [1.0] if args.power is None else [float(x) for x in split_list(args.power, "--power")]
    if any(not 0.0 <= t <= 1.0 for t in powers):
        raise SystemExit(f"--power: every exponent must be in [0, 1], got {args.power!r}")
    blends = [0.5] if args.blend is None else [float(x) for x in split_list(args.blend, "--blend")]
    if any(not 0.0 <= a <= 1.0 for a in blends):
        raise SystemExit(f"--blend: every weight must be in [0, 1], got {args.blend!r}")
    nlengths = [0.0] if args.nlength is None else [float(x) for x in split_list(args.nlength, "--nlength")]
    if any(p < 0.0 for p in nlengths):
        raise SystemExit(f"--nlength: every exponent must be >= 0, got {args.nlength!r}")
    base = {} if args.cold_item_test is None else {"cold_item_test": args.cold_item_test}
    print("loops  norm     power  blend  nlen   k    cold recall@20  cold ndcg@20  held-out share@20  "
          "among held-out recall@20  all recall@20  full valid recall@20")
    full_valid = None
    for loop, norm, power, blend, nlength, k in ((lp, n, t, a, q, int(x)) for lp in loops for n in norms
                                                 for t in powers for a in blends for q in nlengths
                                                 for x in split_list(args.k, "--k")):
        overrides = {**base, "motor_unseen_neighbours": k, **({} if norm is None else {"motor_unseen_norm": norm}),
                     **({} if loop is None else {"isolated_self_loops": loop})}
        # loading and scoring alike see the rules' settings
        with unseen_rules(power, blend, nlength, args.keep_group, args.equal):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run = load_run(args.checkpoint, overrides=overrides)
            if run.data.cold_items is None or len(run.data.cold_items) == 0:
                raise SystemExit(f"{args.checkpoint}: not a cold-start run (cold_item_ratio is 0)")
            model = run.model.eval()
            full_valid = full_valid or full_valid_evaluator(run.config)
            scores = cold_metrics(run.config, run.data, evaluator(run.config, run.data, run.data.cold_test), model)
            every = evaluator(run.config, run.data, run.data.test).evaluate(model)
            valid = full_valid.evaluate(model)
        cold, among = scores["cold_test"], scores["cold_test_among"]
        share = scores["cold_test_share"]["held_out_share@20"]
        print(f"{run.config['isolated_self_loops']!s:<6} {run.config['motor_unseen_norm']!s:<8} "
              f"{power:<6g} {blend:<6g} {nlength:<6g} {k:<4d} "
              f"{cold['recall@20']:<15.4f} {cold['ndcg@20']:<13.4f} {share:<18.3f} "
              f"{among['recall@20']:<25.4f} {every['recall@20']:<14.4f} {valid['recall@20']:.4f}")


@contextlib.contextmanager
def unseen_rules(power: float, blend: float, nlength: float = 0.0, keep_group: bool = False,
                 equal: bool = False):
    """While inside, the length rule multiplies the unseen rows by s^power, s its own factor
    (:func:`mmrec_motor.motor.unseen.unseen_factor`), and the neighbour blend borrows the share
    ``blend`` (:func:`mmrec_motor.motor.unseen.blend_neighbours`), then gives each unseen row its
    neighbours' length (``equal``: the unseen rows' mean length) to the power ``nlength``
    (:func:`neighbour_lengths`); the TCN calls both at every forward."""
    factor, blend_rule = unseen.unseen_factor, tcn.blend_neighbours
    unseen.unseen_factor = lambda table, weights, mask: factor(table, weights, mask) ** power
    blended = functools.partial(blend_rule, weight=blend)
    tcn.blend_neighbours = blended if nlength == 0.0 else functools.partial(
        neighbour_lengths, blend=blended, exponent=nlength, keep_group=keep_group, equal=equal)
    try:
        yield
    finally:
        unseen.unseen_factor, tcn.blend_neighbours = factor, blend_rule


def neighbour_lengths(table, unseen_items, neighbours, rows=None, full=None, *, blend, exponent, keep_group,
                      equal=False):
    """``blend``'s table with each unseen row e_i (after the blend) multiplied by (m_i / ||e_i||)^P,
    m_i = (1 / k) sum_{j in N(i)} ||e_j|| the mean length of its neighbours' rows (``equal``: m_i = the
    mean length of the unseen rows after the blend, the same for all), P = ``exponent``;
    ``keep_group``: then every unseen row multiplied by one factor that restores the unseen rows' mean
    length after the blend. Arguments as :func:`mmrec_motor.motor.unseen.blend_neighbours`; with
    ``rows``, the whole table is computed and those rows returned (evaluation only, no gradient)."""
    if rows is not None:
        with torch.no_grad():
            whole = neighbour_lengths(full, unseen_items, neighbours, blend=blend, exponent=exponent,
                                      keep_group=keep_group, equal=equal)
        return whole[rows]
    out = blend(table, unseen_items, neighbours)
    with torch.no_grad():
        before = out[unseen_items].norm(dim=1).clamp_min(1e-12)                   # (U,)
        target = (before.mean().expand_as(before) if equal
                  else table[neighbours].norm(dim=2).mean(dim=1))                 # (U,)
        scale = (target / before) ** exponent
        if keep_group:
            scale = scale * before.mean() / (before * scale).mean()
    out = out.clone()
    out[unseen_items] = out[unseen_items] * scale.unsqueeze(1)
    return out


def flag(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise SystemExit(f"--loops: expected True or False, got {text!r}")
    return text.lower() == "true"


def full_valid_evaluator(config):
    """The evaluator of validation as without the protocol (module docstring): the dataset loaded
    without it, then held out again with ``cold_item_test: own`` for its training-row mask."""
    plain = load_data(Config("POP", config["dataset"], {"data_path": config["data_path"]}))
    keys = ("cold_item_ratio", "cold_item_seed", "seed", "filter_out_cod_start_users")
    own = apply_cold_items({**{k: config[k] for k in keys}, "cold_item_test": "own"}, plain)
    trains = np.zeros(own.n_users, dtype=bool)
    trains[own.train.users] = True
    keep = trains[plain.valid.users]
    return evaluator(config, own, Split(plain.valid.users[keep], plain.valid.items[keep]))


if __name__ == "__main__":
    main()
