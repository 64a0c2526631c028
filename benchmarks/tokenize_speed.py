"""Tokenization time at the true item counts of Baby, Sports and Clothing, with random features of
the real widths (4096-d image, 384-d text): fresh (empty cache) and again from the LMDB cache.

    python benchmarks/tokenize_speed.py [--datasets baby,sports,clothing] [--num_threads 2] [--key=value ...]

MOTOR's settings come from configs/model/MOTOR.yaml (overridable: --motor_quantizer=opq ...).
Random features: speed only. Statistics of random data say nothing about real features.
"""
import argparse
import tempfile
import time

import numpy as np
import torch

from mmrec_motor.config import Config, parse_overrides
from mmrec_motor.experiments.tables import markdown_table
from mmrec_motor.motor import TokenCache, TokenizerParams
from mmrec_motor.motor.hook import motor_setting

ITEMS = {"baby": 7050, "sports": 18357, "clothing": 23033}
WIDTHS = {"image (4096-d)": 4096, "text (384-d)": 384}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="baby,sports,clothing")
    parser.add_argument("--num_threads", type=int, default=2)
    args, rest = parser.parse_known_args()
    torch.set_num_threads(args.num_threads)
    config = Config("FREEDOM", "toy", parse_overrides(rest))
    params = TokenizerParams(quantizer=motor_setting(config, "motor_quantizer"),
                             num_subspaces=int(motor_setting(config, "motor_num_subspaces")),
                             nbits=int(motor_setting(config, "motor_nbits")),
                             normalize=motor_setting(config, "motor_normalize"),
                             pca_dim=motor_setting(config, "motor_pca_dim"), seed=999)
    rows = []
    rng = np.random.default_rng(0)
    for dataset in args.datasets.split(","):
        n = ITEMS[dataset]
        for label, width in WIDTHS.items():
            features = rng.standard_normal((n, width), dtype=np.float32)
            with tempfile.TemporaryDirectory() as folder, TokenCache(folder) as cache:
                began = time.perf_counter()
                tokens, stats = cache.tokenize(features, params, n)
                fresh = time.perf_counter() - began
                began = time.perf_counter()
                again, stats_hit = cache.tokenize(features, params, n)
                hit = time.perf_counter() - began
            assert np.array_equal(tokens, again) and stats_hit.get("from_cache")
            rows.append([dataset, n, label, params.quantizer, f"{fresh:.1f}", f"{hit:.3f}"])
    print(markdown_table(["dataset", "items", "modality", "quantizer", "fresh s", "cache hit s"], rows))


if __name__ == "__main__":
    main()
