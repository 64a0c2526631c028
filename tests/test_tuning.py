"""The tuned protocol's plan: evenly spaced backbone points, MOTOR's own settings searched at the best
of them (staged) or paired with them, equal counts on both sides, and bad specs refused."""
import pytest

from mmrec_motor.config import Config, ConfigError
from mmrec_motor.experiments.tuning import backbone_points, tuning_plan


def test_bpr_grid_reduced_to_evenly_spaced_points():
    config = Config("BPR", "toy", {})
    assert [p["reg_weight"] for p in backbone_points(config, 4)] == [2.0, 0.1, 1e-3, 1e-5]
    assert [p["reg_weight"] for p in backbone_points(config, 1)] == [2.0]
    assert len(backbone_points(config, 7)) == len(backbone_points(config, 50)) == 7
    with pytest.raises(ConfigError, match="budget must be >= 1"):
        backbone_points(config, 0)


def test_two_key_grid_in_mmrec_product_order():
    # FREEDOM: dropout [0.8, 0.9] x reg_weight [0, 1e-5, 1e-4, 1e-3] -> indices 0, 2, 5, 7
    points = backbone_points(Config("FREEDOM", "toy", {}), 4)
    assert [(p["dropout"], p["reg_weight"]) for p in points] == [(0.8, 0.0), (0.8, 1e-4), (0.9, 1e-5),
                                                                 (0.9, 1e-3)]


def test_sides_share_backbone_points_and_motor_cycles_its_own():
    grid = {"motor_tcn": ["mean", "agnostic"], "motor_content": ["proj"]}
    ids = tuning_plan("FREEDOM", "toy", "id", 3, {})
    motor = tuning_plan("FREEDOM", "toy", "motor", 3, {"motor_tuning_grid": grid}, search="paired")
    assert len(ids) == len(motor) == 3
    for a, b in zip(ids, motor):
        assert (a["dropout"], a["reg_weight"]) == (b["dropout"], b["reg_weight"])
        assert a["motor"] is False and b["motor"] is True and "motor_tcn" not in a
    assert [m["motor_tcn"] for m in motor] == ["mean", "agnostic", "mean"]
    assert {m["motor_content"] for m in motor} == {"proj"}
    # no MOTOR grid: the MOTOR side trains MOTOR's defaults at the same points
    assert [sorted(m) for m in tuning_plan("BPR", "toy", "motor", 2, {"motor_tuning_grid": {}})] == [
        ["motor", "reg_weight"]] * 2
    # MOTOR.yaml's grid: the defaults first (fine tokens on), then without them
    assert [m["motor_fine_nbits"] for m in tuning_plan("BPR", "toy", "motor", 2, {}, search="paired")] == ["auto", None]


def test_listed_combinations_are_taken_as_written():
    grid = [{"motor_fine_items_per_cell": 2}, {"motor_content": "none", "motor_fine_nbits": None}]
    motor = tuning_plan("BM3", "toy", "motor", 3, {"motor_tuning_grid": grid}, search="paired")
    assert [m.get("motor_fine_items_per_cell") for m in motor] == [2, None, 2]
    assert [m.get("motor_content") for m in motor] == [None, "none", None]
    assert "motor_fine_nbits" in motor[1] and motor[1]["motor_fine_nbits"] is None
    # the backbone points are those of the ID side: BM3's 8 combinations -> indices 0, 4, 7
    ids = tuning_plan("BM3", "toy", "id", 3, {})
    assert [(p["n_layers"], p["reg_weight"], p["dropout"]) for p in ids] == [(1, 0.1, 0.3), (2, 0.1, 0.3),
                                                                             (2, 0.01, 0.5)]
    assert [(m["n_layers"], m["reg_weight"], m["dropout"]) for m in motor] == [
        (p["n_layers"], p["reg_weight"], p["dropout"]) for p in ids]
    # BM3.yaml's own grid is of this form: sparse data's best combination (2-item cells, own cells for
    # items with >= 11 training interactions), then dense data's (random tokens, no fine cells)
    yaml_grid = tuning_plan("BM3", "toy", "motor", 2, {}, search="paired")
    assert [m.get("motor_fine_items_per_cell") for m in yaml_grid] == [2, None]
    assert [m.get("motor_fine_own_min_interactions") for m in yaml_grid] == [11, None]
    assert [m.get("motor_content") for m in yaml_grid] == [None, "none"]
    assert Config("BM3", "toy", {"motor": True})["motor_content"] == "init"


