"""MOTOR's ``motor_unseen_neighbours`` k on a finished cold-start run, nothing retrained.

Loads the run's best checkpoint once per k (``quick_start.load_run`` with the key overridden; the
neighbours are derived from the features, not saved), and prints test Recall@20 / NDCG@20 on the
held-out items, their share of the cold users' top 20 and Recall@20 with only the held-out items
ranked (``quick_start.cold_metrics``, docs/benchmarks.md section 25), and Recall@20 on all test items:

    python benchmarks/unseen_neighbours.py RUN_DIR/saved/LightGCN-sports20-motor-<hash>.pth --k 0,5,10,20

For backbones whose training never reads an unseen item's row (BPR, VBPR, LightGCN: their losses
and regularisers use the batch's rows) this is exactly the run with that k; where a full-table term
reads it (BM3's EmbLoss, FREEDOM's item-item graph) training would differ a little, so the numbers
are those of the trained model evaluated with the rule (docs/motor-design.md section 11).
"""
import argparse
import warnings

from mmrec_motor.experiments.plan import split_list
from mmrec_motor.quick_start import cold_metrics, evaluator, load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a cold-start MOTOR run's best checkpoint (RUN_DIR/saved/*.pth)")
    parser.add_argument("--k", default="0,5,10,20", help="comma-separated neighbour counts (0: off)")
    args = parser.parse_args()
    print("k    cold recall@20  cold ndcg@20  held-out share@20  among held-out recall@20  all recall@20")
    for k in (int(x) for x in split_list(args.k, "--k")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run = load_run(args.checkpoint, overrides={"motor_unseen_neighbours": k})
        if run.data.cold_items is None or len(run.data.cold_items) == 0:
            raise SystemExit(f"{args.checkpoint}: not a cold-start run (cold_item_ratio is 0)")
        model = run.model.eval()
        scores = cold_metrics(run.config, run.data, evaluator(run.config, run.data, run.data.cold_test), model)
        cold, among = scores["cold_test"], scores["cold_test_among"]
        share = scores["cold_test_share"]["held_out_share@20"]
        every = evaluator(run.config, run.data, run.data.test).evaluate(model)
        print(f"{k:<4d} {cold['recall@20']:<15.4f} {cold['ndcg@20']:<13.4f} {share:<18.3f} "
              f"{among['recall@20']:<25.4f} {every['recall@20']:.4f}")


if __name__ == "__main__":
    main()
