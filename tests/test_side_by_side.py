"""benchmarks/parallel.py (N commands at a time, stopped at a deadline) and benchmarks/merge_runs.py
(bench folders run side by side, merged into one report)."""
import csv
import json
import subprocess
import sys
import time

from mmrec_motor.cli import main
from tests.conftest import REPO


def run_script(name, *args, timeout=120):
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / name), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_parallel_runs_in_order_and_stops_at_the_deadline(tmp_path):
    tasks = tmp_path / "tasks.txt"
    marker = tmp_path / "late"
    tasks.write_text(f"# a comment\necho first\n\nfalse\nsleep 60; touch {marker}\necho never\n")
    start = time.monotonic()
    done = run_script("parallel.py", tasks, "--jobs", 3, "--deadline", 3, "--logs", tmp_path / "logs")
    assert time.monotonic() - start < 30                 # the sleeper was stopped, not waited for
    assert done.returncode == 1, done.stdout
    lines = done.stdout.splitlines()
    assert any(line.startswith("[ok in") and line.endswith("line 2: echo first") for line in lines)
    assert any(line.startswith("[exit 1 in") and line.endswith("line 4: false") for line in lines)
    assert any(line.startswith("[stopped at deadline") and "line 5:" in line for line in lines)
    # jobs=3: "echo never" (line 6) started as soon as a slot was free, and finished
    assert any(line.endswith("line 6: echo never") and line.startswith("[ok") for line in lines)
    assert lines[-1] == "3 finished (1 failed: lines [4]), 1 stopped or not started"
    assert (tmp_path / "logs" / "2.log").read_text() == "first\n"
    assert not marker.exists()


def test_parallel_refuses_zero_jobs(tmp_path):
    (tmp_path / "t.txt").write_text("true\n")
    done = run_script("parallel.py", tmp_path / "t.txt", "--jobs", 0, "--logs", tmp_path / "logs")
    assert done.returncode == 2 and "--jobs must be at least 1, got 0" in done.stderr


def bench(tmp_path, run_dirs, out, seeds):
    values = {"data_path": tmp_path / "data", "epochs": 2, "num_threads": 1,
              **{k: run_dirs[k] for k in ("graph_cache_dir", "motor_cache_dir", "use_gpu")}}
    argv = (["bench", "-m", "BPR", "-d", "toy", "--variants", "id", "--seeds", seeds, "--out", str(out)]
            + [f"--{k}={v}" for k, v in values.items()])
    assert main(argv) == 0


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_merged_folders_report_like_one_bench(tmp_path, run_dirs):
    bench(tmp_path, run_dirs, tmp_path / "one", "1,2")
    bench(tmp_path, run_dirs, tmp_path / "a", "1")
    bench(tmp_path, run_dirs, tmp_path / "b", "2")
    merged = tmp_path / "merged"
    done = run_script("merge_runs.py", "--kind", "bench", merged, tmp_path / "a", tmp_path / "b")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"2 runs merged into {merged}")
    # CPU runs are deterministic: the merged folder holds exactly the runs of the single bench
    metric = "test_recall@20"
    assert [(r["seed"], r[metric]) for r in rows(merged / "results.csv")] == \
        [(r["seed"], r[metric]) for r in rows(tmp_path / "one" / "results.csv")]
    commands = json.loads((merged / "bench.json").read_text())["commands"]
    assert len(commands) == 2 and "--seeds 1 " in commands[0] and "--seeds 2 " in commands[1]
    assert "| BPR |" in (merged / "summary.md").read_text()


def test_merge_refuses_a_clash(tmp_path, run_dirs):
    bench(tmp_path, run_dirs, tmp_path / "a", "1")
    merged = tmp_path / "merged"
    assert run_script("merge_runs.py", "--kind", "bench", merged, tmp_path / "a").returncode == 0
    run = merged / "runs" / "BPR-toy-id-1.json"
    run.write_text(run.read_text().replace('"model"', '"model" ', 1))
    done = run_script("merge_runs.py", "--kind", "bench", merged, tmp_path / "a")
    assert done.returncode != 0
    assert f"{run} exists with other content than" in done.stderr


def test_merge_names_the_kinds(tmp_path):
    done = run_script("merge_runs.py", "--kind", "nope", tmp_path / "m", tmp_path)
    assert done.returncode == 2 and "invalid choice: 'nope'" in done.stderr
