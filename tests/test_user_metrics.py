"""Per-user metrics files (``user_metrics_file``): the format, what a run writes, and the bench summary's
interval over the test users that reads them (mmrec_motor/experiments/report.py users_interval)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from mmrec_motor.cli import main
from mmrec_motor.experiments.bootstrap import change_interval
from mmrec_motor.experiments.report import users_interval
from mmrec_motor.fileio import read_user_metrics, user_metrics_writer, write_atomic
from tests.conftest import REPO, bench_args, summary_rows


def write_file(path, splits):
    write_atomic(str(path), user_metrics_writer(splits))
    return str(path)


def test_the_file_round_trips_and_bad_files_name_the_array(tmp_path):
    users, values = np.array([4, 1, 9]), {"recall@20": np.array([0.5, 0.0, 1.0]), "ndcg@20": np.array([.3, 0, .6])}
    path = write_file(tmp_path / "u.npz", {"valid": (users[:2], {"recall@20": values["recall@20"][:2]}),
                                           "test": (users, values)})
    stored = read_user_metrics(path)
    assert set(stored) == {"valid", "test"}
    assert stored["test"][0].dtype == np.int64 and np.array_equal(stored["test"][0], users)
    assert set(stored["test"][1]) == {"recall@20", "ndcg@20"}
    assert np.array_equal(stored["test"][1]["ndcg@20"], values["ndcg@20"])
    assert np.array_equal(stored["valid"][1]["recall@20"], [0.5, 0.0])

    with pytest.raises(ValueError, match=r"per-user metrics: test recall@20 has shape \(2,\), expected one "
                                         r"value per user \(3,\)"):
        user_metrics_writer({"test": (users, {"recall@20": np.zeros(2)})})
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"test:users": users, "test:recall@20": np.zeros(4)})
    with pytest.raises(ValueError, match=r"bad.npz: array 'test:recall@20' has shape \(4,\), expected \(3,\)"):
        read_user_metrics(str(bad))
    np.savez(bad, **{"valid:recall@20": np.zeros(3)})
    with pytest.raises(ValueError, match=r"bad.npz: array 'valid:recall@20' has no valid:users array"):
        read_user_metrics(str(bad))
    np.savez(bad, recall=np.zeros(3))
    with pytest.raises(ValueError, match=r"bad.npz: array 'recall' is not named <split>:users"):
        read_user_metrics(str(bad))


def test_a_run_writes_each_users_metrics_whose_means_are_its_results(tmp_path, run_dirs):
    result, users = tmp_path / "r.json", tmp_path / "out" / "u.npz"
    values = {**run_dirs, "data_path": tmp_path / "data", "epochs": 2, "result_file": result,
              "user_metrics_file": users, "reg_weight": "[0.1,2.0]"}    # two combinations: the chosen one's file
    assert main(["run", "-m", "BPR", "-d", "toy"] + [f"--{k}={v}" for k, v in values.items()]) == 0
    best = json.loads(result.read_text())["best"]
    stored = read_user_metrics(str(users))
    assert len(stored["test"][1]) == 16                           # 4 metrics x 4 cut-offs (overall.yaml)
    for split in ("valid", "test"):
        split_users, columns = stored[split]
        assert len(np.unique(split_users)) == len(split_users) > 100
        for key, column in columns.items():
            assert column.mean() == pytest.approx(best[split][key], abs=5.0001e-5), (split, key)  # 4 places


def _files(tmp_path, name, users, test_values):
    return {"user_metrics_path": write_file(tmp_path / f"{name}.npz", {
        "valid": (users, {"recall@20": test_values}), "test": (users, {"recall@20": test_values})})}


def test_users_interval_on_hand_made_files(tmp_path):
    users = np.arange(6)
    a = np.array([0.0, 0.5, 1.0, 0.0, 0.25, 1.0])
    side = {"id": [_files(tmp_path, "id1", users, a)], "motor": [_files(tmp_path, "m1", users, 1.5 * a)]}
    assert users_interval(side) == "[+50.0%, +50.0%]"             # a constant ratio: no spread over users
    # two seeds a side: each user's values averaged first; ID (a, 3a) -> 2a, MOTOR (a, a) -> a: -50%
    side = {"id": [_files(tmp_path, "i1", users, a), _files(tmp_path, "i2", users, 3 * a)],
            "motor": [_files(tmp_path, "m1", users, a), _files(tmp_path, "m2", users, a)]}
    assert users_interval(side) == "[-50.0%, -50.0%]"
    b = np.array([1.0, 0.0, 0.5, 0.5, 0.0, 1.0])
    side = {"id": [_files(tmp_path, "i1", users, a)], "motor": [_files(tmp_path, "m1", users, b)]}
    change = change_interval(a, b, 2000, 0)
    assert users_interval(side) == f"[{100 * change.low:+.1f}%, {100 * change.high:+.1f}%]"
    assert change.low < 0 < change.high

    assert users_interval({"id": [{"user_metrics_path": None}], "motor": side["motor"]}) == "-"
    assert users_interval(side, metric="ndcg@20") == "-"
    other = {"id": side["id"], "motor": [_files(tmp_path, "o", users + 1, b)]}
    assert users_interval(other) == "n/a (ID and MOTOR have other test users)"
    seeds = {"id": side["id"] + [_files(tmp_path, "s", users[:5], a[:5])], "motor": side["motor"]}
    assert users_interval(seeds) == "n/a (seeds with other test users)"
    zero = {"id": [_files(tmp_path, "z", users, 0 * a)], "motor": side["motor"]}
    assert users_interval(zero) == "n/a (ID scores 0)"


def test_bench_writes_the_files_and_its_summary_shows_the_interval(tmp_path, run_dirs):
    out = tmp_path / "bench"
    assert main(bench_args(tmp_path, run_dirs, out, "BPR", "id,motor", "1,2")) == 0
    names = [f"BPR-toy-{v}-{s}" for v in ("id", "motor") for s in (1, 2)]
    assert sorted(p.name for p in (out / "users").iterdir()) == sorted(n + ".npz" for n in names)
    per_run = {n: read_user_metrics(str(out / "users" / f"{n}.npz"))["test"][1]["recall@20"] for n in names}
    id_mean = (per_run["BPR-toy-id-1"] + per_run["BPR-toy-id-2"]) / 2
    motor_mean = (per_run["BPR-toy-motor-1"] + per_run["BPR-toy-motor-2"]) / 2
    change = change_interval(id_mean, motor_mean, 2000, 0)
    cell = summary_rows((out / "summary.md").read_text())["BPR"]["Δ R@20, 95% over users"]
    assert cell == f"[{100 * change.low:+.1f}%, {100 * change.high:+.1f}%]"

    # merged into another folder, the summary finds the files there (they moved with the runs)
    merged = tmp_path / "merged"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "merge_runs.py"), "--kind", "bench", str(merged),
                    str(out)], check=True, cwd=REPO, capture_output=True)
    assert sorted(p.name for p in (merged / "users").iterdir()) == sorted(n + ".npz" for n in names)
    for path in (out / "users").iterdir():
        path.unlink()
    assert summary_rows((merged / "summary.md").read_text())["BPR"]["Δ R@20, 95% over users"] == cell

    # a folder of runs made before the files existed shows "-"
    assert main(["report", str(out)]) == 0
    assert summary_rows((out / "summary.md").read_text())["BPR"]["Δ R@20, 95% over users"] == "-"
