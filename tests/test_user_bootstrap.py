"""The paired bootstrap over users (mmrec_motor/experiments/bootstrap.py) on hand-computed cases, and
benchmarks/user_bootstrap.py's per-user metric against the evaluator's mean."""
import importlib.util

import numpy as np
import pytest
import torch

from mmrec_motor.experiments.bootstrap import BLOCK, change_interval, draw_blocks, draws, seed_mean, split_gap
from tests.backbones import FixedScores, toy_config
from tests.conftest import REPO, bench_args


def test_draws_are_counts_of_n_users_per_round():
    counts = draws(5, 300, seed=1)
    assert counts.shape == (300, 5) and counts.dtype == np.int64
    assert (counts.sum(1) == 5).all() and (counts >= 0).all()
    assert abs(counts.mean() - 1.0) < 0.05                     # each user drawn once per round on average


def test_draws_in_blocks_are_one_draw():
    """Blocks of BLOCK rounds from one generator: the same counts as drawing every round at once (so
    the interval of a change does not depend on the block size)."""
    blocks = list(draw_blocks(7, 2 * BLOCK + 3, seed=4))
    assert [len(b) for b in blocks] == [BLOCK, BLOCK, 3]
    once = np.random.default_rng(4).multinomial(7, np.full(7, 1 / 7), size=2 * BLOCK + 3)
    assert np.array_equal(np.concatenate(blocks), once) and np.array_equal(draws(7, 2 * BLOCK + 3, 4), once)


def test_seed_mean_averages_each_users_values_over_runs():
    users, mean = seed_mean([(np.array([3, 1]), np.array([0.0, 1.0])), (np.array([3, 1]), np.array([0.5, 0.0]))])
    assert np.array_equal(users, [3, 1]) and np.array_equal(mean, [0.25, 0.5])
    with pytest.raises(ValueError, match="ID side: the runs evaluate different users"):
        seed_mean([(np.array([3, 1]), np.zeros(2)), (np.array([1, 3]), np.zeros(2))], "ID side")
    with pytest.raises(ValueError, match="runs: no runs to average"):
        seed_mean([])


def test_a_constant_ratio_has_a_zero_width_interval():
    a = np.array([0.1, 0.5, 0.0, 0.25])
    doubled = change_interval(a, 2 * a, resamples=500)
    assert (doubled.value, doubled.low, doubled.high, doubled.share_le0) == pytest.approx((1.0, 1.0, 1.0, 0.0))
    same = change_interval(a, a, resamples=500)
    assert (same.value, same.low, same.high, same.share_le0) == pytest.approx((0.0, 0.0, 0.0, 1.0))


def test_two_users_give_the_three_hand_computed_rounds():
    """a = [1, 1], b = [2, 0]: a round draws user 0 twice (rel +1, p 1/4), each once (0, p 1/2) or
    user 1 twice (-1, p 1/4); so P(rel <= 0) = 3/4 and the 95% interval is [-1, +1]."""
    change = change_interval([1.0, 1.0], [2.0, 0.0], resamples=8000, seed=3)
    assert change.value == 0.0
    assert (change.low, change.high) == (-1.0, 1.0)
    assert abs(change.share_le0 - 0.75) < 0.02
    assert change.text() == f"+0.0% [-100.0%, +100.0%], P(<=0) {change.share_le0:.2f}"


def test_split_gap_is_zero_when_both_splits_are_the_same_users_and_values():
    a, b, users = np.array([0.2, 0.4, 0.1]), np.array([0.3, 0.3, 0.2]), np.array([7, 2, 5])
    valid, test, gap = split_gap(a, b, users, a, b, users, resamples=400)
    assert valid == test
    assert valid.value == pytest.approx(0.8 / 0.7 - 1)
    assert (gap.value, gap.low, gap.high) == (0.0, 0.0, 0.0)


def test_split_gap_draws_a_user_of_both_splits_once_for_both():
    """Valid users {0, 1}, test users {1, 2}: B beats A on valid only for user 1 and on test only for
    user 1, so whenever a round draws user 1 both splits move together; the gap's interval is
    narrower than the sum of the two splits' widths."""
    valid, test, gap = split_gap([1.0, 1.0], [1.0, 2.0], [0, 1], [1.0, 1.0], [2.0, 1.0], [1, 2], resamples=4000)
    assert valid.value == test.value == 0.5
    assert gap.value == 0.0
    assert gap.high - gap.low < (valid.high - valid.low) + (test.high - test.low)


