"""The wheel carries the configs, so an installed package runs from any working directory."""
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO


def test_wheel_contains_configs_and_entry_point(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and "No module named" in done.stderr:
        pytest.skip(f"cannot build a wheel offline here: {done.stderr[-200:]}")
    assert done.returncode == 0, done.stderr
    wheel = next(tmp_path.glob("mmrec_motor-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("mmrec_motor/configs/overall.yaml", "mmrec_motor/configs/model/FREEDOM.yaml",
                   "mmrec_motor/configs/model/MOTOR.yaml", "mmrec_motor/configs/dataset/lfm2k.yaml",
                   "mmrec_motor/motor/hook.py", "mmrec_motor/models/freedom.py"):
        assert needed in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mmrec-motor = mmrec_motor.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
