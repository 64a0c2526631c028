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


def random_feature_copy(dataset: str, data_path: str, scratch: str, seed: int = 0) -> Dict[str, str]:
    """A copy of ``dataset`` under ``scratch`` for speed and memory runs (never for accuracy): its
    real ``.inter`` (linked) with random features of the real widths, image [n_items, 4096] and
    text [n_items, 384]. Returns the overrides that point a run at the copy."""
    from mmrec_motor.quick_start import load_data       # generates toy on first use

    source = Config("BPR", dataset, {"data_path": data_path})
    n_items = load_data(source).n_items
    folder = os.path.join(scratch, dataset)
    os.makedirs(folder, exist_ok=True)
    inter = os.path.join(data_path, dataset, source["inter_file_name"])
    link = os.path.join(folder, os.path.basename(inter))
    if not os.path.exists(link):
        os.symlink(os.path.abspath(inter), link)
    rng = np.random.default_rng(seed)
    files = {"vision_feature_file": ("image_feat.npy", 4096), "text_feature_file": ("text_feat.npy", 384)}
    for name, width in files.values():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            np.save(path, rng.standard_normal((n_items, width), dtype=np.float32))
    return {"data_path": scratch, **{key: name for key, (name, _) in files.items()}}


def markdown_table(header: List[str], rows: List[List[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
