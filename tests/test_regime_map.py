"""benchmarks/regime_map.py: the points it reads, the errors a bad CSV gets, and its figure."""
import importlib.util
import sys

import pytest

from tests.conftest import REPO

HEADER = "dataset,backbone,train_per_item,knn_over_id,reads_features,delta_pct,p,seeds,source\n"


def _script():
    spec = importlib.util.spec_from_file_location("regime_map", REPO / "benchmarks" / "regime_map.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_points_are_parsed_and_significance_needs_seeds_and_p(tmp_path):
    csv = tmp_path / "points.csv"
    csv.write_text(HEADER + "sports20,LightGCN,3.07,0.70,no,34.7,0.0025,3,§13\n"
                            "sports,BPR,11.9,0.55,no,-2.4,,1,§16\n"
                            "lfm2k,FREEDOM,31.1,0.71,yes,-0.9,0.2,3,§19\n")
    regime_map = _script()
    rows = regime_map.read_points(str(csv))
    assert [r["backbone"] for r in rows] == ["LightGCN", "BPR", "FREEDOM"]
    assert rows[0]["train_per_item"] == 3.07 and rows[0]["delta_pct"] == 34.7 and rows[0]["seeds"] == 3
    assert rows[1]["p"] is None
    assert [regime_map.significant(r) for r in rows] == [True, False, False]


@pytest.mark.parametrize("body, match", [
    ("sports20,LightGCN,3.07,0.70,maybe,34.7,0.0025,3,x\n", r"row 2: reads_features must be yes or no, got 'maybe'"),
    ("sports20,LightGCN,lots,0.70,no,34.7,0.0025,3,x\n", r"row 2: could not convert string to float: 'lots'"),
    ("sports20,LightGCN,0,0.70,no,34.7,0.0025,3,x\n", r"row 2: train_per_item must be > 0"),
    ("", r"no rows"),
])
def test_bad_points_name_the_row_and_the_column(tmp_path, body, match):
    csv = tmp_path / "points.csv"
    csv.write_text(HEADER + body)
    with pytest.raises(ValueError, match=match):
        _script().read_points(str(csv))


def test_a_missing_column_is_named(tmp_path):
    csv = tmp_path / "points.csv"
    csv.write_text("dataset,backbone,delta_pct\nsports20,BPR,3\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) train_per_item, knn_over_id, reads_features, p, "
                                         r"seeds, source"):
        _script().read_points(str(csv))


@pytest.mark.parametrize("points", ["regime_points.csv", "regime_points_tuned.csv"])
def test_the_figure_of_the_shipped_points(tmp_path, points):
    """docs/data/regime_points*.csv (§15's cells; §29's cells with both sides tuned): every row is
    printed, and the PNG is drawn (exit 1 with a note where matplotlib is not installed, as in CI)."""
    import subprocess
    out = tmp_path / "map.png"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "regime_map.py"), "--points",
                           str(REPO / "docs" / "data" / points), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    n_rows = len((REPO / "docs" / "data" / points).read_text().strip().splitlines()) - 1
    assert n_rows >= 10
    assert len([line for line in done.stdout.splitlines() if " delta " in line]) == n_rows
    if importlib.util.find_spec("matplotlib") is None:
        assert done.returncode == 1 and "matplotlib is not installed" in done.stderr and not out.exists()
    else:
        assert done.returncode == 0, done.stderr[-2000:]
        assert out.stat().st_size > 10_000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
