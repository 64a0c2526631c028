"""Diagnostic for LATTICE's learned item graph: the row sums (degrees) of its cosine kNN graphs.

LATTICE normalises its learned graph as D^{-1/2} W D^{-1/2} with D the row sums of the top-k cosine
similarities, which can be negative (MMRec's ``compute_normalized_laplacian`` does the same). A row
whose k similarities sum to zero or less makes D^{-1/2} NaN, and the next loss is NaN
(docs/benchmarks.md section 25). For a finished run's best checkpoint, prints per modality and for
the mixed learned graph: the smallest degrees, how many rows are <= 0, and the smallest similarity
kept; then the item with the smallest mixed row sum, its training interactions and its row sum per
modality:

    python benchmarks/lattice_degrees.py RUN_DIR/saved/LATTICE-lfm2k-motor-<hash>.pth
"""
import argparse
from typing import Dict, Optional, Tuple

import torch

from mmrec_motor.models.graphs import cosine_knn_edges
from mmrec_motor.motor.unseen import training_item_counts
from mmrec_motor.quick_start import load_run


def learned_degrees(model) -> Dict[str, Tuple[torch.Tensor, Optional[float]]]:
    """Row sums of LATTICE's learned kNN graphs before normalisation: per modality m, d_m [I] (the
    sums of each item's k largest cosines of the projected features) with the smallest similarity
    kept, and ``mixed``: sum_m a_m d_m, a = softmax(modal_weight) (d_m alone with one modality),
    the D that LATTICE's D^{-1/2} reads."""
    out = {}
    with torch.no_grad():
        mix = torch.softmax(model.modal_weight, dim=0)
        mixed = torch.zeros(model.n_items)
        for index, m in enumerate(model.modalities):
            rows, _, sims = cosine_knn_edges(model._projected(m), model.knn_k)
            degree = torch.zeros(model.n_items, dtype=sims.dtype).index_add(0, rows, sims)
            mixed += (mix[index] if len(model.modalities) == 2 else 1.0) * degree
            out[m] = (degree, float(sims.min()))
    out["mixed"] = (mixed, None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a LATTICE run's best checkpoint (RUN_DIR/saved/*.pth)")
    args = parser.parse_args()
    run = load_run(args.checkpoint)
    model = run.model
    if type(model).__name__ != "LATTICE":
        raise SystemExit(f"{args.checkpoint}: a {type(model).__name__} run, expected LATTICE")
    degrees = learned_degrees(model)
    for name, (degree, smallest) in degrees.items():
        kept = "" if smallest is None else f", smallest similarity kept {smallest:.3f}"
        print(f"{name}: smallest degrees {[round(x, 3) for x in degree.sort().values[:3].tolist()]}, "
              f"rows <= 0: {int((degree <= 0).sum())} of {model.n_items}{kept}")
    item = int(degrees["mixed"][0].argmin())
    counts = training_item_counts(run.data, model.n_items)
    print(f"smallest mixed row: item {item}, {int(counts[item])} training interactions, "
          + ", ".join(f"{m} {float(degrees[m][0][item]):.3f}" for m in model.modalities))


if __name__ == "__main__":
    main()
