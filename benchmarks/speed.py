"""Train seconds per epoch and evaluation seconds at the true size of an Amazon dataset, with random
features of the real widths (4096-d image, 384-d text), ID and MOTOR side by side in one process.

    python benchmarks/speed.py --models FREEDOM,BPR --dataset baby --data_path ../shared/data \
        --variants id,motor --epochs 4 --num_threads 2

Models that refuse ``--motor`` (DualGNN, DRAGON) get a "refused" row for that variant.
Speed only: the features are random, so no accuracy is reported. The first epoch is left out of the
per-epoch mean (warm-up); tokenization time is reported separately for MOTOR.
"""
import tempfile

import numpy as np

from mmrec_motor.config import parse_overrides
from mmrec_motor.experiments.bench import random_feature_copy, run_one, scratch_overrides, script_parser
from mmrec_motor.experiments.tables import markdown_table
from mmrec_motor.motor import MotorNotApplicableError


def main() -> None:
    parser = script_parser("baby")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--num_threads", type=int, default=2)
    parser.add_argument("--scratch", default=None, help="folder for the random-feature copy")
    args, rest = parser.parse_known_args()
    scratch = args.scratch or tempfile.mkdtemp(prefix="mmrec-motor-speed-")
    overrides = {**random_feature_copy(args.dataset, args.data_path, scratch),
                 "epochs": args.epochs, "stopping_step": args.epochs,
                 "num_threads": args.num_threads, **scratch_overrides(scratch), **parse_overrides(rest)}
    rows = []
    for model in args.models.split(","):
        for variant in args.variants.split(","):
            try:
                result = run_one(model, args.dataset, variant, 999, overrides)
            except MotorNotApplicableError:       # DualGNN, DRAGON: no item ID table
                rows.append([model, variant, "refused (no item ID table)", "-", "-", "-", "-"])
                continue
            run = result["combinations"][0]
            steady = run["train_seconds"][1:] or run["train_seconds"]
            tokenizer = run["item_representation"].get("motor", {}).get("tokenizer", {})
            token_s = sum(s.get("seconds", 0.0) for s in tokenizer.values())
            rows.append([model, variant, f"{np.mean(steady):.2f}", f"{run['train_seconds'][0]:.2f}",
                         f"{run['eval_seconds']:.2f}", f"{run['item_representation']['params']:,}",
                         f"{token_s:.1f}" if tokenizer else "-"])
    print(markdown_table(["model", "variant", "train s/epoch (epochs 2+)", "first epoch s",
                          "eval s (valid)", "item params", "tokenize s"], rows))


if __name__ == "__main__":
    main()
