"""Analyses (issue 5): bucketed item metrics, the inductive cold-item split, and the cold-items,
token-budget and cold-start subcommands end to end (toy, two epochs)."""
import importlib.util
import json
import math

import numpy as np
import pytest
import torch

from mmrec_motor.cli import main
from mmrec_motor.config import Config, ConfigError
from mmrec_motor.data.cold import hold_out_items
from mmrec_motor.data.dataset import DataError, PairSet, RecData, Split
from mmrec_motor.data.loader import load_data
from mmrec_motor.evaluation import compute_metrics
from mmrec_motor.experiments import buckets, cold_items
from mmrec_motor.experiments.buckets import (bucket_index, bucketed_metrics, item_train_counts, parse_edges,
                                             quantile_edges)
from mmrec_motor.fileio import read_topk
from mmrec_motor.keys import run_identity as _run_identity
from mmrec_motor.quick_start import build_model, quick_start

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


# ------------------------------------------------------------------------------ bucketed metrics
# Six items with training counts c = [0, 1, 3, 5, 10, 2]; edges 0, 2, 5 give the buckets
#   A = c in [0, 2): items 0, 1     B = c in [2, 5): items 2, 5     C = c >= 5: items 3, 4
# Test items: user 0 {0, 3} (the pair (0, 3) listed twice), user 1 {2, 4, 5}, user 2 {1}.
# Top-3 (a 4th column is ignored at k = 3): user 0 [3, 1, 0], user 1 [0, 5, 1], user 2 [4, 3, 2].
COUNTS = np.array([0, 1, 3, 5, 10, 2])
EDGES = [0, 2, 5]
TEST = Split(np.array([0, 0, 0, 1, 1, 1, 2]), np.array([0, 3, 3, 2, 4, 5, 1]))
USERS = np.array([0, 1, 2])
RANKED = np.array([[3, 1, 0, 2], [0, 5, 1, 2], [4, 3, 2, 1]])
L3, L4 = 1 / math.log2(3), 1 / math.log2(4)        # the discounts of ranks 2 and 3
# By hand (k = 3):
#   A: user 0 (T = {0}) hits item 0 at rank 3: recall 1, NDCG L4 / 1 = 0.5; user 2 (T = {1}) no hit.
#      Recall 0.5, NDCG 0.25, over 2 users.
#   B: user 1 (T = {2, 5}) hits item 5 at rank 2: recall 1/2, NDCG L3 / (1 + L3) = 0.386853.
#   C: user 0 (T = {3}) hits at rank 1: 1 and 1; user 1 (T = {4}) no hit: Recall 0.5, NDCG 0.5.
#   all: user 0 recall 1, NDCG (1 + L4) / (1 + L3) = 0.919721; user 1 recall 1/3,
#        NDCG L3 / (1 + L3 + L4) = 0.296082; user 2: 0. Recall 4/9, NDCG 0.405268.
EXPECTED = [
    {"label": "0–1", "interactions": 2, "users": 2, "recall": 0.5, "ndcg": 0.25},
    {"label": "2–4", "interactions": 2, "users": 1, "recall": 0.5, "ndcg": 0.386853},
    {"label": "≥ 5", "interactions": 2, "users": 2, "recall": 0.5, "ndcg": 0.5},
    {"label": "all items", "interactions": 6, "users": 3, "recall": 0.444444, "ndcg": 0.405268},
]


