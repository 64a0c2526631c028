"""Shared fixtures: the real data folder, small generated datasets, quiet torch threads."""
import os
from pathlib import Path

import pytest
import torch

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


@pytest.fixture
def run_dirs(tmp_path):
    """Override keys that keep every file a run writes inside tmp_path."""
    return {"log_dir": str(tmp_path / "log"), "checkpoint_dir": str(tmp_path / "saved"),
            "graph_cache_dir": str(tmp_path / "graphs"), "motor_cache_dir": str(tmp_path / "tokens")}


def write_inter(folder: Path, name: str, rows, header="userID\titemID\trating\ttimestamp\tx_label"):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [header] + ["\t".join(str(v) for v in row) for row in rows]
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")
