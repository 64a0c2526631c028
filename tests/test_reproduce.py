"""benchmarks/reproduce.py: the lfm2k tables of docs/benchmarks.md as one command (plan, refusals, and
a small end-to-end run on toy that resumes)."""
import csv
import json
import subprocess
import sys

from tests.conftest import REPO, use_gpu


def reproduce(*args, timeout=600):
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "reproduce.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_the_default_plan_is_the_published_tables():
    done = reproduce("--dry-run", "--out", "OUT")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # bench: 5 seeds x (11 backbones x id, motor + DualGNN, DRAGON id only); tuned: 3 seeds x the 11
    # backbones with an item table x 2 variants; cold items and cold start: 3 seeds x 3 backbones x 2
    # variants; token budget: one command per seed (3)
    assert len(lines) == 5 * (11 * 2 + 2) + 3 * 11 * 2 + 2 * 3 * 3 * 2 + 3
    words = [line.split() for line in lines]
    assert sum(w[1] == "bench" and "/parts/bench/" in w[-1] for w in words) == 120
    assert sum(w[1] == "bench" and "/parts/tuned/" in w[-1] for w in words) == 66
    assert not any(w[1] == "bench" and w[3] in ("DualGNN", "DRAGON") and "motor" in w for w in words)
    assert sum(" -m GRCN " in line for line in lines) == 10 + 6
    assert all("--reg_weight=1.0" in line for line in lines if " -m BPR " in line and "/bench/" in line)
    assert all("--num_threads=1" in line for line in lines)
    first = lines[0].split()
    assert first[:9] == ["mmrec-motor", "bench", "-m", "BM3", "-d", "lfm2k", "--seeds", "999", "--variants"]
    assert first[-2:] == ["--out", "OUT/parts/bench/BM3-id-999"]
    budget = [line for line in lines if line.startswith("mmrec-motor token-budget")]
    assert len(budget) == 3 and all("--subspaces 2,4,8 --nbits 4,6,8 --id-baseline" in b for b in budget)
    assert all("--ratio 0.1" in line for line in lines if " cold-start " in line)


def test_sports20_takes_its_own_model_keys():
    done = reproduce("--dry-run", "--tables", "cold-start", "-d", "sports20", "--seeds", "999",
                     "--models", "BPR,VBPR,GRCN,LightGCN", "--cold_item_test=own")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 8 and all("-d sports20" in line and "--cold_item_test=own" in line for line in lines)
    assert all("--reg_weight=0.01" in line for line in lines if " -m BPR " in line or " -m VBPR " in line)
    assert all("--learning_rate=0.001" in line for line in lines if " -m GRCN " in line)
    assert not any("--reg_weight" in line or "--learning_rate" in line for line in lines if " -m LightGCN " in line)


def test_the_tuned_table_runs_each_published_cell():
    """The tuned protocol (3 combinations a side) where §24's tuned cell is one, the published point or
    search elsewhere (reproduce.py TUNED_ARGS)."""
    protocol = "--protocol tuned --budget 3"
    cells = {}
    for dataset in ("sports20", "lfm2k"):
        done = reproduce("--dry-run", "--tables", "tuned", "-d", dataset, "--seeds", "999", "--out", "OUT",
                         "--models", "LightGCN,BPR,LATTICE,GRCN,SLMRec")
        assert done.returncode == 0, done.stderr
        for line in done.stdout.splitlines():
            words = line.split()
            assert words[:2] == ["mmrec-motor", "bench"] and words[-1].startswith("OUT/parts/tuned/")
            cells[(dataset, words[3], words[words.index("--variants") + 1])] = line
    assert len(cells) == 20
    for variant in ("id", "motor"):
        for dataset in ("sports20", "lfm2k"):
            assert protocol in cells[(dataset, "LightGCN", variant)]
            assert "--learning_rate=0.001" in cells[(dataset, "LATTICE", variant)]
            assert protocol not in cells[(dataset, "LATTICE", variant)]
        assert "--protocol tuned --budget 2 --learning_rate=0.001" in cells[("sports20", "LATTICE", variant)]
        assert ("--protocol tuned --budget 2 --learning_rate=0.001 --nan_loss=stop"
                in cells[("lfm2k", "LATTICE", variant)])
        assert "--nan_loss" not in cells[("sports20", "LATTICE", variant)]
        assert f"{protocol} '--reg_weight=[1e-2,1e-3,1e-4]'" in cells[("sports20", "BPR", variant)]  # shell-quoted
        assert "--reg_weight" not in cells[("lfm2k", "BPR", variant)]          # the grid's own points
        assert "--learning_rate=0.001" in cells[("sports20", "GRCN", variant)]
        assert "--reg_weight=0.001 --learning_rate=0.01" in cells[("lfm2k", "GRCN", variant)]
        assert f"{protocol} --motor-search paired" in cells[("lfm2k", "SLMRec", variant)]
        assert "--motor-search" not in cells[("sports20", "SLMRec", variant)]
    assert "--motor_fine_nbits=null" in cells[("lfm2k", "GRCN", "motor")]
    assert "--motor_fine_nbits" not in cells[("lfm2k", "GRCN", "id")]


def test_it_refuses_unknown_tables_models_and_bare_words():
    done = reproduce("--dry-run", "--tables", "bench,nope")
    assert done.returncode == 2 and "--tables: unknown nope" in done.stderr
    done = reproduce("--dry-run", "--models", "FREEDOM,Nope")
    assert done.returncode == 2 and "--models: unknown Nope" in done.stderr
    done = reproduce("--dry-run", "epochs=2")
    assert done.returncode == 2 and "expected --key=value config overrides" in done.stderr


def test_bench_and_cold_items_on_toy_then_resume(tmp_path):
    out = tmp_path / "out"
    args = ["--tables", "bench,tuned,cold-items", "--models", "BPR", "--seeds", "1", "-d", "toy", "--jobs", 2,
            "--out", out, "--epochs=2", f"--use_gpu={use_gpu()}",
            f"--data_path={tmp_path / 'data'}"]     # toy is generated here by two runs at once
    done = reproduce(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 finished" in done.stdout
    with open(out / "bench" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["model"], r["variant"], r["seed"]) for r in rows) == [("BPR", "id", "1"), ("BPR", "motor", "1")]
    for variant in ("id", "motor"):      # BPR ran at the published reg_weight, not its grid's first 2.0
        run = json.loads((out / "bench" / "runs" / f"BPR-toy-{variant}-1.json").read_text())
        assert run["best"]["parameters"]["reg_weight"] == 1.0
    assert "Seeds per column: BPR id 1, BPR motor 1" in (out / "cold-items" / "cold_items.md").read_text()
    # the tuned table: both sides' combinations merged, the summary's tuned section with 3/3 of them
    tuned = json.loads((out / "tuned" / "bench.json").read_text())
    assert len(tuned["commands"]) == 2 and all("--protocol tuned --budget 3" in c for c in tuned["commands"])
    assert len(list((out / "tuned" / "runs").glob("BPR-toy-*-1-t*.json"))) == 6
    summary = (out / "tuned" / "summary.md").read_text()
    assert "## toy, tuned protocol" in summary and summary.rstrip().splitlines()[-1].endswith("| 3/3 |")
    # the parts resume: a rerun trains nothing and merges the same runs again
    again = reproduce(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    logs = "".join(p.read_text() for p in (out / "logs").glob("*.log"))
    assert logs.count("skipped (result exists") == 4 + 6 and " ok (" not in logs
