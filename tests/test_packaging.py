"""The wheel carries the configs, so an installed package runs from any working directory."""
import zipfile


def test_wheel_contains_configs_and_entry_point(built_wheel):
    names = zipfile.ZipFile(built_wheel).namelist()
    for needed in ("mmrec_motor/configs/overall.yaml", "mmrec_motor/configs/model/FREEDOM.yaml",
                   "mmrec_motor/configs/model/MOTOR.yaml", "mmrec_motor/configs/dataset/lfm2k.yaml",
                   "mmrec_motor/motor/hook.py", "mmrec_motor/models/freedom.py"):
        assert needed in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mmrec-motor = mmrec_motor.cli:main" in zipfile.ZipFile(built_wheel).read(entry_points).decode()