def test_bucketed_metrics_on_a_hand_built_case():
    rows = bucketed_metrics(USERS, RANKED, TEST, COUNTS, EDGES, k=3)
    assert len(rows) == len(EXPECTED)
    for row, expected in zip(rows, EXPECTED):
        for key, value in expected.items():
            assert row[key] == (pytest.approx(value, abs=1e-6) if isinstance(value, float) else value), key
    assert L3 / (1 + L3) == pytest.approx(0.386853, abs=1e-6)      # the hand numbers above
    assert (1 + L4) / (1 + L3) == pytest.approx(0.919721, abs=1e-6)
    # every distinct test interaction falls in exactly one bucket
    pairs = PairSet(TEST.users, TEST.items, len(COUNTS)).keys % len(COUNTS)
    assert np.bincount(bucket_index(COUNTS[pairs], EDGES), minlength=len(EDGES)).tolist() == [2, 2, 2]
    assert sum(r["interactions"] for r in rows[:-1]) == rows[-1]["interactions"]
    # the all-items row is the ordinary test metric (MMRec's definitions)
    hits = PairSet(TEST.users, TEST.items, len(COUNTS)).contains(USERS[:, None], RANKED[:, :3])
    ordinary = compute_metrics(hits, np.array([2, 3, 1]), ["recall", "ndcg"], [3])
    assert round(rows[-1]["recall"], 4) == ordinary["recall@3"]
    assert round(rows[-1]["ndcg"], 4) == ordinary["ndcg@3"]


def test_a_bucket_without_test_items_and_bad_users():
    rows = bucketed_metrics(USERS, RANKED, TEST, COUNTS, [0, 2, 5, 50], k=3)
    assert rows[3] == {"label": "≥ 50", "lo": 50, "hi": None, "interactions": 0, "users": 0,
                       "recall": None, "ndcg": None}
    with pytest.raises(ValueError, match="every test user"):
        bucketed_metrics(np.array([0, 1]), RANKED[:2], TEST, COUNTS, EDGES, k=3)


def test_train_counts_edges_and_bucket_labels():
    train = Split(np.array([0, 0, 1, 2, 2]), np.array([1, 1, 1, 3, 1]))     # (0, 1) twice: counted once
    assert item_train_counts(train, 5).tolist() == [0, 3, 0, 1, 0]
    assert parse_edges("5,10,20") == [0, 5, 10, 20]
    assert parse_edges("0,1") == [0, 1]
    for bad in ("5,3", "0,0", "-1,2", "a"):
        with pytest.raises(ConfigError):
            parse_edges(bad)
    counts = np.repeat(np.arange(10), 10)                  # 100 interactions, 10 per count value
    edges = quantile_edges(counts, 5)
    assert edges == [0, 2, 4, 6, 8]
    assert np.bincount(bucket_index(counts, edges)).tolist() == [20] * 5
    assert quantile_edges(np.zeros(10, int), 5) == [0]     # ties merge every bucket
    assert [buckets.bucket_label([0, 1, 5], b) for b in range(3)] == ["0", "1–4", "≥ 5"]


# --------------------------------------------------------------------------------- cold items

def toy_config(tmp_path, run_dirs, model="BPR", **values):
    overrides = {"data_path": str(tmp_path / "data"), "epochs": 2, "verbose": False, "num_threads": 1,
                 **run_dirs, **values}
    return Config(model, "toy", overrides)


def pairs(split, n_items):
    return set((split.users * n_items + split.items).tolist())


