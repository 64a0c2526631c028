"""Loading MMRec-layout data: sizes, cold-start filtering, and an error for each bad input."""
import numpy as np
import pytest

from mmrec_motor.config import Config
from mmrec_motor.data.dataset import DataError, load_dataset
from mmrec_motor.data.features import load_features
from mmrec_motor.data.toy import generate_toy, split_labels
from tests.conftest import require_shared, write_inter

GOOD = [(0, 0, 1, 0, 0), (0, 1, 1, 0, 0), (0, 2, 1, 0, 1), (0, 3, 1, 0, 2),
        (1, 1, 1, 0, 0), (1, 4, 1, 0, 1), (1, 0, 1, 0, 2), (2, 2, 1, 0, 1), (2, 5, 1, 0, 2)]


def config_for(tmp_path, name="mine", **over):
    return Config("FREEDOM", name, {"data_path": str(tmp_path), **over})


def test_sizes_and_cold_start_filter(tmp_path):
    write_inter(tmp_path / "mine", "mine", GOOD)
    data = load_dataset(config_for(tmp_path))
    assert (data.n_users, data.n_items) == (3, 6)              # max ID + 1 over all splits
    assert len(data.train) == 3
    assert sorted(data.valid.users.tolist()) == [0, 1]         # user 2 has no train row: dropped
    assert sorted(data.test.users.tolist()) == [0, 1]
    unfiltered = load_dataset(config_for(tmp_path, filter_out_cod_start_users=False))
    assert sorted(unfiltered.test.users.tolist()) == [0, 1, 2]


def test_extra_and_missing_optional_columns(tmp_path):
    rows = [(u, i, x) for u, i, _, _, x in GOOD]
    write_inter(tmp_path / "mine", "mine", rows, header="userID\titemID\tx_label")
    assert load_dataset(config_for(tmp_path)).n_items == 6


@pytest.mark.parametrize("rows, header, message", [
    (GOOD, "userID\titem\trating\ttimestamp\tx_label", r"missing column\(s\) \['itemID'\]"),
    ([(0, 0, 1, 0, 0), (0, 1, 1, 0, 3), (0, 2, 1, 0, 2)], None, r"values \[3\]; expected only 0"),
    ([(0, -1, 1, 0, 0), (0, 1, 1, 0, 1), (0, 2, 1, 0, 2)], None, "negative itemID -1 at line 2"),
    ([(0, 0, 1, 0, 0), (0, 1, 1, 0, 0), (0, 2, 1, 0, 2)], None, r"the valid split \(x_label=1\) is empty"),
    ([(0, "a", 1, 0, 0), (0, 1, 1, 0, 1), (0, 2, 1, 0, 2)], None, "column itemID must hold integers"),
    ([(0, "", 1, 0, 0), (0, 1, 1, 0, 1), (0, 2, 1, 0, 2)], None, "empty or non-numeric values"),
    ([], None, "no interactions"),
])
def test_bad_inter_files(tmp_path, rows, header, message):
    kwargs = {"header": header} if header else {}
    write_inter(tmp_path / "mine", "mine", rows, **kwargs)
    with pytest.raises(DataError, match=message):
        load_dataset(config_for(tmp_path))


def test_missing_folder_and_file_say_where(tmp_path):
    with pytest.raises(DataError, match="dataset folder not found: .*mine"):
        load_dataset(config_for(tmp_path))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "other.inter").write_text("userID\titemID\tx_label\n")
    with pytest.raises(DataError, match=r"interaction file not found: .*mine.inter; .* \['other.inter'\]"):
        load_dataset(config_for(tmp_path))


@pytest.mark.parametrize("array, message", [
    (np.zeros((5, 4), np.float32), "has 5 rows but the dataset has n_items=6"),
    (np.zeros(6, np.float32), r"expected a 2-D array .* got shape \(6,\)"),
    (np.array([[1.0, np.nan]] * 6, np.float32), "6 row\\(s\\) contain NaN or inf"),
    (np.array([["a", "b"]] * 6), "expected a real numeric dtype"),
])
def test_bad_feature_files(tmp_path, array, message):
    write_inter(tmp_path / "mine", "mine", GOOD)
    np.save(tmp_path / "mine" / "image_feat.npy", array)
    with pytest.raises(DataError, match=message):
        load_features(config_for(tmp_path), n_items=6)


def test_truncated_and_absent_feature_files(tmp_path):
    write_inter(tmp_path / "mine", "mine", GOOD)
    np.save(tmp_path / "mine" / "text_feat.npy", np.ones((6, 3), np.float32))
    features = load_features(config_for(tmp_path), n_items=6)
    assert features["v"] is None and features["t"].shape == (6, 3)   # absent file: that modality off
    raw = (tmp_path / "mine" / "text_feat.npy").read_bytes()
    (tmp_path / "mine" / "text_feat.npy").write_bytes(raw[:60])
    with pytest.raises(DataError, match="not a readable .npy array"):
        load_features(config_for(tmp_path), n_items=6)


def test_toy_is_deterministic_and_mmrec_shaped(tmp_path):
    generate_toy(str(tmp_path / "a" / "toy"))
    generate_toy(str(tmp_path / "b" / "toy"))
    for name in ("toy.inter", "image_feat.npy", "text_feat.npy"):
        assert (tmp_path / "a" / "toy" / name).read_bytes() == (tmp_path / "b" / "toy" / name).read_bytes()
    data = load_dataset(Config("BPR", "toy", {"data_path": str(tmp_path / "a")}))
    assert data.n_items == 300 and data.n_users == 400
    assert 4000 < len(data.train) + len(data.valid) + len(data.test) < 7000


def test_split_labels_follow_mmrec_preprocessing():
    assert split_labels(8).tolist() == [0] * 6 + [1, 2]
    assert split_labels(15).tolist() == [0] * 12 + [1, 2, 2]          # int(0.2*15)=3, test takes 2


def test_lfm2k_loads_with_published_statistics():
    folder = require_shared("lfm2k")
    data = load_dataset(Config("FREEDOM", "lfm2k", {"data_path": str(folder.parent)}))
    assert (data.n_users, data.n_items) == (1858, 1425)
    assert (len(data.train), len(data.valid), len(data.test)) == (44327, 4799, 7219)
    features = load_features(Config("FREEDOM", "lfm2k", {"data_path": str(folder.parent)}), data.n_items)
    assert features["v"].shape == (1425, 512) and features["t"].shape == (1425, 384)


def test_toy_generated_by_several_processes_at_once_is_whole_and_identical(tmp_path):
    # benchmarks/parallel.py starts runs side by side on a fresh clone: each may generate toy at once
    import subprocess
    import sys
    code = "import sys; from mmrec_motor.data.toy import ensure_toy; ensure_toy(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "shared")]) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    generate_toy(str(tmp_path / "alone"))
    names = sorted(p.name for p in (tmp_path / "shared" / "toy").iterdir())
    assert names == ["image_feat.npy", "text_feat.npy", "toy.inter"]          # no temporary file left
    for name in names:
        assert (tmp_path / "shared" / "toy" / name).read_bytes() == (tmp_path / "alone" / name).read_bytes()
