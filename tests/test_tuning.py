"""The tuned protocol's plan: evenly spaced backbone points, MOTOR's own settings paired with them,
equal counts on both sides, and bad specs refused."""
import pytest

from mmrec_motor.config import Config, ConfigError
from mmrec_motor.tuning import backbone_points, tuning_plan


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
    motor = tuning_plan("FREEDOM", "toy", "motor", 3, {"motor_tuning_grid": grid})
    assert len(ids) == len(motor) == 3
    for a, b in zip(ids, motor):
        assert (a["dropout"], a["reg_weight"]) == (b["dropout"], b["reg_weight"])
        assert a["motor"] is False and b["motor"] is True and "motor_tcn" not in a
    assert [m["motor_tcn"] for m in motor] == ["mean", "agnostic", "mean"]
    assert {m["motor_content"] for m in motor} == {"proj"}
    # no MOTOR grid: the MOTOR side trains MOTOR's defaults at the same points
    assert [sorted(m) for m in tuning_plan("BPR", "toy", "motor", 2, {})] == [["motor", "reg_weight"]] * 2


def test_bad_specs_are_refused():
    with pytest.raises(ConfigError, match="side must be one of id, motor"):
        tuning_plan("BPR", "toy", "both", 2, {})
    with pytest.raises(ConfigError, match="'learning_rate' is not a motor_\\* key"):
        tuning_plan("BPR", "toy", "motor", 2, {"motor_tuning_grid": {"learning_rate": [1e-3]}})
    with pytest.raises(ConfigError, match="must map motor_\\* keys to lists"):
        tuning_plan("BPR", "toy", "motor", 2, {"motor_tuning_grid": [1, 2]})