def test_cold_item_split_holds_items_out_of_training(tmp_path, run_dirs):
    full = load_data(toy_config(tmp_path, run_dirs))
    data = load_data(toy_config(tmp_path, run_dirs, cold_item_ratio=0.1))
    assert full.cold_items is None and full.cold_test is None
    n = full.n_items
    assert (data.n_users, data.n_items) == (full.n_users, full.n_items)
    interacted = np.unique(np.concatenate([full.train.items, full.valid.items, full.test.items]))
    cold = data.cold_items
    assert len(cold) == round(0.1 * len(interacted)) and set(cold) <= set(interacted)
    assert not np.isin(data.train.items, cold).any() and not np.isin(data.valid.items, cold).any()
    # every interaction of a held-out item (of a user who still trains) is a test interaction
    kept_users = set(data.train.users.tolist())
    every = Split(*(np.concatenate([getattr(s, f) for s in (full.train, full.valid, full.test)])
                    for f in ("users", "items")))
    held = {k for k in pairs(every, n) if k % n in set(cold.tolist()) and k // n in kept_users}
    assert held <= pairs(data.test, n) and held == pairs(data.cold_test, n)
    assert np.isin(data.cold_test.items, cold).all()
    # the other items keep their train and valid rows
    assert pairs(data.train, n) == {k for k in pairs(full.train, n) if k % n not in set(cold.tolist())}
    # seeded: the same draw again; cold_item_seed null = the first seed; another seed, other items
    again = load_data(toy_config(tmp_path, run_dirs, cold_item_ratio=0.1))
    assert np.array_equal(again.cold_items, cold)
    by_seed = load_data(toy_config(tmp_path, run_dirs, cold_item_ratio=0.1, seed=[7]))
    by_key = load_data(toy_config(tmp_path, run_dirs, cold_item_ratio=0.1, cold_item_seed=7))
    assert np.array_equal(by_seed.cold_items, by_key.cold_items)
    assert not np.array_equal(by_key.cold_items, cold)
    # the protocol is part of a run's checkpoint identity; off, the identity is the old one
    plain = toy_config(tmp_path, run_dirs)
    assert _run_identity(toy_config(tmp_path, run_dirs, cold_item_ratio=0.1)) != _run_identity(plain)
    assert _run_identity(toy_config(tmp_path, run_dirs, cold_item_seed=3)) == _run_identity(plain)


def test_users_left_without_training_rows_are_dropped():
    # 20 users; user u trains on item u % 10 only, validates on (u + 1) % 10, tests on (u + 2) % 10
    users = np.arange(20)
    data = RecData("hand", "hand.inter", 20, 10, Split(users, users % 10), Split(users, (users + 1) % 10),
                   Split(users, (users + 2) % 10))
    cold = hold_out_items(data, 0.3, seed=0)
    assert len(cold.cold_items) == 3
    lost = users[np.isin(users % 10, cold.cold_items)]
    assert len(lost) == 6 == cold.cold_dropped_users       # two users train on each held-out item
    for split in (cold.valid, cold.test, cold.cold_test):
        assert not np.isin(split.users, lost).any()
    assert set(cold.test.users.tolist()) <= set(cold.train.users.tolist())
    kept = hold_out_items(data, 0.3, seed=0, drop_cold_users=False)   # filter_out_cod_start_users=False
    assert np.isin(kept.test.users, lost).any()
    assert hold_out_items(data, 0, seed=0) is data
    for bad in (1.0, -0.1, "a", True):
        with pytest.raises(DataError, match="cold_item_ratio"):
            hold_out_items(data, bad, seed=0)
    with pytest.raises(DataError, match="nothing is left"):
        hold_out_items(data, 0.99, seed=0)


def test_motor_scores_held_out_items_and_reports_cold_test(tmp_path, run_dirs):
    config = toy_config(tmp_path, run_dirs, model="FREEDOM", motor=True, cold_item_ratio=0.1,
                        reg_weight=0.0, dropout=0.8, result_file=str(tmp_path / "run.json"))
    data = load_data(config)
    torch.manual_seed(0)
    model, _ = build_model(config, data)
    model.eval()
    with torch.no_grad():
        cold = torch.from_numpy(data.cold_items).to(config["device"])
        scores = model.full_sort_predict([torch.arange(8, device=config["device"])])[:, cold]
        rows = model.item_id_embedding.weight[cold]
    assert torch.isfinite(scores).all() and torch.isfinite(rows).all()
    assert len(torch.unique(rows, dim=0)) == len(data.cold_items)   # each held-out item its own row

    result = quick_start(config)
    with open(tmp_path / "run.json") as handle:
        assert json.load(handle)["best"]["cold_test"] == result["best"]["cold_test"]
    cold = result["best"]["cold_test"]
    assert set(cold) == set(result["best"]["test"]) and all(math.isfinite(v) for v in cold.values())
    assert result["combinations"][0]["cold_test"] == cold
    assert result["best"]["cold_test_mpr"] == result["combinations"][0]["cold_test_mpr"]
    assert 0.0 <= result["best"]["cold_test_mpr"] <= 1.0
    # only the held-out items ranked: each one can only move up, so no cut-off scores lower
    among = result["best"]["cold_test_among"]
    assert set(among) == set(cold) and all(among[k] >= cold[k] for k in cold if k.split("@")[0] in ("recall", "ndcg"))
    shares = result["best"]["cold_test_share"]
    assert set(shares) == {f"held_out_share@{k}" for k in config["topk"]} and all(0 <= v <= 1 for v in shares.values())
    assert result["combinations"][0]["cold_test_among"] == among and result["combinations"][0]["cold_test_share"] == shares
    assert result["data"]["cold_items"] == len(data.cold_items)
    assert result["data"]["cold_test"] == len(data.cold_test)


# -------------------------------------------------------------------------------- subcommands

def common(tmp_path, run_dirs):
    caches = {k: run_dirs[k] for k in ("graph_cache_dir", "motor_cache_dir", "use_gpu")}
    extra = {"data_path": tmp_path / "data", "epochs": 2, "num_threads": 1, **caches}
    return [f"--{k}={v}" for k, v in extra.items()]


def table(text, title):
    """{first cell: row cells} of the markdown table under the line ``title``."""
    lines = text.splitlines()
    start = lines.index(title)
    while not lines[start].startswith("|"):
        start += 1
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def test_cold_items_end_to_end(tmp_path, run_dirs, capsys):
    out = tmp_path / "cold_items"
    args = ["cold-items", "-m", "FREEDOM,BPR", "-d", "toy", "--seeds", "1", "--out", str(out)]
    assert main(args + common(tmp_path, run_dirs)) == 0
    assert "toy: bucket edges 0, " in capsys.readouterr().err
    names = [f"{m}-toy-{v}-1" for m in ("FREEDOM", "BPR") for v in ("id", "motor")]
    text = (out / "cold_items.md").read_text()
    for metric, key in (("Recall@20", "recall@20"), ("NDCG@20", "ndcg@20")):
        rows = table(text, f"### Test {metric} by bucket")
        buckets = [r for label, r in rows.items() if label != "all items"]
        assert len(buckets) == 5
        assert sum(int(r["test interactions"]) for r in buckets) == int(rows["all items"]["test interactions"])
        for name in names:
            model, _, variant, _ = name.split("-")
            result = json.loads((out / "runs" / f"{name}.json").read_text())
            column = f"{model} {'ID' if variant == 'id' else 'MOTOR'}"
            assert float(rows["all items"][column].split("±")[0]) == pytest.approx(
                result["best"]["test"][key], abs=1e-4)
            assert all(r[column] != "-" for r in buckets)
    for name in names:
        users, ranked = read_topk(out / "topk" / f"{name}.tsv")
        assert ranked.shape == (len(users), 50)
    assert (out / "summary.md").is_file() and (out / "results.csv").is_file()
    assert (out / "cold_items.png").is_file() == HAVE_MATPLOTLIB

    # given edges; everything done already: nothing is trained again
    assert main(args + ["--buckets", "5,10,20,50"] + common(tmp_path, run_dirs)) == 0
    assert "skipped" in capsys.readouterr().err
    rows = table((out / "cold_items.md").read_text(), "### Test Recall@20 by bucket")
    assert list(rows) == ["0–4", "5–9", "10–19", "20–49", "≥ 50", "all items"]


def test_cold_items_takes_top_k_from_a_bench_folders_checkpoints(tmp_path, run_dirs, monkeypatch):
    out = tmp_path / "bench"
    base = ["-m", "BPR", "-d", "toy", "--seeds", "1", "--out", str(out)] + common(tmp_path, run_dirs)
    assert main(["bench"] + base) == 0
    trained = []
    real = cold_items.quick_start
    monkeypatch.setattr(cold_items, "quick_start", lambda config: trained.append(config) or real(config))
    assert main(["cold-items"] + base) == 0
    assert trained == []
    for variant in ("id", "motor"):
        assert (out / "topk" / f"BPR-toy-{variant}-1.tsv").is_file()
    # a top-K file rebuilt from the checkpoint equals the one of a fresh run
    fresh = tmp_path / "fresh"
    assert main(["cold-items", "-m", "BPR", "-d", "toy", "--seeds", "1", "--variants", "motor", "--out",
                 str(fresh)] + common(tmp_path, run_dirs)) == 0
    assert (fresh / "topk" / "BPR-toy-motor-1.tsv").read_text() == \
        (out / "topk" / "BPR-toy-motor-1.tsv").read_text()


def test_token_budget_end_to_end(tmp_path, run_dirs):
    out = tmp_path / "budget"
    args = ["token-budget", "-m", "FREEDOM", "-d", "toy", "--subspaces", "2,4", "--nbits", "4", "--seeds", "1",
            "--out", str(out)]
    assert main(args + common(tmp_path, run_dirs)) == 0
    rows = table((out / "token_budget.md").read_text(), "## FREEDOM on toy (modalities v+t)")
    assert set(rows) == {"2", "4"}
    for m in ("2", "4"):
        result = json.loads((out / "runs" / f"FREEDOM-toy-motor-1-M{m}-b4.json").read_text())
        assert rows[m]["L"] == str(2 * int(m)) and rows[m]["nbits (K)"] == "4 (16)"
        assert rows[m]["item params"] == f"{result['item_representation']['params']:,}"
        assert float(rows[m]["test R@20"].split("±")[0]) == result["best"]["test"]["recall@20"]
    assert rows["2"]["item params"] != rows["4"]["item params"]
    assert (out / "token_budget.png").is_file() == HAVE_MATPLOTLIB


def test_cold_start_end_to_end(tmp_path, run_dirs):
    out = tmp_path / "cold_start"
    args = ["cold-start", "-m", "FREEDOM,BPR", "-d", "toy", "--ratio", "0.1", "--seeds", "1", "--out", str(out)]
    assert main(args + common(tmp_path, run_dirs)) == 0
    text = (out / "cold_start.md").read_text()
    assert "## toy (cold_item_ratio 0.1)" in text and "30 held-out items" in text
    rows = table(text, "## toy (cold_item_ratio 0.1)")
    assert set(rows) == {"FREEDOM", "BPR"}
    for model in ("FREEDOM", "BPR"):
        for variant, label in (("id", "ID"), ("motor", "MOTOR")):
            result = json.loads((out / "runs" / f"{model}-toy-{variant}-1.json").read_text())
            assert result["config"]["cold_item_ratio"] == 0.1
            assert float(rows[model][f"{label} cold R@20"].split("±")[0]) == result["best"]["cold_test"]["recall@20"]
            assert float(rows[model][f"{label} all N@20"].split("±")[0]) == result["best"]["test"]["ndcg@20"]
            mpr = result["best"]["cold_test_mpr"]
            assert 0.0 <= mpr <= 1.0 and float(rows[model][f"{label} cold MPR"].split("±")[0]) == mpr
            assert (float(rows[model][f"{label} held-out share@20"].split("±")[0])
                    == result["best"]["cold_test_share"]["held_out_share@20"])
            assert (float(rows[model][f"{label} among held-out R@20"].split("±")[0])
                    == result["best"]["cold_test_among"]["recall@20"])
    assert json.loads((out / "bench.json").read_text())["overrides"]["cold_item_ratio"] == 0.1
    assert (out / "cold_start.png").is_file() == HAVE_MATPLOTLIB


@pytest.mark.parametrize("args, message", [
    (["cold-start", "-m", "BPR", "-d", "toy", "--ratio", "1.5"], "--ratio"),
    (["cold-start", "-m", "BPR", "-d", "toy", "--cold_item_ratio=0.2"], "cold_item_ratio"),
    (["cold-start", "-m", "BPR", "-d", "toy", "--cold_item_test=some"], "'cold_item_test' is 'some'"),
    (["token-budget", "-m", "BPR", "-d", "toy", "--motor_nbits=4"], "motor_nbits"),
    (["token-budget", "-m", "BPR", "-d", "toy", "--nbits", "4,x"], "--nbits"),
    (["cold-items", "-m", "BPR", "-d", "toy", "--buckets", "5,3"], "--buckets"),
    (["cold-items", "-m", "BPR", "-d", "toy", "--seed=3"], "seed"),
    (["cold-items", "-m", "NOPE", "-d", "toy"], "unknown model"),
])
def test_bad_analysis_arguments_exit_2_before_training(tmp_path, run_dirs, capsys, args, message):
    out = tmp_path / "out"
    assert main(args + ["--out", str(out)] + common(tmp_path, run_dirs)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not (out / "runs").exists()


def test_cold_start_with_each_items_own_test_rows(tmp_path, run_dirs):
    out = tmp_path / "cold_start"
    args = ["cold-start", "-m", "BPR", "-d", "toy", "--ratio", "0.1", "--seeds", "1", "--variants", "motor",
            "--cold_item_test=own", "--out", str(out)]
    assert main(args + common(tmp_path, run_dirs)) == 0
    assert "## toy (cold_item_ratio 0.1, cold_item_test own)" in (out / "cold_start.md").read_text()
    result = json.loads((out / "runs" / "BPR-toy-motor-1.json").read_text())
    plain = load_data(toy_config(tmp_path, run_dirs))
    held = load_data(toy_config(tmp_path, run_dirs, cold_item_ratio=0.1, cold_item_seed=1, cold_item_test="own"))
    kept = np.isin(plain.test.users, held.train.users)
    assert result["data"]["cold_test"] == int((kept & np.isin(plain.test.items, held.cold_items)).sum())
    assert len(held.test) == int(kept.sum())              # the dataset's own test rows, users who train


def test_cold_start_adds_later_scores_to_older_runs_from_their_checkpoints(tmp_path, run_dirs, capsys):
    out = tmp_path / "cold_start"
    args = ["cold-start", "-m", "BPR", "-d", "toy", "--ratio", "0.1", "--seeds", "1", "--out", str(out)]
    args += common(tmp_path, run_dirs)
    assert main(args) == 0
    paths = {v: out / "runs" / f"BPR-toy-{v}-1.json" for v in ("id", "motor")}
    trained = {v: json.loads(p.read_text()) for v, p in paths.items()}
    later = ("cold_test_mpr", "cold_test_among", "cold_test_share")
    for variant, path in paths.items():       # as a run from before the keys were written
        older = json.loads(path.read_text())
        for key in later:
            del older["best"][key]
            del older["combinations"][older["chosen"]][key]
        path.write_text(json.dumps(older))
    for saved in (out / "saved").glob("BPR-toy-id-*.pth"):   # the ID run loses its checkpoint
        saved.unlink()
    capsys.readouterr()
    assert main(args) == 0                                    # nothing is trained again
    err = capsys.readouterr().err
    assert "BPR-toy-motor-1: cold_test_mpr, cold_test_among, cold_test_share added from its saved checkpoint" in err
    assert "BPR-toy-id-1: cold_test_mpr, cold_test_among, cold_test_share not known (no checkpoint" in err
    assert json.loads(paths["motor"].read_text()) == trained["motor"]
    assert not set(later) & set(json.loads(paths["id"].read_text())["best"])
    rows = table((out / "cold_start.md").read_text(), "## toy (cold_item_ratio 0.1)")
    assert rows["BPR"]["ID cold MPR"] == rows["BPR"]["ID among held-out R@20"] == "-"
    assert float(rows["BPR"]["MOTOR cold MPR"].split("±")[0]) == trained["motor"]["best"]["cold_test_mpr"]
