"""The embedded default dataset ``toy``: small, deterministic, in MMRec's layout, with signal in its
features.

Generative story (seeded, so the files are identical on every machine):
    z_u ~ N(0, I_r) per user, z_i ~ N(0, I_r) per item                           (r latent factors)
    p(item i | user u) proportional to exp(beta * z_u . z_i) * pop_i              (pop_i log-normal)
    each user draws n_u ~ 8 + Poisson(6) distinct items
    image_feat = tanh(z_i W_v) + sigma * noise   (64-d),  text_feat = z_i W_t + sigma * noise (32-d)
The split follows MMRec's preprocessing: per user, n < 10 gives n-2 train, 1 valid, 1 test; otherwise
int(0.2 n) items go to valid+test (test takes the odd one) and the rest to train.
Because the features are functions of the same z_i that drives the interactions, a model that reads
them can beat an ID-only model, which must learn z_i from a handful of interactions.
"""
from __future__ import annotations

import os

import numpy as np

from mmrec_motor.fileio import write_atomic, write_text

TOY_USERS, TOY_ITEMS, TOY_FACTORS = 400, 300, 8


def split_labels(n: int) -> np.ndarray:
    """MMRec's per-user split of n shuffled interactions into x_label values 0/1/2."""
    if n < 10:
        n_valid, n_test = 1, 1
    else:
        held = int(0.2 * n)
        n_valid = held // 2
        n_test = held - n_valid
    return np.array([0] * (n - n_valid - n_test) + [1] * n_valid + [2] * n_test, dtype=np.int64)


def generate_toy(folder: str, seed: int = 2024) -> None:
    """Write ``toy.inter``, ``image_feat.npy`` and ``text_feat.npy`` into ``folder``."""
    rng = np.random.default_rng(seed)
    z_user = rng.normal(size=(TOY_USERS, TOY_FACTORS))
    z_item = rng.normal(size=(TOY_ITEMS, TOY_FACTORS))
    popularity = rng.lognormal(0.0, 0.7, size=TOY_ITEMS)
    logits = 1.2 * z_user @ z_item.T + np.log(popularity)
    rows = []
    for user in range(TOY_USERS):
        n = min(8 + rng.poisson(6), TOY_ITEMS // 2)
        prob = np.exp(logits[user] - logits[user].max())
        items = rng.choice(TOY_ITEMS, size=n, replace=False, p=prob / prob.sum())
        for item, label in zip(items, split_labels(n)):
            rows.append((user, int(item), 1, 0, int(label)))
    w_image = rng.normal(size=(TOY_FACTORS, 64)) / np.sqrt(TOY_FACTORS)
    w_text = rng.normal(size=(TOY_FACTORS, 32)) / np.sqrt(TOY_FACTORS)
    image = np.tanh(z_item @ w_image) + 0.3 * rng.normal(size=(TOY_ITEMS, 64))
    text = z_item @ w_text + 0.3 * rng.normal(size=(TOY_ITEMS, 32))
    os.makedirs(folder, exist_ok=True)
    # Each file is written under a temporary name of this process's own and renamed (fileio): an
    # interrupted generation never leaves a partial dataset, and runs that generate toy at the same time
    # (side by side, e.g. benchmarks/parallel.py) each write whole, identical files.
    for name, array in (("image_feat.npy", image), ("text_feat.npy", text)):
        write_atomic(os.path.join(folder, name), lambda handle, a=array: np.save(handle, a.astype(np.float32)))
    lines = ["userID\titemID\trating\ttimestamp\tx_label\n"] + ["\t".join(map(str, row)) + "\n" for row in rows]
    write_text(os.path.join(folder, "toy.inter"), "".join(lines))  # last: the marker


def ensure_toy(data_path: str) -> str:
    """Generate ``<data_path>/toy`` unless its ``toy.inter`` exists; returns the folder."""
    folder = os.path.join(data_path, "toy")
    if not os.path.isfile(os.path.join(folder, "toy.inter")):
        generate_toy(folder)
    return folder
