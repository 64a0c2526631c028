"""Data-parallel training (mmrec_motor/distributed.py): the batch shares, the ranks from the
environment, and real 2-process gloo jobs started by torchrun on toy."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmrec_motor.data.dataset import Split
from mmrec_motor.data.sampler import BPRSampler
from mmrec_motor.distributed import Ranks, backend_for, ranks_from_env
from mmrec_motor.quick_start import evaluator, load_run
from tests.conftest import REPO


def _train(n_users=30, n_items=40, n=203, seed=0):
    rng = np.random.default_rng(seed)
    users, items = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
    return Split(users, items), n_items


@pytest.mark.parametrize("world_size, batch_size", [(2, 16), (3, 10), (4, 50)])
def test_rank_shares_are_disjoint_and_make_the_single_process_epoch(world_size, batch_size):
    train, n_items = _train()
    single = next(iter(BPRSampler(train, n_items, 10 ** 6, seed=5)))        # the whole epoch, [3, n]
    shares = [list(BPRSampler(train, n_items, batch_size, seed=5, rank=r, world_size=world_size))
              for r in range(world_size)]
    steps = -(-203 // (world_size * batch_size))
    assert all(len(share) == steps for share in shares)              # the same step count on every rank
    sizes = [b.shape[1] for share in shares for b in share]
    assert max(sizes) <= batch_size and max(sizes) - min(sizes) <= 1
    # batch s of rank r is chunk s * W + r of the epoch: put them back in that order
    chunks = [shares[j % world_size][j // world_size] for j in range(steps * world_size)]
    torch.testing.assert_close(torch.cat(chunks, dim=1), single)     # disjoint, together the epoch
    # the next epoch too: every rank's generator moved alike
    again = [list(s) for s in (BPRSampler(train, n_items, batch_size, seed=5, rank=r, world_size=world_size)
                               for r in range(world_size))]
    assert all(len(a) == steps for a in again)


def test_a_share_per_rank_needs_enough_interactions():
    train, n_items = _train(n=3)
    with pytest.raises(ValueError, match="3 training interactions cannot fill 2 batch"):
        BPRSampler(train, n_items, 1, seed=0, rank=0, world_size=2)
    with pytest.raises(ValueError, match="rank 2 of world_size 2"):
        BPRSampler(train, n_items, 1, seed=0, rank=2, world_size=2)


def test_ranks_from_the_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert ranks_from_env() == Ranks(0, 1, 0) and not ranks_from_env().distributed
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert ranks_from_env() == Ranks(1, 2, 1) and not ranks_from_env().main
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2, WORLD_SIZE=2"):
        ranks_from_env()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        ranks_from_env()
    assert (backend_for("cuda:1"), backend_for("cpu")) == ("nccl", "gloo")


def _torchrun(tmp_path, model, *extra):
    """A 2-process gloo job on toy, all its files under tmp_path; returns (stdout+stderr, result)."""
    result_file = tmp_path / "result.json"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            str(REPO / "main.py"), "-m", model, "-d", "toy", f"--data_path={tmp_path / 'data'}",
            f"--result_file={result_file}", f"--topk_file={tmp_path / 'top.tsv'}",
            f"--log_dir={tmp_path / 'log'}", f"--checkpoint_dir={tmp_path / 'saved'}",
            f"--graph_cache_dir={tmp_path / 'graphs'}", f"--motor_cache_dir={tmp_path / 'tokens'}",
            "--use_gpu=False", "--num_threads=1", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    return output, json.loads(result_file.read_text())


def _single_process_metrics(checkpoint):
    """The saved model evaluated in this one process (valid, test)."""
    run = load_run(checkpoint)
    return (evaluator(run.config, run.data, run.data.valid).evaluate(run.model),
            evaluator(run.config, run.data, run.data.test).evaluate(run.model))


@pytest.mark.parametrize("model, extra", [("BPR", ()), ("LightGCN", ("--motor",))])
def test_two_process_gloo_job_equals_one_process_evaluation(tmp_path, model, extra):
    output, result = _torchrun(tmp_path, model, "--epochs=3", *extra)
    assert result["distributed"] == {"world_size": 2, "backend": "gloo",
                                     "batches_per_rank": result["distributed"]["batches_per_rank"]}
    n_train = result["data"]["train"]
    assert result["distributed"]["batches_per_rank"] == -(-n_train // (2 * result["config"]["train_batch_size"]))
    # rank 0 alone writes: one result, one log, one checkpoint per combination
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["result.json"]
    assert len(list((tmp_path / "log").iterdir())) == 1
    assert output.count("torchrun: 2 processes") == 1              # one rank printed
    checkpoint = result["combinations"][result["chosen"]]["checkpoint"]
    valid, test = _single_process_metrics(checkpoint)
    assert valid == result["best"]["valid"] and test == result["best"]["test"]
    if "--motor" in extra:
        assert result["item_representation"]["kind"] == "motor"


def test_resume_under_torchrun(tmp_path):
    _torchrun(tmp_path, "BPR", "--epochs=2", "--checkpoint_every=1")
    output, result = _torchrun(tmp_path, "BPR", "--epochs=4", "--checkpoint_every=1", "--resume=True")
    assert "resumed from" in output and "after epoch 1" in output
    assert result["combinations"][0]["epochs_run"] == 4
    valid, test = _single_process_metrics(result["combinations"][0]["checkpoint"])
    assert valid == result["best"]["valid"] and test == result["best"]["test"]


def test_a_cuda_rank_beyond_the_devices_is_named(monkeypatch):
    """Under torchrun with CUDA, LOCAL_RANK picks the device; more processes than devices is an error
    that says what to change (checked before any process group is joined)."""
    from mmrec_motor import distributed
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"LOCAL_RANK=1 but this machine has 1 CUDA device\(s\): start at "
                                         r"most that many processes per node \(--nproc_per_node\)"):
        distributed.setup({"device": "cuda:0"})


def test_nan_loss_stop_ends_every_rank_at_the_same_batch(tmp_path):
    """Under torchrun a non-finite loss on any rank stops all of them (no rank left waiting in an
    all-reduce), and the job reports the best epoch before it, as one process does."""
    output, result = _torchrun(tmp_path, "BPR", "--epochs=5", "--reg_weight=1e-4",
                               "--learning_rate_scheduler=[1e100,1]", "--nan_loss=stop")
    run = result["combinations"][0]
    assert run["stopped_on_nan"].startswith("epoch 1, batch ") and run["best_epoch"] == 0
    assert run["epochs_run"] == 1 and output.count("training stops here (nan_loss: stop") == 1
