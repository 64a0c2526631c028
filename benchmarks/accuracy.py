"""Accuracy, ID vs MOTOR, several seeds, each grid at its first value (MMRec's defaults, no grid).

    python benchmarks/accuracy.py --models FREEDOM,BPR --dataset lfm2k --data_path ../shared/data \
        --variants id,motor --seeds 999,1000,1001 [--key=value ...]

Prints one markdown table: valid/test Recall@20 and NDCG@20 (mean ± std over seeds), the item
representation's parameters, train seconds per epoch.
"""
import json
import tempfile

from mmrec_motor.config import parse_overrides
from mmrec_motor.experiments.bench import run_one, scratch_overrides, script_parser
from mmrec_motor.experiments.tables import markdown_table, mean_std


def main() -> None:
    parser = script_parser("lfm2k")
    parser.add_argument("--seeds", default="999,1000,1001")
    parser.add_argument("--label", default="", help="extra text for the variant column")
    parser.add_argument("--json_out", default=None)
    args, rest = parser.parse_known_args()
    scratch = tempfile.mkdtemp(prefix="mmrec-motor-bench-")
    overrides = {"data_path": args.data_path, **scratch_overrides(scratch), **parse_overrides(rest)}
    rows, raw = [], []
    for model in args.models.split(","):
        for variant in args.variants.split(","):
            runs = [run_one(model, args.dataset, variant, int(s), overrides) for s in args.seeds.split(",")]
            raw.append({"model": model, "variant": variant, "runs": [
                {"seed": r["config"]["seed"], "valid": r["best"]["valid"], "test": r["best"]["test"],
                 "best_epoch": r["best"]["best_epoch"], "s_per_epoch": r["train_seconds_per_epoch"]}
                for r in runs]})
            pick = lambda split, key: [r["best"][split][key] for r in runs]
            rows.append([model, variant + args.label, mean_std(pick("valid", "recall@20")),
                         mean_std(pick("test", "recall@20")), mean_std(pick("test", "ndcg@20")),
                         f"{runs[0]['item_representation']['params']:,}",
                         f"{sum(r['train_seconds_per_epoch'] for r in runs) / len(runs):.2f}",
                         " ".join(str(r["best"]["best_epoch"]) for r in runs)])
    print(markdown_table(["model", "variant", "valid R@20", "test R@20", "test N@20",
                          "item params", "train s/epoch", "best epochs"], rows))
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump(raw, handle, indent=1)


if __name__ == "__main__":
    main()
