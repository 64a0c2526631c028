"""Checkpoints: a run killed with SIGKILL resumes to exactly the uninterrupted result; an interrupted
save leaves the previous checkpoint loadable; a checkpoint of another run is never resumed; outputs are
all-or-nothing."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmrec_motor import fileio
from mmrec_motor import quick_start as qs
from mmrec_motor.cli import main
from mmrec_motor.config import Config
from mmrec_motor.data.toy import ensure_toy
from mmrec_motor.fileio import save_torch as _atomic_save
from tests.conftest import REPO, device_overrides


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("shared") / "data"
    ensure_toy(str(data))
    return data


def bpr_args(toy_data, checkpoint_dir, result_file, tmp_path, **extra):
    values = {"data_path": toy_data, "checkpoint_dir": checkpoint_dir, "result_file": result_file,
              "log_dir": tmp_path / "log", "reg_weight": 1e-4, "num_threads": 1, **device_overrides(), **extra}
    return ["-m", "BPR", "-d", "toy"] + [f"--{k}={v}" for k, v in values.items()]


def best_of(result_file: Path):
    result = json.loads(result_file.read_text())
    combo = result["combinations"][0]
    return result["best"], combo["valid"], combo["test"], combo["best_epoch"], combo["epochs_run"]


def test_kill_9_then_resume_equals_the_uninterrupted_run(tmp_path, toy_data):
    # Small batches (~300 per epoch) make an epoch last long enough to kill the run in the middle.
    common = dict(epochs=30, stopping_step=100, checkpoint_every=1, train_batch_size=16, learning_rate=0.002)
    main_py = [sys.executable, "-u", str(REPO / "main.py")]
    full = tmp_path / "full.json"
    done = subprocess.run(main_py + bpr_args(toy_data, tmp_path / "a", full, tmp_path, **common),
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr

    part, saved, log = tmp_path / "part.json", tmp_path / "b", tmp_path / "killed.out"
    args = bpr_args(toy_data, saved, part, tmp_path, **common)
    with open(log, "w") as out:
        proc = subprocess.Popen(main_py + args, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                if list(saved.glob("*.pth.last")) and "epoch 3 training" in log.read_text():
                    break
                time.sleep(0.005)
            assert proc.poll() is None, "the run ended before it could be killed:\n" + log.read_text()
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
    killed_at = log.read_text().count(" training [time:")
    assert not part.exists()                              # a killed run writes no result file
    assert 4 <= killed_at < 30

    done = subprocess.run(main_py + args + ["--resume=True"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    resumed_after = int(done.stdout.split("resumed from ")[1].split(" after epoch ")[1].split()[0])
    assert 2 <= resumed_after < 29
    assert f"epoch {resumed_after + 1} training" in done.stdout
    assert f"epoch {resumed_after} training" not in done.stdout
    assert best_of(part) == best_of(full)                 # exact: valid, test, best epoch, epochs run
    assert best_of(full)[4] == 30
    assert not list(saved.glob("*.tmp*"))                 # a temporary left by the kill is cleaned up


def test_save_interrupted_before_rename_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt.pth")
    _atomic_save({"epoch": 1, "w": torch.arange(5.0)}, path)

    def fail(src, dst):
        raise OSError("simulated crash between write and rename")

    monkeypatch.setattr(fileio.os, "replace", fail)
    with pytest.raises(OSError, match="simulated crash"):
        _atomic_save({"epoch": 2, "w": torch.zeros(5)}, path)
    monkeypatch.undo()
    state = torch.load(path, weights_only=False)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.arange(5.0))
    assert os.listdir(tmp_path) == ["ckpt.pth"]            # no temporary left behind


def test_partial_temporary_beside_a_good_checkpoint_is_ignored_and_removed(tmp_path, toy_data):
    """A process killed while writing leaves ``<name>.last.tmp<pid>``; the next run resumes from the
    good checkpoint beside it and deletes the partial file (its pid is gone)."""
    saved, out = tmp_path / "saved", tmp_path / "r.json"
    assert main(["run"] + bpr_args(toy_data, saved, out, tmp_path, epochs=2, stopping_step=100)) == 0
    (last,) = saved.glob("*.pth.last")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    partial = Path(f"{last}.tmp{dead.pid}")
    partial.write_bytes(last.read_bytes()[:100])
    assert main(["run"] + bpr_args(toy_data, saved, out, tmp_path, epochs=4, stopping_step=100,
                                   resume=True)) == 0
    assert json.loads(out.read_text())["combinations"][0]["epochs_run"] == 4
    assert len(json.loads(out.read_text())["combinations"][0]["train_seconds"]) == 4
    assert not partial.exists()
    assert torch.load(last, weights_only=False)["epoch"] == 3


def test_resume_with_a_changed_hyper_parameter_starts_at_epoch_0(tmp_path, toy_data, capsys):
    saved = tmp_path / "saved"
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["run"] + bpr_args(toy_data, saved, first, tmp_path, epochs=3, stopping_step=100)) == 0
    capsys.readouterr()
    assert main(["run"] + bpr_args(toy_data, saved, second, tmp_path, epochs=3, stopping_step=100,
                                   resume=True, reg_weight=1e-3)) == 0
    out = capsys.readouterr().out
    assert "resumed from" not in out and "epoch 0 training" in out
    combo = json.loads(second.read_text())["combinations"][0]
    assert combo["epochs_run"] == 3 and len(combo["train_seconds"]) == 3
    assert len(list(saved.glob("*.pth.last"))) == 2       # the name encodes the run identity


def test_checkpoint_of_another_run_under_this_runs_name_is_not_loaded(tmp_path, toy_data, capsys):
    """Belt and braces: the identity is also stored inside the checkpoint and checked on resume."""
    saved_a, saved_b = tmp_path / "a", tmp_path / "b"
    out = tmp_path / "r.json"
    assert main(["run"] + bpr_args(toy_data, saved_a, out, tmp_path, epochs=2, stopping_step=100)) == 0
    assert main(["run"] + bpr_args(toy_data, saved_b, out, tmp_path, epochs=2, stopping_step=100,
                                   reg_weight=1e-3)) == 0
    (last_a,), (last_b,) = saved_a.glob("*.last"), saved_b.glob("*.last")
    last_b.write_bytes(last_a.read_bytes())               # run A's state under run B's name
    capsys.readouterr()
    with pytest.warns(UserWarning, match="written by a run with other settings .* starting at epoch 0"):
        assert main(["run"] + bpr_args(toy_data, saved_b, out, tmp_path, epochs=3, stopping_step=100,
                                       reg_weight=1e-3, resume=True)) == 0
    assert "resumed from" not in capsys.readouterr().out
    assert json.loads(out.read_text())["combinations"][0]["epochs_run"] == 3
    assert len(json.loads(out.read_text())["combinations"][0]["train_seconds"]) == 3


def test_unreadable_checkpoint_on_resume_is_a_clear_error(tmp_path, toy_data, capsys):
    saved, out = tmp_path / "saved", tmp_path / "r.json"
    assert main(["run"] + bpr_args(toy_data, saved, out, tmp_path, epochs=1)) == 0
    out.unlink()
    (last,) = saved.glob("*.last")
    last.write_bytes(b"garbage" * 10)
    assert main(["run"] + bpr_args(toy_data, saved, out, tmp_path, epochs=2, resume=True)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: cannot resume from {last}: the checkpoint is unreadable")
    assert "delete it to start this run over, or run without --resume" in err
    assert not out.exists()


def test_outputs_are_all_or_nothing(tmp_path, toy_data, monkeypatch):
    """A failure while writing the result file leaves neither it nor the top-k file nor a temporary."""
    out, top = tmp_path / "out" / "r.json", tmp_path / "out" / "top.tsv"
    config = Config("BPR", "toy", {"data_path": str(toy_data), "epochs": 1, "reg_weight": 1e-4,
                                   "result_file": str(out), "topk_file": str(top), "verbose": False,
                                   "log_dir": None, "checkpoint_dir": str(tmp_path / "saved"),
                                   **device_overrides()})

    def broken_dump(payload, handle, **kwargs):
        handle.write('{"partial": ')
        raise OSError("disk full")

    monkeypatch.setattr(fileio.json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        qs.quick_start(config)
    assert not out.exists() and not top.exists()
    assert os.listdir(tmp_path / "out") == []
