"""Milliseconds per forward+backward of the Token Cross Network over the whole catalogue.

The backbones read the full item table every optimisation step, so one training step runs the TCN
over all n items; this script times exactly that: ``w = net(); w.square().sum().backward()`` at Baby's
size (n = 7050 items, 2 modalities x 8 sub-spaces x K = 256 codewords, d = 64, 2 layers, rank 8), with
random tokens, on ONE torch thread (the training setting on a shared 2-core machine). One warm-up step,
then the mean of ``--reps`` steps, per variant (mean / agnostic / specific) and per cross width
(``--cross_dims``: motor_tcn_dim values; 0 = d, no projection).

    python benchmarks/tcn_speed.py                       # default c = 16
    python benchmarks/tcn_speed.py --cross_dims 16,0     # also the uncompressed c = d = 64
"""
import argparse
import time

import numpy as np
import torch

from mmrec_motor.motor import TokenCrossNetwork


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n_items", type=int, default=7050)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--subspaces", type=int, default=8, help="tokens per item per modality")
    parser.add_argument("--modalities", type=int, default=2)
    parser.add_argument("--codebook", type=int, default=256)
    parser.add_argument("--variants", default="mean,agnostic,specific")
    parser.add_argument("--cross_dims", default="16", help="motor_tcn_dim values, comma-separated")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    toks = [rng.integers(0, args.codebook, (args.n_items, args.subspaces)) for _ in range(args.modalities)]
    sizes = [args.codebook] * args.modalities
    print(f"n={args.n_items} d={args.dim} L={args.modalities * args.subspaces} K={args.codebook} "
          f"threads={torch.get_num_threads()} reps={args.reps}")
    for c in [int(x) for x in args.cross_dims.split(",")]:
        for variant in args.variants.split(","):
            if variant == "mean" and c != int(args.cross_dims.split(",")[0]):
                continue  # mean ignores the cross width
            net = TokenCrossNetwork(toks, sizes, args.dim, variant=variant, cross_dim=c)

            def step():
                w = net()
                w.square().sum().backward()

            step()
            t = time.perf_counter()
            for _ in range(args.reps):
                step()
            ms = (time.perf_counter() - t) / args.reps * 1000
            params = sum(p.numel() for p in net.parameters())
            print(f"{variant:9s} c={net.cross_dim:3d}  {ms:7.1f} ms/step  params={params:,} "
                  f"(tcn {net.cross_params():,})")


if __name__ == "__main__":
    main()
