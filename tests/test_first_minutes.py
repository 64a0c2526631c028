"""What a new user meets first (issue #16): the main job in seconds, readable output, a fast --help
that lists the common keys, and a thread count that does not oversubscribe a loaded machine."""
import os
import re
import subprocess
import sys
import time

import pytest

from mmrec_motor import threads
from mmrec_motor.cli import RUN_KEYS, main
from mmrec_motor.config import Config, ConfigError, grid, grid_note
from mmrec_motor.logs import console_audience
from mmrec_motor.progress import duration, epoch_line, metric_table
from tests.conftest import REPO


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra)
    return env


# --- --help -----------------------------------------------------------------------------------------

def test_help_answers_fast_without_torch():
    """The top-level help and every command's (the analyses too: their parsers live in
    mmrec_motor/experiments/commands.py, apart from the modules that run them)."""
    code = ("import sys, time\n"
            "from mmrec_motor.cli import COMMANDS, main\n"
            "began = time.perf_counter()\n"
            "main(['--help'])\n"
            "for name in COMMANDS:\n"
            "    try:\n        main([name, '--help'])\n    except SystemExit as stop:\n"
            "        assert stop.code == 0, name\n"
            "    else:\n        raise AssertionError(name + ' --help did not exit')\n"
            "print('SECONDS', time.perf_counter() - began)\n"
            "print('LOADED', [m for m in ('torch', 'faiss', 'pandas', 'lmdb') if m in sys.modules])\n")
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(),
                          timeout=120, cwd=REPO)
    wall = time.perf_counter() - began
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout                    # torch and faiss load only when a command runs
    assert wall < 5, f"--help took {wall:.1f}s (the issue asks < 2 s; 5 s leaves room for a busy CI)"


def test_run_help_lists_the_common_keys_one_line_each(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["run", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for key in ("--motor", "--data_path=", "--epochs=", "--result_file=", "--topk_file=", "--resume=",
                "--num_threads=", "--verbose=", "--grid=", "--key=value"):
        lines = [line for line in out.splitlines() if line.strip().startswith(key)]
        assert len(lines) == 1, (key, out)
        assert len(lines[0].split(None, 1)) == 2          # the key and what it does, on one line
    assert RUN_KEYS.splitlines()[0] in out


# --- the grid of the main job --------------------------------------------------------------------------

def test_toy_runs_one_combination_unless_asked_for_the_grid():
    config = Config("FREEDOM", "toy")
    assert config["grid"] == "first"
    assert [values for _, values in grid(config)] == [(999, 0.8, 0.0)]
    assert "1 of 8 combinations; --grid=full runs them all" in grid_note(config, 1)
    assert len(grid(Config("FREEDOM", "toy", {"grid": "full"}))) == 8
    # a list given on the command line is searched whole; the other grid keys keep their first value
    wanted = Config("FREEDOM", "toy", {"reg_weight": [0.0, 1e-4], "seed": [1, 2]})
    assert [values for _, values in grid(wanted)] == [(1, 0.8, 0.0), (1, 0.8, 1e-4), (2, 0.8, 0.0),
                                                     (2, 0.8, 1e-4)]
    assert len(grid(Config("FREEDOM", "lfm2k"))) == 8      # other datasets: the whole grid, as MMRec
    assert grid_note(Config("FREEDOM", "lfm2k"), 8) == ""


@pytest.mark.parametrize("key, value", [("grid", "some"), ("verbose", "loud")])
def test_grid_and_verbose_values_are_checked(key, value):
    with pytest.raises(ConfigError, match=f"config key '{key}' is '{value}'; expected"):
        Config("BPR", "toy", {key: value})


# --- threads -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cores, busy, expected", [(2, 0.0, 2), (2, 0.4, 2), (2, 1.0, 1), (2, 1.6, 1),
                                                   (2, 3.0, 1), (8, 2.4, 6), (1, 0.0, 1)])
def test_free_threads_leave_the_busy_cores_alone(cores, busy, expected):
    assert threads.free_threads(cores, busy) == expected


