"""``mmrec-motor bench`` / ``report``: runs, resume, failures, reports (toy, two epochs)."""
import csv
import json
import os

import numpy as np
import pytest
from scipy.stats import ttest_rel

from mmrec_motor.cli import main
from mmrec_motor.config import ConfigError
from mmrec_motor.experiments import bench, store
from mmrec_motor.experiments.tables import stat
from tests.conftest import bench_args, summary_rows


def run_name(config):
    """A run's name (model-dataset-variant-seed) from the config it trains with."""
    return f"{config['model']}-{config['dataset']}-{'motor' if config['motor'] else 'id'}-{config['seed']}"


@pytest.fixture
def counted_runs(monkeypatch):
    """Names of the runs that bench actually trains (its quick_start wrapped with a counter)."""
    calls = []
    real = bench.quick_start

    def counting(config):
        calls.append(run_name(config))
        return real(config)

    monkeypatch.setattr(bench, "quick_start", counting)
    return calls


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def mean_of(cell):
    return float(cell.split("±")[0])


def test_bench_runs_resumes_and_reports(tmp_path, run_dirs, counted_runs, capsys):
    out = tmp_path / "bench"
    args = bench_args(tmp_path, run_dirs, out, "BPR,FREEDOM", "id,motor", "1,2")
    assert main(args) == 0
    names = {f"{m}-toy-{v}-{s}" for m in ("BPR", "FREEDOM") for v in ("id", "motor") for s in (1, 2)}
    assert set(counted_runs) == names
    assert {p for p in os.listdir(out / "runs")} == {n + ".json" for n in names}
    assert os.listdir(out / "log") and os.listdir(out / "saved")       # logs and checkpoints inside DIR
    progress = capsys.readouterr().err
    assert "[8/8]" in progress and "left" in progress

    rows = read_csv(out / "results.csv")
    assert len(rows) == 8
    assert {f"{r['model']}-{r['dataset']}-{r['variant']}-{r['seed']}" for r in rows} == names
    for column in ("valid_recall@20", "test_ndcg@20", "item_repr_params", "total_params",
                   "train_seconds_per_epoch", "eval_seconds", "epochs_run", "best_epoch"):
        assert all(r[column] != "" for r in rows), column
    assert all(int(r["epochs_run"]) == 2 for r in rows)

    summary = (out / "summary.md").read_text()
    assert summary.splitlines()[5].startswith("mmrec-motor bench -m BPR,FREEDOM -d toy")
    table = summary_rows(summary)
    assert set(table) == {"BPR", "FREEDOM"}
    for model, cells in table.items():
        for variant, label in (("id", "ID"), ("motor", "MOTOR")):
            mine = [r for r in rows if r["model"] == model and r["variant"] == variant]
            for metric, short in (("recall@20", "R@20"), ("ndcg@20", "N@20")):
                expected = np.mean([float(r[f"test_{metric}"]) for r in mine])
                assert mean_of(cells[f"{label} {short}"]) == pytest.approx(expected, abs=5.1e-5)  # 4 decimals
        pairs = {v: [float(r["test_recall@20"]) for r in sorted(
            (r for r in rows if r["model"] == model and r["variant"] == v), key=lambda r: int(r["seed"]))]
            for v in ("id", "motor")}
        p = ttest_rel(pairs["motor"], pairs["id"]).pvalue
        assert cells["p (paired t, R@20)"] == (f"{p:.3g}" if np.isfinite(p) else "n/a")
        assert cells["seeds ID/MOTOR"] == "2/2"
        id_params = int(cells["item params ID"].replace(",", ""))
        assert id_params == 300 * 64 and cells["params MOTOR/ID"].endswith("x")

    # a rerun trains nothing and leaves every run file as it was
    mtimes = {n: os.stat(out / "runs" / f"{n}.json").st_mtime_ns for n in names}
    counted_runs.clear()
    assert main(args) == 0
    assert counted_runs == []
    assert {n: os.stat(out / "runs" / f"{n}.json").st_mtime_ns for n in names} == mtimes
    assert capsys.readouterr().err.count("skipped (result exists)") == 8

    # an interrupted bench: only the missing runs are done
    (out / "runs" / "BPR-toy-motor-2.json").unlink()
    (out / "runs" / "FREEDOM-toy-id-1.json").unlink()
    assert main(args) == 0
    assert sorted(counted_runs) == ["BPR-toy-motor-2", "FREEDOM-toy-id-1"]
    assert len(read_csv(out / "results.csv")) == 8

    # report rebuilds the same files from the run JSONs
    before = {name: (out / name).read_bytes() for name in ("results.csv", "summary.md")}
    for name in before:
        (out / name).unlink()
    assert main(["report", str(out)]) == 0
    assert {name: (out / name).read_bytes() for name in before} == before


