"""benchmarks/lfm2k_item_text.py: item texts keyed by our item IDs, from two row-aligned interaction
files (ours and the source's original IDs); misaligned files are refused."""
import subprocess
import sys

from tests.conftest import REPO

HEADER = "userID\titemID\trating\tx_label\n"


def write(path, text):
    path.write_text(text)
    return path


def script(*args):
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "lfm2k_item_text.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def files(tmp_path, og_rows):
    inter = write(tmp_path / "ours.inter", HEADER + "0\t0\t1\t0\n0\t1\t1\t0\n1\t1\t1\t2\n1\t2\t1\t1\n")
    og = write(tmp_path / "og.inter", HEADER + og_rows)
    text = write(tmp_path / "text.tsv", "artistID\ttext\n70\tjazz,piano\n51\tmetal\n99\tnot in lfm2k\n")
    names = write(tmp_path / "names.tsv", "artistID\tname_artist\tsong\n51\tBand A\ts1\n51\tBand A\ts2\n70\tTrio B\ts\n")
    return inter, og, text, names


def test_rows_aligned_give_each_item_its_artist_text(tmp_path):
    # our items 0, 1, 2 are the artists 51, 70, 8 (8 has neither tags nor name)
    inter, og, text, names = files(tmp_path, "2\t51\t1\t0\n2\t70\t1\t0\n5\t70\t1\t2\n5\t8\t1\t1\n")
    out = tmp_path / "out.tsv"
    done = script("--og_inter", og, "--inter", inter, "--text", text, "--names", names, "--out", out)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == "item\ttext\n0\tBand A: metal\n1\tTrio B: jazz,piano\n2\t\n"
    assert "3 items written" in done.stderr and "1 without a name or tags" in done.stderr


def test_misaligned_files_are_refused(tmp_path):
    inter, og, text, _ = files(tmp_path, "2\t51\t1\t0\n2\t70\t1\t0\n5\t70\t1\t1\n5\t8\t1\t2\n")
    done = script("--og_inter", og, "--inter", inter, "--text", text, "--out", tmp_path / "o.tsv")
    assert done.returncode != 0 and "differ in x_label from data row 3: not row-aligned" in done.stderr
    # our item 1 would be two artists (70 and 51)
    inter, og, text, _ = files(tmp_path, "2\t51\t1\t0\n2\t70\t1\t0\n5\t51\t1\t2\n5\t8\t1\t1\n")
    done = script("--og_inter", og, "--inter", inter, "--text", text, "--out", tmp_path / "o.tsv")
    assert done.returncode != 0 and "item IDs do not map one to one" in done.stderr
    write(og, HEADER + "2\t51\t1\t0\n")
    done = script("--og_inter", og, "--inter", inter, "--text", text, "--out", tmp_path / "o.tsv")
    assert done.returncode != 0 and f"{og} has 1 rows, {inter} has 4" in done.stderr
    done = script("--og_inter", tmp_path / "nope.inter", "--inter", inter, "--text", text, "--out", tmp_path / "o.tsv")
    assert done.returncode != 0 and "nope.inter: no such file" in done.stderr
