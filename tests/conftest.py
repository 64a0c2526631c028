"""Shared fixtures: the real data folder, small generated datasets, quiet torch threads, the device.

The suite runs on the CPU by default (deterministic, as CI), although configs/overall.yaml says
``use_gpu: True``: ``run_dirs`` (and ``device_overrides()`` for configs built without it) carry
``use_gpu: False``. ``MMREC_MOTOR_TEST_GPU=1 python -m pytest -q tests`` runs it on CUDA where there is
one (``use_gpu: True``); tests that set ``use_gpu`` themselves keep their value.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

# One torch thread, also in the runs the tests start as subprocesses: without num_threads a run keeps
# an OMP_NUM_THREADS from the environment (mmrec_motor/threads.py), so tests never depend on the load.
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402  (after OMP_NUM_THREADS)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

torch.set_num_threads(1)

# the asserts of the shared backbone checks report their operands like a test's own
pytest.register_assert_rewrite("tests.backbones")


def require_shared(name: str) -> Path:
    """The shared dataset folder; skipped when absent, except under CI, where it must exist."""
    folder = SHARED_DATA / name
    if not folder.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the shared dataset {folder} is missing")
        pytest.skip(f"{folder} not present")
    return folder


def use_gpu() -> bool:
    """True only when the environment asks for the GPU: MMREC_MOTOR_TEST_GPU=1."""
    return os.environ.get("MMREC_MOTOR_TEST_GPU") == "1"


def device_overrides() -> dict:
    """The override that picks the tests' device: {"use_gpu": use_gpu()} (CPU unless opted in)."""
    return {"use_gpu": use_gpu()}


@pytest.fixture
def run_dirs(tmp_path):
    """Override keys that keep every file a run writes inside tmp_path, and the device
    (device_overrides: CPU unless MMREC_MOTOR_TEST_GPU=1)."""
    return {"log_dir": str(tmp_path / "log"), "checkpoint_dir": str(tmp_path / "saved"),
            "graph_cache_dir": str(tmp_path / "graphs"), "motor_cache_dir": str(tmp_path / "tokens"),
            **device_overrides()}


def write_inter(folder: Path, name: str, rows, header="userID\titemID\trating\ttimestamp\tx_label"):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [header] + ["\t".join(str(v) for v in row) for row in rows]
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> Path:
    """The project's wheel, built once per test session (skipped where pip cannot build offline)."""
    folder = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "-w", str(folder), str(REPO)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and "No module named" in done.stderr:
        pytest.skip(f"cannot build a wheel offline here: {done.stderr[-200:]}")
    assert done.returncode == 0, done.stderr
    return next(folder.glob("mmrec_motor-*.whl"))


def bench_args(tmp_path, run_dirs, out, models, variants, seeds):
    """``mmrec-motor bench`` arguments for toy (2 epochs, one thread, data and caches under tmp_path)."""
    caches = {k: run_dirs[k] for k in ("graph_cache_dir", "motor_cache_dir", "use_gpu")}
    extra = {"data_path": tmp_path / "data", "epochs": 2, "num_threads": 1, **caches}
    return (["bench", "-m", models, "-d", "toy", "--variants", variants, "--seeds", seeds, "--out", str(out)]
            + [f"--{k}={v}" for k, v in extra.items()])


def summary_rows(text):
    """{model: {column: cell}} of the summary's tables (one dataset here)."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows
