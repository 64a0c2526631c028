"""benchmarks/profile_step.py: profiles real training batches of a backbone and says why it refuses."""
import re
import subprocess
import sys

from tests.conftest import REPO


def profile_step(*args, timeout=300):
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "profile_step.py"), *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_profiles_lgmrec_batches_on_toy(tmp_path):
    done = profile_step("--model", "LGMRec", "--dataset", "toy", "--data_path", tmp_path / "data",
                        "--warmup", 1, "--batches", 2, "--num_threads", 1, "--scratch", tmp_path / "scratch",
                        "--use_gpu=False")
    assert done.returncode == 0, done.stderr
    # toy's yaml sets train_batch_size 256; its 4,685 training interactions make 19 batches
    match = re.search(r"LGMRec id on toy: ([0-9.]+) s per batch of 256, 19 batches per epoch", done.stdout)
    assert match, done.stdout
    assert float(match.group(1)) > 0
    assert "aten::mm" in done.stdout          # the op table, LGMRec's products among its rows


def test_refuses_more_batches_than_an_epoch_has(tmp_path):
    done = profile_step("--model", "BPR", "--dataset", "toy", "--data_path", tmp_path / "data",
                        "--batches", 50, "--scratch", tmp_path / "scratch", "--use_gpu=False")
    assert done.returncode != 0
    assert "batches, but an epoch of toy has" in done.stderr
