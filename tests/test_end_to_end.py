"""Whole runs through the command line: FREEDOM and BPR on toy, FREEDOM on the real lfm2k."""
import json
import subprocess
import sys

import pytest

from mmrec_motor.cli import main
from tests.conftest import REPO, require_shared


def overrides(dirs, **extra):
    values = {**dirs, **extra}
    return [f"--{k}={v}" for k, v in values.items()]


def run_cli(args):
    return main(["run"] + args)


@pytest.mark.parametrize("model, extra, n_combos", [
    ("FREEDOM", {"dropout": 0.8, "reg_weight": "[0.0,0.001]"}, 2),
    ("BPR", {"reg_weight": 1e-4}, 1),
])
def test_toy_run_writes_result_json_and_beats_random(tmp_path, run_dirs, model, extra, n_combos):
    result_file, topk_file = tmp_path / "result.json", tmp_path / "top.tsv"
    args = ["-m", model, "-d", "toy"] + overrides(
        run_dirs, data_path=tmp_path / "data", epochs=8, result_file=result_file, topk_file=topk_file, **extra)
    assert run_cli(args) == 0
    result = json.loads(result_file.read_text())
    assert (result["model"], result["dataset"], result["motor"]) == (model, "toy", False)
    assert len(result["combinations"]) == n_combos
    chosen = result["combinations"][result["chosen"]]
    assert all(chosen["valid"]["recall@20"] >= c["valid"]["recall@20"] for c in result["combinations"])
    for combo in result["combinations"]:
        assert set(combo["valid"]) == {f"{m}@{k}" for m in ("recall", "ndcg", "precision", "map")
                                       for k in (5, 10, 20, 50)}
        assert combo["params"]["total"] >= combo["params"]["trainable"] > 0
        assert combo["train_seconds_per_epoch"] > 0 and combo["eval_seconds"] > 0
        assert 0 <= combo["best_epoch"] < combo["epochs_run"] <= 8
    # item representation: the ID table, n_items x 64
    assert result["item_representation"]["params"] == 300 * 64
    # a random ranking of 300 items puts 20/300 of a user's test items in the top 20
    assert result["best"]["test"]["recall@20"] > 2 * 20 / 300
    lines = topk_file.read_text().splitlines()
    assert lines[0].split("\t")[:2] == ["userID", "top_1"] and len(lines[0].split("\t")) == 51
    users = [int(line.split("\t")[0]) for line in lines[1:]]
    assert len(users) == result["data"]["n_users"] == 400 and users == sorted(users)


def test_freedom_beats_bpr_on_toy(tmp_path, run_dirs):
    """The toy's features carry the latent factors: a multimodal model should use them."""
    scores = {}
    for model, extra in (("FREEDOM", {"dropout": 0.8, "reg_weight": 0.0}), ("BPR", {"reg_weight": 1e-4})):
        out = tmp_path / f"{model}.json"
        assert run_cli(["-m", model, "-d", "toy"] + overrides(
            run_dirs, data_path=tmp_path / "data", epochs=30, stopping_step=5, result_file=out, **extra)) == 0
        scores[model] = json.loads(out.read_text())["best"]["test"]["recall@20"]
    assert scores["FREEDOM"] > scores["BPR"]


def test_same_seed_same_metrics(tmp_path, run_dirs):
    results = []
    for i in range(2):
        out = tmp_path / f"r{i}.json"
        run_cli(["-m", "FREEDOM", "-d", "toy"] + overrides(
            run_dirs, data_path=tmp_path / "data", epochs=3, dropout=0.8, reg_weight=0.001, result_file=out))
        results.append(json.loads(out.read_text())["combinations"][0])
    assert results[0]["valid"] == results[1]["valid"] and results[0]["test"] == results[1]["test"]


def test_test_every_epoch_false_reports_the_same_and_evaluates_test_less(tmp_path, run_dirs):
    """test_every_epoch False: test only at a new best valid score; the run's metrics are unchanged."""
    results, logs = [], []
    for every in (True, False):
        out, log_dir = tmp_path / f"r{every}.json", tmp_path / f"log{every}"
        run_cli(["-m", "BPR", "-d", "toy"] + overrides(
            {**run_dirs, "log_dir": log_dir}, data_path=tmp_path / "data", epochs=40, stopping_step=3,
            reg_weight=1e-4, test_every_epoch=every, result_file=out))
        results.append(json.loads(out.read_text())["combinations"][0])
        logs.append(next(log_dir.glob("*.log")).read_text())
    keep = ("valid", "test", "best_epoch", "epochs_run")
    assert [results[0][k] for k in keep] == [results[1][k] for k in keep]
    epochs = results[0]["epochs_run"]
    assert logs[0].count("test result: \n") == epochs + 1            # each epoch, and the best at the end
    skipped = logs[1].count("test result: not evaluated")
    assert skipped >= 3 and logs[1].count("test result: \n") == epochs + 1 - skipped