def test_bad_inputs_name_what_is_wrong():
    with pytest.raises(ValueError, match=r"same shape|one shape"):
        change_interval([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="model A's mean is 0"):
        change_interval([0.0, 0.0], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"split_gap \(test\): expected 2 distinct users"):
        split_gap([0.1], [0.2], [0], [0.1, 0.2], [0.2, 0.1], [3, 3])
    with pytest.raises(ValueError, match="resamples and n_users must be >= 1"):
        draws(3, 0, 0)


def _script(name="user_bootstrap"):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_per_user_recall_averages_to_the_evaluators_recall(tmp_path, run_dirs):
    from mmrec_motor.evaluation import JointRanking
    from mmrec_motor.quick_start import load_data, split_evaluators

    config = toy_config("BPR", {}, tmp_path, run_dirs)
    data = load_data(config)
    model = FixedScores(data.n_items)
    valid, test = split_evaluators(config, data)[:2]
    both = JointRanking.rank_both(valid, test, model)          # one ranking of the union, split
    assert JointRanking.of(valid, test) is not None
    assert np.array_equal(both[0], valid.rank(model)) and np.array_equal(both[1], test.rank(model))
    for evaluator in (valid, test):
        ranked = evaluator.rank(model)
        for metric in ("recall", "ndcg"):
            values = evaluator.per_user(ranked, metric, 20)
            assert values.shape == (len(evaluator.users),)
            assert round(float(values.mean()), 4) == evaluator.metrics_of(ranked)[f"{metric}@20"]
            assert values.min() >= 0 and values.max() <= 1
        table = evaluator.per_user_metrics(ranked)              # every configured metric@k at once
        assert list(table) == list(evaluator.metrics_of(ranked))
        assert all(v.mean() == pytest.approx(evaluator.metrics_of(ranked)[k], abs=5.0001e-5) for k, v in table.items())
        assert np.array_equal(table["ndcg@10"], evaluator.per_user(ranked, "ndcg", 10))
        with pytest.raises(ValueError, match=r"cut-off 51 is outside the ranking's 1..50 places"):
            evaluator.per_user(ranked, "recall", 51)
        with pytest.raises(ValueError, match=r"metric 'hit': expected one of map, ndcg, precision, recall"):
            evaluator.per_user(ranked, "hit", 20)


def test_epoch_curves_read_valid_and_test_of_every_epoch(tmp_path):
    module = _script()
    log = tmp_path / "run.log"
    metrics = "recall@5: {a:.4f}    recall@20: {b:.4f}    ndcg@20: 0.0100 \n"
    lines = []
    for epoch, (v, t) in enumerate([(0.01, 0.02), (0.05, 0.04), (0.03, 0.06)]):
        lines += [f"Sun 06 Dec 2026 21:04:0{epoch} epoch {epoch} evaluating [time: 0.84s, valid_score: {v}]\n",
                  "Sun 06 Dec 2026 21:04:04 valid result: \n", metrics.format(a=v / 2, b=v),
                  "Sun 06 Dec 2026 21:04:04 test result: \n", metrics.format(a=t / 2, b=t)]
    closing = ["best valid result: \n", metrics.format(a=0.9, b=0.9), "test result: \n", metrics.format(a=0.9, b=0.9)]
    log.write_text("".join(lines + closing))
    valid, test = module.epoch_curves(str(log), "recall@20")
    np.testing.assert_allclose(valid, [0.01, 0.05, 0.03])
    np.testing.assert_allclose(test, [0.02, 0.04, 0.06])       # the closing summary is no epoch
    assert module.around_best(valid, test, 1) == pytest.approx((0.05, 0.04, 0.03, 0.04))
    assert module.around_best(valid, test, 0) == pytest.approx((0.05, 0.04, 0.05, 0.04))
    log.write_text("".join(lines[:-2] + closing))
    with pytest.raises(ValueError, match=r"run.log: expected one valid and one test recall@20 per evaluated "
                                         r"epoch, found 3 and 2"):
        module.epoch_curves(str(log), "recall@20")


def test_cold_users_bootstrap_against_content_knn(tmp_path, run_dirs):
    """benchmarks/cold_among_held_out.py --bootstrap: per-user cold and among-held-out Recall@20 whose
    means are cold_metrics' values, and a run compared with itself is +0.0% with a zero-width interval."""
    from mmrec_motor.quick_start import cold_metrics, evaluator, load_data

    module = _script("cold_among_held_out")
    config = toy_config("BPR", {}, tmp_path, run_dirs, cold_item_ratio=0.3)
    data = load_data(config)
    model = FixedScores(data.n_items)
    values = module.per_user_cold(config, data, model)
    expected = cold_metrics(config, data, evaluator(config, data, data.cold_test), model)
    assert round(float(values["cold"][1].mean()), 4) == expected["cold_test"]["recall@20"]
    assert round(float(values["among"][1].mean()), 4) == expected["cold_test_among"]["recall@20"]
    assert np.array_equal(values["cold"][0], values["among"][0])
    same = module.against_knn(values, values, 200)
    assert same.count("+0.0% [+0.0%, +0.0%], P(<=0) 1.00") == 2
    assert f"over {len(values['cold'][0])} cold users" in same


def test_user_bootstrap_on_a_bench_folder(tmp_path, run_dirs, capsys):
    """The whole script on a toy bench (BPR, ID and MOTOR, 2 seeds, 2 epochs): every run's per-user
    values (from its per-user metrics file, and again reloaded from its checkpoint once the files are
    gone) reproduce its stored valid and test Recall@20, and the printed means are the seed means."""
    import json
    import shutil

    from mmrec_motor.cli import main as cli

    out = tmp_path / "bench"
    assert cli(bench_args(tmp_path, run_dirs, out, "BPR", "id,motor", "1,2")) == 0
    capsys.readouterr()
    assert _script().main([str(out), "--resamples", "200", "--window", "1"]) == 0
    from_files = capsys.readouterr().out
    shutil.rmtree(out / "users")
    assert _script().main([str(out), "--resamples", "200", "--window", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed == from_files                     # reloaded checkpoints give the files' values exactly
    assert printed.count(": reproduced") == 8 and "NOT" not in printed
    stored = {}
    for path in (out / "runs").glob("*.json"):
        result = json.loads(path.read_text())
        side = "MOTOR" if result["motor"] else "ID"
        for split in ("valid", "test"):
            stored.setdefault((side, split), []).append(result["best"][split]["recall@20"])
    for split, label in (("valid", "valid:"), ("test", "test: ")):
        line = next(row for row in printed.splitlines() if row.strip().startswith(label.strip()))
        for side in ("ID", "MOTOR"):
            shown = float(line.split(f"{side} ")[1].split(",")[0])
            assert shown == pytest.approx(np.mean(stored[(side, split)]), abs=1e-4)
    assert "ID over its logs: best epoch valid" in printed and "MOTOR over its logs" in printed