def test_a_failing_run_is_reported_and_the_others_complete(tmp_path, run_dirs, capsys):
    out = tmp_path / "bench"
    assert main(bench_args(tmp_path, run_dirs, out, "DualGNN,BPR", "motor", "1")) == 1
    err = capsys.readouterr().err
    assert "FAILED DualGNN-toy-motor-1" in err and "1 failed" in err
    assert (out / "runs" / "BPR-toy-motor-1.json").is_file()
    assert not (out / "runs" / "DualGNN-toy-motor-1.json").exists()
    assert "DualGNN" in (out / "runs" / "DualGNN-toy-motor-1.error.txt").read_text()
    rows = read_csv(out / "results.csv")
    assert [(r["model"], r["variant"]) for r in rows] == [("BPR", "motor")]
    summary = (out / "summary.md").read_text()
    assert "## Failed runs" in summary and "DualGNN-toy-motor-1" in summary
    bpr = summary_rows(summary)["BPR"]
    assert bpr["ID R@20"] == "-" and bpr["Δ R@20"] == "-" and bpr["p (paired t, R@20)"] == "n/a"


def test_summary_names_the_runs_a_nan_loss_ended(tmp_path, run_dirs):
    """Under nan_loss: stop a run that a NaN loss ends is a result (its best epoch before it), and the
    summary says which run, where, and which epoch it reports."""
    out = tmp_path / "bench"
    args = bench_args(tmp_path, run_dirs, out, "BPR", "id", "1") + [
        "--epochs=5", "--reg_weight=1e-4", "--learning_rate_scheduler=[1e100,1]", "--nan_loss=stop"]
    assert main(args) == 0
    summary = (out / "summary.md").read_text()
    assert ("## Runs ended by a NaN loss (nan_loss: stop)\n\n- `BPR-toy-id-1`: at epoch 1, batch 1; reported: "
            "its best-valid epoch before it, 0\n") in summary
    assert "## Failed runs" not in summary
    assert read_csv(out / "results.csv")[0]["best_epoch"] == "0"


def test_bench_refuses_keys_it_owns_and_mixed_overrides(tmp_path, run_dirs, capsys):
    out = tmp_path / "bench"
    assert main(bench_args(tmp_path, run_dirs, out, "BPR", "id", "1") + ["--seed=3"]) == 2
    assert "--seed" in capsys.readouterr().err
    assert main(bench_args(tmp_path, run_dirs, out, "BPR", "id", "1") + ["--user_metrics_file=x.npz"]) == 2
    assert "drop --user_metrics_file" in capsys.readouterr().err
    store.record_bench(str(out), "first", ["BPR"], ["toy"], ["id"], [1], {"epochs": 2})
    with pytest.raises(ConfigError, match="other overrides"):
        store.record_bench(str(out), "second", ["BPR"], ["toy"], ["id"], [1], {"epochs": 3})
    record = store.record_bench(str(out), "third", ["FREEDOM"], ["toy"], ["id"], [1], {"epochs": 2})
    assert record["commands"] == ["first", "third"]
    assert json.loads((out / "bench.json").read_text())["command"] == "third"


def test_a_single_value_has_no_spread_in_the_tables():
    """One seed prints its value alone; "± 0.0000" would claim a spread that was never measured."""
    assert stat([0.25]) == "0.2500"
    assert stat([0.1, 0.3, None]) == "0.2000 ± 0.1414"      # ddof=1 over the known values
    assert stat([None]) == "-"


def test_report_needs_a_bench_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a bench folder" in capsys.readouterr().err


def test_random_feature_copy_keeps_the_interactions_and_draws_features_of_the_real_widths(tmp_path):
    from mmrec_motor.config import Config
    from mmrec_motor.data.features import load_features
    from mmrec_motor.data.loader import load_data
    from mmrec_motor.experiments.bench import random_feature_copy

    data_path, scratch = tmp_path / "data", tmp_path / "scratch"
    overrides = random_feature_copy("toy", str(data_path), str(scratch))
    assert overrides == {"data_path": str(scratch), "vision_feature_file": "image_feat.npy",
                         "text_feature_file": "text_feat.npy"}
    link = scratch / "toy" / "toy.inter"
    assert link.is_symlink() and os.path.samefile(link, data_path / "toy" / "toy.inter")
    n_items = load_data(Config("BPR", "toy", {"data_path": str(data_path)})).n_items      # 300
    assert np.load(scratch / "toy" / "image_feat.npy").shape == (n_items, 4096)
    assert np.load(scratch / "toy" / "text_feat.npy").shape == (n_items, 384)
    copy_config = Config("BPR", "toy", overrides)
    assert load_data(copy_config).n_items == n_items
    features = load_features(copy_config, n_items)          # what a model of the copy reads
    assert features["v"].shape == (n_items, 4096) and features["t"].shape == (n_items, 384)
