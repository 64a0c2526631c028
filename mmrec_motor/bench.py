"""Side-by-side runs for benchmarks: one model x dataset x variant (id / motor) x seed at a time.

``first_grid_values`` reduces every grid to its first value, the convention of the reference
numbers in docs/benchmarks.md ("MMRec's defaults, no grid").
"""
from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, Mapping

import numpy as np

from mmrec_motor.config import Config


def first_grid_values(model: str, dataset: str, overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """Overrides that pin each grid key (but seed) to its first yaml value, unless already given."""
    config = Config(model, dataset, dict(overrides))
    pinned = dict(overrides)
    for key in config.grid_keys():
        value = config[key]
        if key != "seed" and key not in overrides and isinstance(value, list):
            pinned[key] = value[0]
    return pinned


def run_one(model: str, dataset: str, variant: str, seed: int, overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """Train and evaluate one combination; returns quick_start's result dict."""
    from mmrec_motor.quick_start import quick_start

    if variant not in ("id", "motor"):
        raise ValueError(f"variant must be 'id' or 'motor', got {variant!r}")
    values = first_grid_values(model, dataset, overrides)
    values.update({"seed": seed, "motor": variant == "motor"})
    return quick_start(Config(model, dataset, values))


def mean_std(values: Iterable[float]) -> str:
    array = np.asarray(list(values), dtype=float)
    return f"{array.mean():.4f} ± {array.std(ddof=1) if len(array) > 1 else 0.0:.4f}"


def random_features(folder: str, inter_source: str, shapes: Mapping[str, int], n_items: int,
                    seed: int = 0) -> None:
    """A dataset folder for speed and memory runs: the real ``.inter`` (linked) with random
    features of the given widths (never use it for accuracy)."""
    os.makedirs(folder, exist_ok=True)
    link = os.path.join(folder, os.path.basename(inter_source))
    if not os.path.exists(link):
        os.symlink(os.path.abspath(inter_source), link)
    rng = np.random.default_rng(seed)
    for name, width in shapes.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            np.save(path, rng.standard_normal((n_items, width), dtype=np.float32))


def markdown_table(header: List[str], rows: List[List[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