def test_resume_continues_a_run(tmp_path, run_dirs):
    """Six epochs in one go equal three epochs, then a resumed run to six."""
    base = ["-m", "BPR", "-d", "toy"] + overrides(run_dirs, data_path=tmp_path / "data", reg_weight=1e-4,
                                                  stopping_step=100)
    full, part = tmp_path / "full.json", tmp_path / "part.json"
    run_cli(base + ["--epochs=6", f"--result_file={full}", f"--checkpoint_dir={tmp_path / 'a'}"])
    run_cli(base + ["--epochs=3", f"--checkpoint_dir={tmp_path / 'b'}"])
    run_cli(base + ["--epochs=6", "--resume=True", f"--result_file={part}", f"--checkpoint_dir={tmp_path / 'b'}"])
    full_run, resumed = (json.loads(p.read_text())["combinations"][0] for p in (full, part))
    assert len(resumed["train_seconds"]) == 6 and resumed["epochs_run"] == 6
    assert full_run["test"] == resumed["test"] and full_run["best_epoch"] == resumed["best_epoch"]


def test_cli_errors_are_clear(tmp_path, run_dirs, capsys):
    assert run_cli(["-m", "FREDOM", "-d", "toy"]) == 2
    assert "unknown model 'FREDOM'; available:" in capsys.readouterr().err
    assert run_cli(["-m", "BPR", "-d", "nope", f"--data_path={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'nope'" in err and "toy" in err
    assert main(["frobnicate"]) == 2


def test_nan_loss_names_the_epoch(tmp_path, run_dirs, capsys):
    code = run_cli(["-m", "BPR", "-d", "toy"] + overrides(
        run_dirs, data_path=tmp_path / "data", epochs=3, reg_weight=1e-4, learning_rate=".inf",
        result_file=tmp_path / "r.json"))
    assert code == 2
    assert "at epoch 0" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_nan_loss_stop_reports_the_best_epoch_before_it(tmp_path, run_dirs):
    """nan_loss: stop (MMRec's rule): a learning rate that explodes after epoch 0 makes the loss
    non-finite in epoch 1; the run ends there and reports epoch 0, the same metrics as a one-epoch run."""
    base = ["-m", "BPR", "-d", "toy"] + overrides(run_dirs, data_path=tmp_path / "data", reg_weight=1e-4)
    stopped, one = tmp_path / "stopped.json", tmp_path / "one.json"
    assert run_cli(base + ["--epochs=5", "--learning_rate_scheduler=[1e100,1]", "--nan_loss=stop",
                           f"--result_file={stopped}"]) == 0
    assert run_cli(base + ["--epochs=1", f"--result_file={one}"]) == 0
    run, reference = (json.loads(p.read_text())["combinations"][0] for p in (stopped, one))
    assert run["stopped_on_nan"] == "epoch 1, batch 1" and reference["stopped_on_nan"] == ""
    assert run["best_epoch"] == 0 and run["epochs_run"] == 1 and not run["stopped_early"]
    assert run["valid"] == reference["valid"] and run["test"] == reference["test"]


def test_main_py_and_module_entry_points(tmp_path, run_dirs):
    out = tmp_path / "r.json"
    args = ["-m", "BPR", "-d", "toy"] + overrides(run_dirs, data_path=tmp_path / "data", epochs=1,
                                                  reg_weight=0.1, result_file=out)
    for entry in ([sys.executable, str(REPO / "main.py")], [sys.executable, "-m", "mmrec_motor", "run"]):
        done = subprocess.run(entry + args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "epoch 0 training [time:" in done.stdout and json.loads(out.read_text())["model"] == "BPR"
        out.unlink()


def test_freedom_on_lfm2k(tmp_path, run_dirs):
    folder = require_shared("lfm2k")
    out = tmp_path / "lfm2k.json"
    assert run_cli(["-m", "FREEDOM", "-d", "lfm2k"] + overrides(
        run_dirs, data_path=folder.parent, epochs=3, dropout=0.8, reg_weight=0.0, result_file=out)) == 0
    result = json.loads(out.read_text())
    assert result["data"] == {"n_users": 1858, "n_items": 1425, "train": 44327, "valid": 4799, "test": 7219}
    # random ranking gets about 20/1425 of each user's items; three epochs already give far more
    assert result["best"]["test"]["recall@20"] > 0.15
