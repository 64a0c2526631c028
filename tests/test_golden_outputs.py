"""The output files of ``bench`` and of every analysis on toy, compared with fixtures made by the code
before issue 13's redesign (tests/golden/): same runs, same metrics, same tables.

Four commands share one data folder and token/graph caches (toy, 3 epochs, seed 1, one thread):

    bench        -m BPR,FREEDOM          --variants id,motor
    cold-items   -m BPR,FREEDOM          --variants id,motor
    token-budget -m BPR --subspaces 2,4 --nbits 4 --id-baseline
    cold-start   -m BPR,FREEDOM --ratio 0.1

What is compared, after :func:`normalise`: ``results.csv`` without the timing columns, ``summary.md``
with its timing columns blanked, the analysis markdown, ``bench.json``, every run JSON without timings
and with the temporary folder written ``<TMP>``, the names of the files in ``runs/``, ``saved/``,
``topk/``, ``users/`` and ``log/<run>/`` (the date in a log name blanked), and each top-K file: its header and
user column exactly, its ranked items up to :data:`TOPK_CELLS_MAY_DIFFER` of the cells. Why that
share: two items whose scores differ in the last float32 bit swap places when the CPU sums a dot
product in another order (torch without SIMD moved 2 of the 20,000 cells of toy's files and left
every metric unchanged); a ranking or masking bug moves far more.

A change that is meant to change these outputs (a new result key, new MOTOR defaults) regenerates the
fixtures with ``MMREC_MOTOR_WRITE_GOLDEN=1 python -m pytest -q tests/test_golden_outputs.py`` and
shows the difference in review (``git diff tests/golden``).
"""
import csv
import io
import json
import os
import re
from pathlib import Path

import pytest

from mmrec_motor.cli import main
from tests.conftest import REPO

GOLDEN = REPO / "tests" / "golden"
WRITE = os.environ.get("MMREC_MOTOR_WRITE_GOLDEN") == "1"

COMMANDS = {
    "bench": ["bench", "-m", "BPR,FREEDOM", "-d", "toy", "--seeds", "1"],
    "cold-items": ["cold-items", "-m", "BPR,FREEDOM", "-d", "toy", "--seeds", "1"],
    "token-budget": ["token-budget", "-m", "BPR", "-d", "toy", "--subspaces", "2,4", "--nbits", "4",
                     "--seeds", "1", "--id-baseline"],
    "cold-start": ["cold-start", "-m", "BPR,FREEDOM", "-d", "toy", "--seeds", "1", "--ratio", "0.1"],
}
TOPK_CELLS_MAY_DIFFER = 0.002
TIMING_COLUMNS = ("train_seconds_per_epoch", "eval_seconds")
TIMING_KEYS = ("train_seconds_per_epoch", "train_seconds", "eval_seconds", "seconds", "lookup_seconds")


def _strip(value, root: str):
    """A run JSON without its timings, the temporary folder written <TMP>."""
    if isinstance(value, dict):
        return {k: _strip(v, root) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_strip(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<TMP>")
    return value


def _csv_without_timings(text: str) -> str:
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        return text
    header = [c for c in rows[0] if c not in TIMING_COLUMNS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _summary_without_timings(text: str) -> str:
    """The three s/epoch columns (the last three of each table) blanked."""
    out = []
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| model"):
            cells = line.strip("|").split("|")
            line = "|" + "|".join(cells[:-3] + [" * "] * 3) + "|"
        out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def normalise(folder: Path, root: str) -> dict:
    """{relative path: normalised text} of what the comparison covers (module docstring)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(("log/", "saved/")):
            continue
        text = path.read_text(encoding="utf-8") if path.suffix in (".json", ".md", ".csv", ".txt") else None
        if rel == "results.csv":
            files[rel] = _csv_without_timings(text)
        elif rel == "summary.md":
            files[rel] = _summary_without_timings(text).replace(root, "<TMP>")
        elif path.suffix == ".json":
            files[rel] = json.dumps(_strip(json.loads(text), root), indent=1, sort_keys=True) + "\n"
        elif path.suffix == ".md":
            files[rel] = text.replace(root, "<TMP>")
        elif path.suffix == ".tsv":
            files[rel] = path.read_text(encoding="utf-8")
    listing = []
    for sub in ("runs", "saved", "topk", "users", "log"):
        for path in sorted((folder / sub).rglob("*")) if (folder / sub).is_dir() else []:
            if path.is_file():
                listing.append(re.sub(r"-[A-Z][a-z]{2}-\d\d-\d{4}-\d\d-\d\d-\d\d\.log$", "-<date>.log",
                                      path.relative_to(folder).as_posix()))
    files["FILES.txt"] = "\n".join(listing) + "\n"
    return files


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    """Runs the four commands once; {kind: (folder, exit status)}."""
    root = tmp_path_factory.mktemp("golden")
    common = [f"--data_path={root / 'data'}", "--epochs=3", "--num_threads=1", "--use_gpu=False",
              f"--graph_cache_dir={root / 'graphs'}", f"--motor_cache_dir={root / 'tokens'}"]
    out = {}
    for kind, args in COMMANDS.items():
        folder = root / kind
        out[kind] = (folder, main(args + ["--out", str(folder)] + common))
    return root, out


@pytest.mark.parametrize("kind", list(COMMANDS))
def test_outputs_equal_the_fixtures(produced, kind):
    root, out = produced
    folder, status = out[kind]
    assert status == 0
    files = normalise(folder, str(root))
    expected_dir = GOLDEN / kind
    if WRITE:
        if expected_dir.is_dir():
            for old in sorted(expected_dir.rglob("*"), reverse=True):
                old.unlink() if old.is_file() else old.rmdir()
        for rel, text in files.items():
            target = expected_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        pytest.skip(f"wrote {expected_dir}")
    expected = {p.relative_to(expected_dir).as_posix(): p.read_text(encoding="utf-8")
                for p in sorted(expected_dir.rglob("*")) if p.is_file()}
    assert sorted(files) == sorted(expected)
    for rel in expected:
        if rel.endswith(".tsv"):
            assert_topk_close(files[rel], expected[rel], rel)
        else:
            assert files[rel] == expected[rel], rel


def assert_topk_close(produced: str, expected: str, rel: str) -> None:
    """Same header and users in the same order; ranked items equal in all but
    TOPK_CELLS_MAY_DIFFER of the cells (module docstring)."""
    rows = [line.split("\t") for line in produced.splitlines()]
    want = [line.split("\t") for line in expected.splitlines()]
    assert rows[0] == want[0] and [r[0] for r in rows] == [w[0] for w in want], rel
    assert [len(r) for r in rows] == [len(w) for w in want], rel
    cells = sum(len(w) - 1 for w in want[1:])
    moved = sum(a != b for r, w in zip(rows[1:], want[1:]) for a, b in zip(r[1:], w[1:]))
    assert moved <= TOPK_CELLS_MAY_DIFFER * cells, f"{rel}: {moved} of {cells} ranked items differ"
