"""Diagnostic for the inductive cold-start protocol: held-out items that read their content
neighbours' edges.

A held-out item has no training edge, so a graph backbone gives it only its own embedding (with
``isolated_self_loops``) while every trained item also gets its users' aggregate. Here row i of the
normalised user-item graph of each held-out item i is replaced by the mean of the rows of its k
nearest trained items (cosine of the centred, normalised features, as content-kNN; the neighbours
are :func:`mmrec_motor.motor.unseen.unseen_neighbours`'s, for every item without a training
interaction, which under the protocol are the held-out ones), so that
X_{l+1}[i] = mean_{j in N(i)} X_{l+1}[j] at every layer; its own embedding stays its layer-0 row. No
column changes, so no trained row and no training step would change: the saved model is evaluated
as it is (nothing retrained), and the cold test Recall@20, the held-out items' share of the cold
users' top 20, Recall@20 with only the held-out items ranked and all-item test Recall@20 are printed
for each k (``quick_start.cold_metrics``):

    python benchmarks/cold_neighbours.py RUN_DIR/saved/BM3-sports20-motor-<hash>.pth --k 0,5,10,20
    python benchmarks/cold_neighbours.py RUN.pth --k 0,10 --unseen_neighbours 10 --norm off --cold_item_test own

k = 0 is the graph as the run had it. MOTOR's own neighbour rule (``motor_unseen_neighbours``) is off
unless ``--unseen_neighbours`` sets it, so that by default only the graph differs between the rows.
For backbones whose user-item graph is the attribute ``norm_adj`` (BM3, FREEDOM, SLMRec, LATTICE) or
``norm_adj_matrix`` (LightGCN); the features that pick the neighbours are the dataset's text (or,
with ``--modality v``, vision) feature file.
"""
import argparse

import numpy as np
import scipy.sparse as sp
import torch

from mmrec_motor.data.cold import TEST_ROWS
from mmrec_motor.data.features import load_features
from mmrec_motor.experiments.plan import split_list
from mmrec_motor.models.contentknn import normalised_content
from mmrec_motor.motor.unseen import unseen_neighbours
from mmrec_motor.quick_start import cold_metrics, evaluator, load_run


def neighbour_rows(adj: sp.csr_matrix, n_users: int, held_out: np.ndarray, neighbours: np.ndarray
                   ) -> sp.csr_matrix:
    """``adj`` ((U+I) x (U+I)) with the rows of the held-out items (U + held_out) replaced by the mean
    of the rows of their neighbours (``neighbours`` (H, k) item ids, from
    :func:`mmrec_motor.motor.unseen.unseen_neighbours`)."""
    k = neighbours.shape[1]
    mix = sp.csr_matrix((np.full(neighbours.size, 1.0 / k), (np.repeat(np.arange(len(held_out)), k),
                                                            neighbours.ravel() + n_users)),
                        shape=(len(held_out), adj.shape[0]))
    new_rows = (mix @ adj).tocsr()                                        # (H, U+I)
    keep = np.ones(adj.shape[0], dtype=bool)
    keep[held_out + n_users] = False
    kept = sp.diags(keep.astype(adj.dtype)) @ adj
    placed = sp.csr_matrix((np.ones(len(held_out)), (held_out + n_users, np.arange(len(held_out)))),
                           shape=(adj.shape[0], len(held_out))) @ new_rows
    return (kept + placed).tocsr()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a cold-start run's best checkpoint (RUN_DIR/saved/*.pth)")
    parser.add_argument("--k", default="0,5,10,20", help="comma-separated neighbour counts (0: as trained)")
    parser.add_argument("--modality", default="t", choices=["t", "v"], help="the features that pick neighbours")
    parser.add_argument("--unseen_neighbours", type=int, default=0,
                        help="MOTOR's motor_unseen_neighbours k for the unseen rows themselves (default 0: off)")
    parser.add_argument("--norm", default=None, help="motor_unseen_norm for the unseen rows (default: the run's)")
    parser.add_argument("--cold_item_test", choices=TEST_ROWS, default=None,
                        help="score on these test rows (default: the run's own setting)")
    args = parser.parse_args()
    overrides = {"motor_unseen_neighbours": args.unseen_neighbours,
                 **({} if args.norm is None else {"motor_unseen_norm": args.norm}),
                 **({} if args.cold_item_test is None else {"cold_item_test": args.cold_item_test})}
    run = load_run(args.checkpoint, overrides=overrides)
    data, model = run.data, run.model.eval()
    if data.cold_items is None or len(data.cold_items) == 0:
        raise SystemExit(f"{args.checkpoint}: not a cold-start run (cold_item_ratio is 0)")
    name = "norm_adj_matrix" if hasattr(model, "norm_adj_matrix") else "norm_adj"
    original = getattr(model, name).coalesce()
    indices, values = original.indices().cpu().numpy(), original.values().cpu().numpy()
    adj = sp.csr_matrix((values, (indices[0], indices[1])), shape=tuple(original.shape))
    counts = np.bincount(data.train.items, minlength=data.n_items)
    features = load_features(run.config, data.n_items)[args.modality]     # ID-only backbones keep none
    if features is None:
        key = "text_feature_file" if args.modality == "t" else "vision_feature_file"
        raise SystemExit(f"--modality {args.modality}: {run.config['dataset']} has no {key} "
                         f"({run.config[key]!r}) to pick neighbours with")
    features = normalised_content(np.asarray(features, dtype=np.float64))
    cold, every = evaluator(run.config, data, data.cold_test), evaluator(run.config, data, data.test)
    print("k    cold recall@20  held-out share@20  among held-out recall@20  all recall@20")
    for k in (int(x) for x in split_list(args.k, "--k")):
        graph = adj if k == 0 else neighbour_rows(adj, model.n_users, *unseen_neighbours([features], counts, k))
        coo = graph.tocoo()
        setattr(model, name, torch.sparse_coo_tensor(np.vstack([coo.row, coo.col]), coo.data.astype(np.float32),
                                                     coo.shape, device=original.device).coalesce())
        scores = cold_metrics(run.config, data, cold, model)
        print(f"{k:<4d} {scores['cold_test']['recall@20']:<15.4f} "
              f"{scores['cold_test_share']['held_out_share@20']:<18.3f} "
              f"{scores['cold_test_among']['recall@20']:<25.4f} {every.evaluate(model)['recall@20']:.4f}")
    setattr(model, name, original)


if __name__ == "__main__":
    main()