def test_lattice_staged_search_tries_own_cells_at_its_best_point():
    """LATTICE.yaml's grid: MOTOR's defaults, then own fine cells for items with >= 11 training
    interactions (2-item cells kept), the second at the stage-1 point with the best validation;
    2 combinations a side at budget 2."""
    from mmrec_motor.experiments.tuning import second_stage

    pinned = {"learning_rate": 1e-3}
    ids = tuning_plan("LATTICE", "sports20", "id", 2, pinned)
    assert [(p["reg_weight"], p["learning_rate"]) for p in ids] == [(0.0, 1e-3), (1e-3, 1e-3)]
    stage_one = tuning_plan("LATTICE", "sports20", "motor", 2, pinned)
    assert stage_one == [{"reg_weight": 0.0, "learning_rate": 1e-3, "motor": True}]
    stage_two = second_stage("LATTICE", "sports20", pinned, stage_one, [0.0558], total=len(ids))
    assert stage_two == [{"reg_weight": 0.0, "learning_rate": 1e-3, "motor_fine_own_min_interactions": 11,
                          "motor": True}]
    config = Config("LATTICE", "sports20", {"motor": True})
    assert config["motor_content"] == "init" and config["motor_fine_items_per_cell"] == 2


def test_bad_specs_are_refused():
    with pytest.raises(ConfigError, match="side must be one of id, motor"):
        tuning_plan("BPR", "toy", "both", 2, {})
    with pytest.raises(ConfigError, match="'learning_rate' is not a motor_\\* key"):
        tuning_plan("BPR", "toy", "motor", 2, {"motor_tuning_grid": {"learning_rate": [1e-3]}})
    with pytest.raises(ConfigError, match="must map motor_\\* keys to lists"):
        tuning_plan("BPR", "toy", "motor", 2, {"motor_tuning_grid": "motor_tcn"})
    with pytest.raises(ConfigError, match="a list must hold mappings"):
        tuning_plan("BPR", "toy", "motor", 2, {"motor_tuning_grid": [1, 2]})
    with pytest.raises(ConfigError, match="'dropout' is not a motor_\\* key"):
        tuning_plan("BPR", "toy", "motor", 2, {"motor_tuning_grid": [{"motor_tcn": "mean"}, {"dropout": 0.1}]})


def test_bench_tuned_protocol_end_to_end(tmp_path, run_dirs):
    """bench --protocol tuned --motor-search paired on toy: each side trains its combinations, the summary reports the best
    on validation and the counts, a baseline runs once on the ID side only."""
    import csv

    from mmrec_motor.cli import main
    from mmrec_motor.experiments.report import chosen_on_validation, result_row
    from mmrec_motor.experiments.store import load_runs

    out = tmp_path / "bench"
    args = ["bench", "-m", "BPR,POP", "-d", "toy", "--seeds", "1", "--protocol", "tuned", "--budget", "2",
            "--motor-search", "paired",
            "--out", str(out), "--epochs=2", f"--data_path={tmp_path / 'data'}",
            "--motor_tuning_grid={motor_tcn: [mean], motor_content: [init, none]}",
            f"--graph_cache_dir={run_dirs['graph_cache_dir']}", f"--motor_cache_dir={run_dirs['motor_cache_dir']}",
            "--use_gpu=False"]
    assert main(args) == 0
    names = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert names == ["BPR-toy-id-1-t0.json", "BPR-toy-id-1-t1.json", "BPR-toy-motor-1-t0.json",
                     "BPR-toy-motor-1-t1.json", "POP-toy-id-1-t0.json"]
    results = load_runs(str(out))
    regs = sorted(r["config"]["reg_weight"] for r in results if r["model"] == "BPR" and not r["motor"])
    assert regs == [1e-05, 2.0]                           # BPR's grid ends, on both sides
    motor = [r for r in results if r["motor"]]
    assert sorted(r["config"]["motor_content"] for r in motor) == ["init", "none"]
    rows = [result_row(r) for r in results]
    chosen = chosen_on_validation(rows)
    for side in ("id", "motor"):
        mine = [r for r in rows if r["model"] == "BPR" and r["variant"] == f"{side}-tuned"]
        best = [c for c in chosen if c["model"] == "BPR" and c["variant"] == side]
        assert len(best) == 1 and best[0]["combinations"] == 2
        assert best[0]["valid_score"] == max(r["valid_score"] for r in mine)
    summary = (out / "summary.md").read_text()
    assert "## toy, tuned protocol" in summary and "| 2/2 |" in summary and "| 1/0 |" in summary
    with open(out / "results.csv") as handle:
        table = list(csv.DictReader(handle))
    assert {r["variant"] for r in table} == {"id-tuned", "motor-tuned"}
    assert sorted(r["tuning_combination"] for r in table) == ["0", "0", "0", "1", "1"]
    # resumable: a second call trains nothing
    assert main(args) == 0


