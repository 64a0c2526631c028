"""Same seed, same numbers: two command-line runs of FREEDOM with MOTOR on toy, each tokenizing and
building its graphs from scratch (separate caches), give exactly the same metrics and rankings (CPU)."""
import json

from mmrec_motor.cli import main


def test_freedom_with_motor_is_deterministic_on_cpu(tmp_path):
    results, rankings = [], []
    for i in range(2):
        run = tmp_path / f"run{i}"
        values = {"data_path": tmp_path / "data", "epochs": 3, "dropout": 0.8, "reg_weight": 1e-3, "seed": 7,
                  "use_gpu": False, "num_threads": 1, "log_dir": run / "log", "checkpoint_dir": run / "saved",
                  "graph_cache_dir": run / "graphs", "motor_cache_dir": run / "tokens",
                  "result_file": run / "r.json", "topk_file": run / "top.tsv"}
        assert main(["run", "-m", "FREEDOM", "-d", "toy", "--motor"]
                    + [f"--{k}={v}" for k, v in values.items()]) == 0
        results.append(json.loads((run / "r.json").read_text()))
        rankings.append((run / "top.tsv").read_text())
    first, second = (r["combinations"][0] for r in results)
    assert results[0]["motor"] is True
    for key in ("valid", "test", "best_epoch", "epochs_run"):
        assert first[key] == second[key], key
    tokens = [r["item_representation"]["motor"]["tokenizer"] for r in results]
    for modality in ("v", "t"):
        assert not tokens[0][modality]["from_cache"] and not tokens[1][modality]["from_cache"]
        stats = [{k: v for k, v in t[modality].items() if "seconds" not in k and k != "file"} for t in tokens]
        assert stats[0] == stats[1]
    assert rankings[0] == rankings[1]
