"""Diagnostic for the inductive cold-start protocol: the length of MOTOR's item vectors by the items'
training interactions, and what rescaling the unseen items' rows does (docs/motor-design.md section 9).

Loads a finished MOTOR cold-start run from its best checkpoint with ``motor_unseen_norm`` and
``motor_unseen_neighbours`` off (so the table is the trained network's own), then prints

* the mean length of MOTOR's item rows (and of their two parts: pooled tokens, fine cells) for the
  unseen items and for the trained ones by their training interactions;
* test Recall@20 / NDCG@20 on the held-out items and on all test items with the unseen rows of MOTOR's
  table multiplied by: the rules of ``motor_unseen_norm`` (mean, weighted), each ``--factors`` value,
  and per-item targets (``--local``: each unseen item gets the mean length of the trained items that
  share its first token, or its fine cell; ``--tokens-only``: each unseen row built from its pooled
  tokens alone, without its fine cell, then the ``mean`` rule). Nothing is retrained:

    python benchmarks/unseen_length.py RUN_DIR/saved/BPR-sports20-motor-<hash>.pth --factors 1.5,2 --local

Any backbone (the rows are changed where MOTOR hands its table to the backbone). For FREEDOM, whose
item-item graph carries unseen rows into trained ones in training too, a run trained with the rule
(``motor_unseen_norm``) differs from this evaluation-only rescaling.
"""
import argparse

import numpy as np
import torch

from mmrec_motor.experiments.plan import split_list
from mmrec_motor.motor.unseen import unseen_factor, unseen_weights
from mmrec_motor.quick_start import evaluator, load_run

BUCKETS = ((1, 1), (2, 2), (3, 5), (6, 10), (11, None))


def network_of(model):
    nets = [m.tcn for m in model.modules() if type(m).__name__ == "MotorItemEmbedding"]
    if not nets:
        raise SystemExit("not a MOTOR run (no MotorItemEmbedding in the model)")
    return nets[0]


def group_mean(groups: np.ndarray, values: np.ndarray, trained: np.ndarray) -> np.ndarray:
    """Per item: the mean of ``values`` over the trained items of its group (all trained items' mean
    when its group has none)."""
    sums = np.bincount(groups[trained], weights=values[trained], minlength=groups.max() + 1)
    counts = np.bincount(groups[trained], minlength=groups.max() + 1)
    return np.where(counts[groups] > 0, sums[groups] / np.maximum(counts[groups], 1), values[trained].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a MOTOR cold-start run's best checkpoint (RUN_DIR/saved/*.pth)")
    parser.add_argument("--factors", default="", help="comma-separated factors for the unseen rows")
    parser.add_argument("--local", action="store_true", help="also the per-item targets (first token, fine cell)")
    parser.add_argument("--tokens-only", action="store_true",
                        help="also the unseen rows built from their pooled tokens alone (no fine cell), rule mean")
    args = parser.parse_args()
    run = load_run(args.checkpoint, overrides={"motor_unseen_norm": "off", "motor_unseen_neighbours": 0})
    if run.data.cold_items is None or len(run.data.cold_items) == 0:
        raise SystemExit(f"{args.checkpoint}: not a cold-start run (cold_item_ratio is 0)")
    model, data = run.model.eval(), run.data
    net = network_of(model)
    counts = np.bincount(data.train.items, minlength=data.n_items)
    unseen = counts == 0
    forward = net.forward
    with torch.no_grad():
        full = forward().cpu()
        pooled = net._tokens_forward().cpu()
    parts = {"MOTOR row": full, "pooled tokens": pooled, "fine cells": full - pooled}
    groups = [("unseen", unseen)] + [(f"{lo}" + ("+" if hi is None else "" if hi == lo else f"-{hi}"),
                                      (counts >= lo) & (True if hi is None else counts <= hi)) for lo, hi in BUCKETS]
    print("mean length by training interactions: " + " | ".join(f"{name} ({int(mask.sum())})" for name, mask in groups))
    for label, table in parts.items():
        norms = table.norm(dim=1).numpy()
        print(f"  {label:14s} " + " ".join(f"{norms[mask].mean():.3f}" for _, mask in groups))
    print("mean cosine of each row to the mean row (1: every item points the same way): " + ", ".join(
        f"{label} {torch.nn.functional.cosine_similarity(table, table.mean(dim=0, keepdim=True)).mean():.3f}"
        for label, table in parts.items()))

    norms = full.norm(dim=1).numpy()
    mask_t = torch.as_tensor(unseen)
    factors = {"none": np.ones(data.n_items, dtype=np.float32)}
    for mode in ("mean", "weighted"):
        w = torch.as_tensor(unseen_weights(counts, mode))
        s = float(unseen_factor(full, w, mask_t))
        factors[f"rule {mode}"] = np.where(unseen, s, 1.0).astype(np.float32)
    for f in (float(x) for x in (split_list(args.factors, "--factors") if args.factors else [])):
        factors[f"x{f:g}"] = np.where(unseen, f, 1.0).astype(np.float32)
    if args.local:
        trained = ~unseen
        first = net.embedding.token_ids[:, 0].cpu().numpy()
        factors["first-token target"] = np.where(unseen, group_mean(first, norms, trained) / norms, 1.0).astype(np.float32)
        if net.fine_ids is not None:
            cells = net.fine_ids[:, 0].cpu().numpy()
            factors["fine-cell target"] = np.where(unseen, group_mean(cells, norms, trained) / norms,
                                                   1.0).astype(np.float32)
    tables = {name: (float(factor[unseen].mean()), full * torch.as_tensor(factor)[:, None])
              for name, factor in factors.items()}
    if args.tokens_only:
        tokens_only = torch.where(mask_t[:, None], pooled, full)
        s = float(unseen_factor(tokens_only, torch.as_tensor(unseen_weights(counts, "mean")), mask_t))
        tables["tokens only, rule mean"] = (s, torch.where(mask_t[:, None], pooled * s, full))
    cold, every = evaluator(run.config, data, data.cold_test), evaluator(run.config, data, data.test)
    device = next(net.parameters()).device
    print(f"{'unseen rows':22s} {'mean factor':>11s} {'cold R@20':>9s} {'cold N@20':>9s} {'all R@20':>8s} {'all N@20':>8s}")
    for name, (mean_factor, table) in tables.items():
        def fixed(idx=None, table=table.to(device)):
            return table if idx is None else table[idx]
        net.forward = fixed
        for module in model.modules():
            if type(module).__name__ == "MotorItemEmbedding":
                module.clear_cache()
        c, a = cold.evaluate(model), every.evaluate(model)
        print(f"{name:22s} {mean_factor:11.3f} {c['recall@20']:9.4f} {c['ndcg@20']:9.4f} "
              f"{a['recall@20']:8.4f} {a['ndcg@20']:8.4f}")
    net.forward = forward


if __name__ == "__main__":
    main()