def test_chosen_specs_pick_the_best_validation_run_per_side(tmp_path):
    from mmrec_motor.experiments.store import RunSpec, chosen_specs, write_result

    def result(score):
        return {"valid_metric": "recall@20", "best": {"valid": {"recall@20": score}}}

    specs = [RunSpec("BPR", "toy", "id", 1, f"t{k}") for k in range(3)] + [RunSpec("BPR", "toy", "id", 1)]
    for spec, score in zip(specs, (0.2, 0.3, 0.3)):
        write_result(str(tmp_path), spec, result(score))
    chosen = chosen_specs(str(tmp_path), specs)
    # the plain spec is kept; of the tuned ones t1 (best, and lower than the tied t2)
    assert sorted(s.tag for s in chosen) == ["", "t1"]


def test_cold_start_and_cold_items_take_the_tuned_protocol(tmp_path, run_dirs):
    from mmrec_motor.cli import main

    common = ["-m", "BPR", "-d", "toy", "--seeds", "1", "--protocol", "tuned", "--budget", "2", "--epochs=2",
              f"--data_path={tmp_path / 'data'}", "--motor_tcn=mean", "--motor_quantizer=pq",
              f"--graph_cache_dir={run_dirs['graph_cache_dir']}", f"--motor_cache_dir={run_dirs['motor_cache_dir']}",
              "--use_gpu=False"]
    out = tmp_path / "cold_start"
    assert main(["cold-start", *common, "--ratio", "0.2", "--out", str(out)]) == 0
    assert len(list((out / "runs").glob("BPR-toy-*-1-t*.json"))) == 4
    report = (out / "cold_start.md").read_text()
    assert "| BPR |" in report and "1/1 |" in report          # one chosen run per side
    items = tmp_path / "cold_items"
    assert main(["cold-items", *common, "--buckets", "0,10,20", "--out", str(items)]) == 0
    assert len(list((items / "topk").glob("*.tsv"))) == 4
    assert "Seeds per column: BPR id 1, BPR motor 1" in (items / "cold_items.md").read_text()


def test_staged_search_plans_backbone_points_first_then_the_best_with_motor_s_others():
    from mmrec_motor.experiments.tuning import second_stage

    grid = [{"motor_fine_items_per_cell": 2}, {"motor_content": "none", "motor_fine_nbits": None}]
    over = {"motor_tuning_grid": grid}
    # BPR's 7 reg weights, budget 4: stage 1 = 3 evenly spaced points with MOTOR's first combination
    stage_one = tuning_plan("BPR", "toy", "motor", 4, over, search="staged")
    assert [m["reg_weight"] for m in stage_one] == [2.0, 1e-2, 1e-5]
    assert all(m["motor_fine_items_per_cell"] == 2 and m["motor"] is True for m in stage_one)
    # stage 2: the best stage-1 point (ties: the earlier) with the other combination
    more = second_stage("BPR", "toy", over, stage_one, [0.1, 0.3, 0.3])
    assert more == [{"reg_weight": 1e-2, "motor_content": "none", "motor_fine_nbits": None, "motor": True}]
    assert len(stage_one) + len(more) == len(tuning_plan("BPR", "toy", "id", 4, {}))
    # one own combination: staged is paired
    assert tuning_plan("BPR", "toy", "motor", 3, {"motor_tuning_grid": {}}, search="staged") == \
        tuning_plan("BPR", "toy", "motor", 3, {"motor_tuning_grid": {}})
    # fewer points than MOTOR's own combinations (budget 2, three of MOTOR's): the first point with
    # MOTOR's first combination, then that point with the second; 2 runs, as the ID side
    three = {"motor_tuning_grid": {"motor_tcn": ["mean", "fm", "agnostic"]}}
    first = tuning_plan("BPR", "toy", "motor", 2, three, search="staged")
    assert first == [{"reg_weight": 2.0, "motor_tcn": "mean", "motor": True}]
    more = second_stage("BPR", "toy", three, first, [0.2], total=2)
    assert more == [{"reg_weight": 2.0, "motor_tcn": "fm", "motor": True}]
    assert len(second_stage("BPR", "toy", three, first, [0.2])) == 2      # without total: every other one
    with pytest.raises(ConfigError, match="MOTOR search must be one of paired, staged, got 'greedy'"):
        tuning_plan("BPR", "toy", "motor", 2, over, search="greedy")
    # staged is the default, of the plan and of the command line
    assert tuning_plan("BPR", "toy", "motor", 4, over) == stage_one
    from mmrec_motor.experiments.commands import bench_parser
    assert bench_parser().parse_args(["-m", "BPR", "-d", "toy", "--out", "x"]).motor_search == "staged"


