"""Diagnostic for the inductive cold-start protocol: how the length of the held-out items' final
embeddings decides whether they reach a top K.

Loads a finished cold-start run from its best checkpoint (``quick_start.load_run``), multiplies the
held-out items' rows of the backbone's final item table by each factor f (nothing is retrained), and
prints Recall@20 on the held-out items and on all test items:

    python benchmarks/cold_scale.py RUN_DIR/saved/LightGCN-sports20-motor-<hash>.pth --factors 1,1.5,2,3 \
        [--isolated_self_loops=False]

A factor written ``match`` is the trained items' mean row length divided by the held-out items' mean
row length in that final table: ``motor_unseen_norm: mean`` applied to the backbone's output instead
of to MOTOR's (for BM3 the output is H_i = layer mean + E_i, whose graph part MOTOR's rule cannot see).

For backbones whose ``forward()`` returns (user table [U, d], item table [I, d]) and whose scores
are computed from them (LightGCN, BM3, ...). With LightGCN's K = 1 layer, f = 2 undoes the 1/(K+1)
that the layer mean gives an item without edges (docs/motor-design.md section 6).
"""
import argparse

import torch

from mmrec_motor.experiments.plan import split_list
from mmrec_motor.quick_start import evaluator, load_run


def scaled_forward(forward, rows: torch.Tensor, factor: float):
    """``forward`` with the item table's ``rows`` multiplied by ``factor``."""
    def wrapped(*args, **kwargs):
        users, items = forward(*args, **kwargs)
        items = items.clone()
        items[rows] = items[rows] * factor
        return users, items
    return wrapped


def matching_factor(forward, rows: torch.Tensor) -> float:
    """Mean length of the trained rows of ``forward()``'s item table / that of ``rows``."""
    with torch.no_grad():
        lengths = forward()[1].norm(dim=1)
    held_out = torch.zeros_like(lengths, dtype=torch.bool)
    held_out[rows] = True
    return float(lengths[~held_out].mean() / lengths[held_out].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a cold-start run's best checkpoint (RUN_DIR/saved/*.pth)")
    parser.add_argument("--factors", default="1,1.5,2,3",
                        help="comma-separated factors; 'match' = the trained rows' mean length / the held-out rows'")
    parser.add_argument("--motor_unseen_neighbours", default="0",
                        help="MOTOR's neighbour rule to evaluate with (default 0: MOTOR's rows as trained; "
                             "auto: as the run's config says)")
    parser.add_argument("--isolated_self_loops", choices=["True", "False", "auto"], default="False",
                        help="the graph rule to evaluate with (default False: the graph as MMRec builds it)")
    args = parser.parse_args()
    loops = {"True": True, "False": False}.get(args.isolated_self_loops, "auto")
    neighbours = args.motor_unseen_neighbours
    run = load_run(args.checkpoint, overrides={"isolated_self_loops": loops, "motor_unseen_neighbours":
                                               int(neighbours) if neighbours.isdigit() else neighbours})
    if run.data.cold_items is None or len(run.data.cold_items) == 0:
        raise SystemExit(f"{args.checkpoint}: not a cold-start run (cold_item_ratio is 0)")
    model = run.model.eval()
    rows = torch.as_tensor(run.data.cold_items, device=next(model.parameters()).device)
    cold, every = evaluator(run.config, run.data, run.data.cold_test), evaluator(run.config, run.data,
                                                                                 run.data.test)
    forward = model.forward
    print("factor  cold recall@20  all recall@20")
    for name in split_list(args.factors, "--factors"):
        factor = matching_factor(forward, rows) if name == "match" else float(name)
        model.forward = scaled_forward(forward, rows, factor)
        print(f"{factor:<7.4g} {cold.evaluate(model)['recall@20']:<15.4f} {every.evaluate(model)['recall@20']:.4f}")
    model.forward = forward


if __name__ == "__main__":
    main()
