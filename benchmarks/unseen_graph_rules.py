"""Diagnostic for the inductive cold-start protocol: what a graph backbone's rule for nodes without a
training edge does to the held-out items (docs/benchmarks.md section 25).

Loads a finished cold-start run from its best checkpoint (``quick_start.load_run``; nothing is
retrained) and prints, per rule, Recall@20 and the mean percentile rank of the held-out items
(``cold``), their share of the cold users' top 20 and Recall@20 with only them ranked (``among``,
``quick_start.cold_metrics``), Recall@20 over all test items (``all``), and the mean length of the
held-out and of the trained items' representations (GRCN, MMGCN: the rows ``forward()`` gives for
scoring); ``--cold_item_test own`` scores on the protocol's other test rows (mmrec_motor/data/cold.py):

    python benchmarks/unseen_graph_rules.py RUN_DIR/saved/GRCN-sports20-motor-<hash>.pth
    python benchmarks/unseen_graph_rules.py RUN_DIR/saved/MMGCN-sports20-motor-<hash>.pth --borrow 10,50
    python benchmarks/unseen_graph_rules.py RUN.pth --borrow 10,50 --norm off --cold_item_test own

Rules:
* ``isolated_self_loops`` False and True: the config key (GRCN reads it in its own message passing;
  MMGCN does not). The run's own value is the one it was trained with.
* MMGCN only (candidates, not in the model): its mean-aggregation graph D^{-1} A
  - ``loops``: a self-loop of weight 1 on each row without an edge (graphs.with_isolated_self_loops),
    so an isolated item aggregates its own features where a trained item aggregates its users;
  - ``borrow k``: an isolated item's row becomes the mean of the rows of its k most similar trained
    items (cosine of the features as MOTOR's neighbour rule takes them: rows L2-normalised, then
    centred, motor/content.centred_features; motor/unseen.unseen_neighbours), so it aggregates the
    users of items like it: A'_i = (1 / k) sum_{j in N_k(i)} A_j.
"""
import argparse

import numpy as np
import scipy.sparse as sp
import torch

from mmrec_motor.data.cold import TEST_ROWS
from mmrec_motor.experiments.plan import split_list
from mmrec_motor.models.graphs import sparse_from_scipy, with_isolated_self_loops
from mmrec_motor.motor.content import centred_features
from mmrec_motor.motor.unseen import training_item_counts, unseen_neighbours
from mmrec_motor.quick_start import cold_metrics, evaluator, load_run


def scores(run) -> str:
    """Cold Recall@20, cold MPR, held-out share@20, among held-out Recall@20, all-item Recall@20 of
    ``run``'s model and the mean length of its held-out and of its trained items' representations, as
    one line."""
    model = run.model.eval()
    cold = evaluator(run.config, run.data, run.data.cold_test)
    every = evaluator(run.config, run.data, run.data.test)
    held_out = np.zeros(model.n_items, dtype=bool)
    held_out[run.data.cold_items] = True
    with torch.no_grad():
        lengths = model.forward()[0][model.n_users:].norm(dim=1).numpy()
        cold_scores = cold_metrics(run.config, run.data, cold, model)
        return (f"cold R@20 {cold_scores['cold_test']['recall@20']:.4f}"
                f"  cold MPR {cold_scores['cold_test_mpr']:.3f}"
                f"  share@20 {cold_scores['cold_test_share']['held_out_share@20']:.3f}"
                f"  among R@20 {cold_scores['cold_test_among']['recall@20']:.4f}"
                f"  all R@20 {every.evaluate(model)['recall@20']:.4f}  length held-out {lengths[held_out].mean():.2f}"
                f" trained {lengths[~held_out].mean():.2f}")


def scipy_of(adj: torch.Tensor) -> sp.csr_matrix:
    adj = adj.coalesce().cpu()
    rows, cols = adj.indices().numpy()
    return sp.csr_matrix((adj.values().numpy(), (rows, cols)), shape=tuple(adj.shape))


def borrowed(adj: sp.csr_matrix, n_users: int, features, counts: np.ndarray, k: int) -> sp.csr_matrix:
    """``adj`` with each isolated item's (empty) row replaced by the mean of its k content neighbours'."""
    unseen, neighbours = unseen_neighbours(features, counts, k)
    rows = np.repeat(unseen + n_users, k)
    mixer = sp.csr_matrix((np.full(len(rows), 1.0 / k, dtype=np.float32), (rows, neighbours.ravel() + n_users)),
                          shape=adj.shape)
    return (adj + mixer @ adj).tocsr()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a cold-start run's best checkpoint (RUN_DIR/saved/*.pth)")
    parser.add_argument("--borrow", default="10", help="MMGCN: comma-separated k for the borrow rule")
    parser.add_argument("--norm", default=None, help="motor_unseen_norm for the unseen rows (default: the run's)")
    parser.add_argument("--cold_item_test", choices=TEST_ROWS, default=None,
                        help="score on these test rows (default: the run's own setting)")
    args = parser.parse_args()
    overrides = {**({} if args.cold_item_test is None else {"cold_item_test": args.cold_item_test}),
                 **({} if args.norm is None else {"motor_unseen_norm": args.norm})}
    for loops in (False, True):
        run = load_run(args.checkpoint, overrides={"isolated_self_loops": loops, **overrides})
        if type(run.model).__name__ not in ("GRCN", "MMGCN"):
            raise SystemExit(f"{args.checkpoint}: a {type(run.model).__name__} run, expected GRCN or MMGCN "
                             f"(for the others: benchmarks/cold_scale.py)")
        if run.data.cold_items is None or len(run.data.cold_items) == 0:
            raise SystemExit(f"{args.checkpoint}: not a cold-start run (cold_item_ratio is 0)")
        print(f"isolated_self_loops {loops}: {scores(run)}", flush=True)
    if type(run.model).__name__ != "MMGCN":
        return
    model = run.model
    plain = scipy_of(model.adj)
    counts = training_item_counts(run.data, model.n_items)
    features = [centred_features(f.cpu().numpy()) for f in (model.v_feat, model.t_feat) if f is not None]
    model.adj = sparse_from_scipy(with_isolated_self_loops(plain), model.adj.device)
    print(f"MMGCN loops: {scores(run)}", flush=True)
    for k in [int(k) for k in split_list(args.borrow, "--borrow")]:
        model.adj = sparse_from_scipy(borrowed(plain, model.n_users, features, counts, k), model.adj.device)
        print(f"MMGCN borrow k={k}: {scores(run)}", flush=True)


if __name__ == "__main__":
    main()