def test_bench_staged_search_end_to_end(tmp_path, run_dirs):
    """bench --protocol tuned --motor-search staged: stage 2 uses the best stage-1 reg weight, both sides
    train the same count, and a rerun trains nothing."""
    from mmrec_motor.cli import main
    from mmrec_motor.experiments.store import load_runs

    out = tmp_path / "bench"
    args = ["bench", "-m", "BPR", "-d", "toy", "--seeds", "1", "--protocol", "tuned", "--budget", "3",
            "--motor-search", "staged", "--out", str(out), "--epochs=2", f"--data_path={tmp_path / 'data'}",
            "--motor_tuning_grid={motor_tcn: [mean], motor_content: [init, none]}", "--motor_quantizer=pq",
            f"--graph_cache_dir={run_dirs['graph_cache_dir']}", f"--motor_cache_dir={run_dirs['motor_cache_dir']}",
            "--use_gpu=False"]
    assert main(args) == 0
    motor = {r["config"]["tuning_combination"]: r for r in load_runs(str(out)) if r["motor"]}
    ids = [r for r in load_runs(str(out)) if not r["motor"]]
    assert len(motor) == len(ids) == 3
    assert [motor[k]["config"]["motor_content"] for k in range(3)] == ["init", "init", "none"]
    stage_one = [motor[0], motor[1]]
    best = max(stage_one, key=lambda r: (r["best"]["valid"]["recall@20"], -r["config"]["tuning_combination"]))
    assert motor[2]["config"]["reg_weight"] == best["config"]["reg_weight"]
    assert {r["config"]["tuning_budget"] for r in motor.values()} == {3}
    assert "| 3/3 |" in (out / "summary.md").read_text()
    assert main(args) == 0


def test_bench_staged_search_with_a_one_point_grid(tmp_path, run_dirs):
    """A backbone grid of one point (LGMRec's in MMRec's yaml; here BPR with reg_weight pinned) under
    the staged search: one run a side, MOTOR at its defaults, no stage 2."""
    from mmrec_motor.cli import main
    from mmrec_motor.experiments.store import load_runs

    out = tmp_path / "bench"
    args = ["bench", "-m", "BPR", "-d", "toy", "--seeds", "1", "--protocol", "tuned", "--budget", "3",
            "--out", str(out), "--epochs=2", "--reg_weight=0.01", f"--data_path={tmp_path / 'data'}",
            "--motor_tuning_grid={motor_tcn: [mean, fm]}", "--motor_quantizer=pq",
            f"--graph_cache_dir={run_dirs['graph_cache_dir']}", f"--motor_cache_dir={run_dirs['motor_cache_dir']}",
            "--use_gpu=False"]
    assert main(args) == 0
    runs = load_runs(str(out))
    assert sorted(r["motor"] for r in runs) == [False, True]
    motor = next(r for r in runs if r["motor"])
    assert motor["config"]["motor_tcn"] == "mean" and motor["config"]["tuning_budget"] == 1
    assert "| 1/1 |" in (out / "summary.md").read_text()