def test_thread_choice_order_num_threads_then_environment_then_free_cores(monkeypatch):
    monkeypatch.setattr(threads, "_chosen", None)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose_threads(5) == (5, "num_threads")
    assert threads.choose_threads(None) == (3, "OMP_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "busy_cores", lambda: (1.2, "load average 1.20"))
    count, why = threads.choose_threads(None)
    assert count == 3 and "4 usable core(s), load average 1.20" in why
    monkeypatch.setattr(threads, "busy_cores", lambda: (0.0, "idle"))
    assert threads.choose_threads(None)[0] == 3            # chosen once per process: a grid keeps it


def test_busy_cores_sees_a_cpu_bound_job():
    if not os.path.exists("/proc/stat") or threads.usable_cores() < 2:
        pytest.skip("needs Linux's /proc/stat and two cores")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        busy, how = threads.busy_cores(0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy >= 0.7, how


def test_passive_wait_is_set_before_torch_and_an_explicit_policy_is_kept(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    threads.prefer_passive_wait()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    threads.prefer_passive_wait()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


# --- readable output -------------------------------------------------------------------------------------

def test_output_helpers():
    assert console_audience(None) == ["brief", "always"]
    assert console_audience(True) == ["detail", "always"] and console_audience(False) == []
    assert duration(4.24) == "4.2s" and duration(185) == "3m 05s" and duration(7260) == "2h 01m"
    assert epoch_line(3, 0.85951, 0.104, "recall@20", 0.56, 0.012, True) == \
        "epoch 3 training [time: 0.10s, train loss: 0.8595] | valid recall@20 0.5600 * | eval 0.01s"
    assert epoch_line(3, 0.85951, 0.104, "recall@20") == "epoch 3 training [time: 0.10s, train loss: 0.8595]"
    table = metric_table({"valid": {"recall@5": 0.1, "recall@10": 0.2, "ndcg@5": 0.3, "ndcg@10": 0.4},
                          "test": {"recall@5": 0.5, "recall@10": 0.6, "ndcg@5": 0.7, "ndcg@10": 0.8}})
    assert table.splitlines() == ["          valid             test",
                                  "          @5      @10       @5      @10",
                                  "recall    0.1000  0.2000    0.5000  0.6000",
                                  "ndcg      0.3000  0.4000    0.7000  0.8000"]


def _toy_args(tmp_path, run_dirs, **extra):
    values = {**run_dirs, "data_path": tmp_path / "data", "epochs": 3, "stopping_step": 100, **extra}
    return ["run", "-m", "BPR", "-d", "toy"] + [f"--{k}={v}" for k, v in values.items()]


def test_default_output_is_one_line_per_epoch_and_the_log_keeps_everything(tmp_path, run_dirs, capsys):
    assert main(_toy_args(tmp_path, run_dirs)) == 0
    out = capsys.readouterr().out
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 3 and all(" | valid recall@20 " in line for line in epochs)
    assert "combination 1/1: seed=999, reg_weight=" in out
    assert "best epoch " in out and "recall    0." in out and "precision 0." in out
    assert "valid result:" not in out and "All Over" not in out      # the detail stays in the log
    (log,) = (tmp_path / "log").glob("BPR-toy-*.log")
    text = log.read_text()
    assert len(re.findall(r"(?m)\d\d:\d\d:\d\d valid result:", text)) == 3 and "All Over" in text and "combination 1/1" in text
    assert f"outputs: log {log}" in out


def test_verbose_true_keeps_mmrecs_full_output_and_false_prints_nothing(tmp_path, run_dirs, capsys):
    assert main(_toy_args(tmp_path, run_dirs, verbose=True)) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"(?m)^valid result:", out)) == 3 and "All Over" in out
    assert " | valid recall@20" not in out
    assert main(_toy_args(tmp_path, run_dirs, verbose=False)) == 0
    assert capsys.readouterr().out == ""


def test_a_grid_says_combination_k_of_n_with_time_left_and_ends_with_its_table(tmp_path, run_dirs, capsys):
    assert main(_toy_args(tmp_path, run_dirs, epochs=2, reg_weight="[0.1,0.01]")) == 0
    out = capsys.readouterr().out
    assert "combination 1/2: seed=999, reg_weight=0.1 (time left known after the first)" in out
    line = next(line for line in out.splitlines() if line.startswith("combination 2/2"))
    assert "reg_weight=0.01 (elapsed " in line and " left)" in line
    table = out.split("grid: 2 combination(s) in ")[1].splitlines()
    assert table[1].split() == ["#", "reg_weight", "best", "epoch", "epochs", "valid", "recall@20", "test",
                                "recall@20", "s/epoch"]
    assert sum(row.startswith("*") for row in table[2:4]) == 1
    assert "chosen: seed=999, reg_weight=" in out


def test_the_main_job_takes_seconds(tmp_path):
    """README's main job, exactly as written there (in an empty folder: toy is generated), with the
    thread count left to the runtime. The issue asks < 30 s on the 2-core machine under load; 120 s
    leaves room for a slow CI."""
    env = _env()
    env.pop("OMP_NUM_THREADS", None)
    began = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / "main.py"), "-m", "FREEDOM", "-d", "toy"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    wall = time.perf_counter() - began
    assert done.returncode == 0, done.stderr[-2000:]
    assert "combination 1/1" in done.stdout and "grid: 1 combination(s)" in done.stdout
    assert "OMP_WAIT_POLICY PASSIVE" in done.stdout
    assert len(done.stdout.splitlines()) < 120
    assert wall < 120, f"the main job took {wall:.0f}s"
