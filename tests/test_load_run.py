"""The best checkpoint stores the run's resolved config, and ``load_run`` rebuilds the run from it:
the same config (device resolved again), data and model, the model ranking as the run did."""
import pytest
import torch

from mmrec_motor.config import Config, ConfigError
from mmrec_motor.quick_start import evaluator, load_run, quick_start


def finished_run(tmp_path, run_dirs, **values):
    config = Config("BPR", "toy", {"data_path": str(tmp_path / "data"), "epochs": 2, "verbose": False,
                                   "num_threads": 1, **run_dirs, **values})
    result = quick_start(config)
    return result, result["combinations"][result["chosen"]]["checkpoint"]


@pytest.mark.parametrize("motor", [False, True])
def test_load_run_rebuilds_config_data_and_model(tmp_path, run_dirs, motor):
    result, path = finished_run(tmp_path, run_dirs, motor=motor, reg_weight=1e-3)
    state = torch.load(path, weights_only=False)
    assert state["config"] == result["config"]                  # one combination: its resolved config
    run = load_run(path)
    assert run.config.to_dict() == result["config"]
    assert run.checkpoint["test"] == result["best"]["test"]
    assert (run.data.n_users, run.data.n_items, len(run.data.train)) == (400, 300, result["data"]["train"])
    assert evaluator(run.config, run.data, run.data.test).evaluate(run.model) == result["best"]["test"]
    kinds = {type(m).__name__ for m in run.model.modules()}
    assert ("MotorItemEmbedding" in kinds) == motor


def test_a_checkpoint_without_config_needs_the_runs_config(tmp_path, run_dirs):
    result, path = finished_run(tmp_path, run_dirs)
    state = torch.load(path, weights_only=False)
    del state["config"], state["checksum"]                      # as written before checkpoints held them
    torch.save(state, path)
    with pytest.raises(ValueError, match="stores no config"):
        load_run(path)
    run = load_run(path, result["config"])
    assert evaluator(run.config, run.data, run.data.test).evaluate(run.model) == result["best"]["test"]


def test_a_damaged_checkpoint_is_refused(tmp_path, run_dirs):
    _, path = finished_run(tmp_path, run_dirs)
    state = torch.load(path, weights_only=False)
    weights = next(iter(state["model"].values()))
    weights.view(-1)[0] += 1.0                                   # damaged bytes, checksum kept
    torch.save(state, path)
    with pytest.raises(ValueError, match="do not match the checksum written with it"):
        load_run(path)


def test_config_from_dict_round_trips_and_checks(tmp_path):
    config = Config("FREEDOM", "toy", {"data_path": str(tmp_path), "seed": [1, 2], "use_gpu": False})
    again = Config.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict() and again.grid_keys() == config.grid_keys()
    with pytest.raises(ConfigError, match="'epochs' must be a positive integer"):
        Config.from_dict({**config.to_dict(), "epochs": 0})


def test_a_run_made_before_an_evaluation_rule_loads_without_it(tmp_path, run_dirs):
    """A cold-start MOTOR run whose stored config predates motor_unseen_neighbours and
    isolated_self_loops loads with both off (their values before the keys existed), not with today's
    auto (on under the cold-start protocol); a config that holds the keys keeps them."""
    result, path = finished_run(tmp_path, run_dirs, motor=True, reg_weight=1e-3, cold_item_ratio=0.1)
    assert load_run(path).config["motor_unseen_neighbours"] == "auto"
    state = torch.load(path, weights_only=False)
    for name in ("motor_unseen_neighbours", "isolated_self_loops", "motor_unseen_norm"):
        del state["config"][name]
    del state["checksum"]
    torch.save(state, path)
    old = load_run(path)
    assert (old.config["motor_unseen_neighbours"], old.config["isolated_self_loops"],
            old.config["motor_unseen_norm"]) == (0, False, "off")
    assert load_run(path, overrides={"motor_unseen_neighbours": 5}).config["motor_unseen_neighbours"] == 5


def test_a_run_made_before_a_volatile_key_loads_with_its_default(tmp_path, run_dirs):
    """Before: a checkpoint whose config predates test_every_epoch or nan_loss (keys that do not change
    what a run computes) failed to load ("config key 'nan_loss' is None"). Now each takes overall.yaml's
    value; a key that is neither volatile nor an evaluation rule still has to be there."""
    result, path = finished_run(tmp_path, run_dirs, motor=False, reg_weight=1e-3)
    state = torch.load(path, weights_only=False)
    for name in ("test_every_epoch", "nan_loss"):
        del state["config"][name]
    del state["checksum"]
    torch.save(state, path)
    old = load_run(path)
    assert (old.config["test_every_epoch"], old.config["nan_loss"]) == (True, "raise")
    del state["config"]["learner"]
    torch.save(state, path)
    with pytest.raises(ConfigError, match="'learner'"):
        load_run(path)

