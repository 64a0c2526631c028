"""MOTOR inside the runtime: motorize on the real FREEDOM and BPR, --motor end to end, tokenize."""
import json

import pytest
import torch

from mmrec_motor.cli import main
from mmrec_motor.config import Config
from mmrec_motor.motor import MotorItemEmbedding, MotorNotApplicableError, motorize
from mmrec_motor.data.loader import load_data
from mmrec_motor.quick_start import build_model, build_optimizer
from tests.conftest import require_shared


def toy_config(tmp_path, run_dirs, model, **extra):
    values = {"data_path": str(tmp_path / "data"), "motor": True, "seed": 999, **run_dirs, **extra}
    config = Config(model, "toy", values)
    for key in config.grid_keys():
        if isinstance(config[key], list):
            config[key] = config[key][0]
    return config


@pytest.mark.parametrize("model_name, table", [("FREEDOM", "item_id_embedding"), ("BPR", "item_embedding")])
def test_motorize_replaces_the_id_table(tmp_path, run_dirs, model_name, table):
    config = toy_config(tmp_path, run_dirs, model_name)
    data = load_data(config)
    model, item = build_model(config, data)
    assert isinstance(getattr(model, table), MotorItemEmbedding)
    names = [name for name, _ in model.named_parameters()]
    assert not any(name.startswith(table + ".weight") or name == table for name in names)
    assert item["id_table_params"] == 300 * 64 and item["kind"] == "motor"
    motor_params = {id(p) for p in getattr(model, table).parameters()}
    assert sum(p.numel() for p in getattr(model, table).parameters()) == item["params"]
    optimizer = build_optimizer(config, model)
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert motor_params and motor_params <= in_optimizer
    # one training step moves the item representation
    before = getattr(model, table).weight.detach().clone()
    batch = torch.tensor([[0, 1, 2], [data.train.items[0], data.train.items[1], data.train.items[2]],
                          [5, 6, 7]], device=config["device"])
    model.pre_epoch_processing()
    optimizer.zero_grad()
    model.calculate_loss(batch).backward()
    optimizer.step()
    assert getattr(model, table).weight.shape == (300, 64)
    assert not torch.equal(before, getattr(model, table).weight.detach())


def test_motorize_twice_or_on_a_model_without_items_raises(tmp_path, run_dirs):
    config = toy_config(tmp_path, run_dirs, "BPR")
    model, _ = build_model(config, load_data(config))
    with pytest.raises(ValueError, match="already"):
        motorize(model, config)

    class DualGNN(torch.nn.Module):
        n_items = 300

    with pytest.raises(MotorNotApplicableError, match="DualGNN"):
        motorize(DualGNN(), config)


@pytest.mark.parametrize("tcn", ["agnostic", "mean"])
def test_freedom_motor_on_toy_end_to_end(tmp_path, run_dirs, tcn):
    out = tmp_path / "r.json"
    args = ["run", "-m", "FREEDOM", "-d", "toy", "--motor", f"--motor_tcn={tcn}", "--epochs=15",
            "--dropout=0.8", "--reg_weight=0.0", f"--data_path={tmp_path / 'data'}", f"--result_file={out}"]
    assert main(args + [f"--{k}={v}" for k, v in run_dirs.items()]) == 0
    result = json.loads(out.read_text())
    assert result["motor"] is True
    item = result["item_representation"]
    assert item["kind"] == "motor" and item["motor"]["tcn"] == tcn
    assert item["params"] == item["motor"]["token_table_params"] + item["motor"]["tcn_params"]
    assert set(item["motor"]["tokenizer"]) == {"v", "t"}
    assert result["best"]["test"]["recall@20"] > 2 * 20 / 300        # random: 20/300


def test_freedom_motor_on_lfm2k(tmp_path, run_dirs):
    folder = require_shared("lfm2k")
    out = tmp_path / "r.json"
    args = ["run", "-m", "FREEDOM", "-d", "lfm2k", "--motor", "--epochs=3", "--dropout=0.8",
            "--reg_weight=0.0", f"--data_path={folder.parent}", f"--result_file={out}"]
    assert main(args + [f"--{k}={v}" for k, v in run_dirs.items()]) == 0
    result = json.loads(out.read_text())
    stats = result["item_representation"]["motor"]["tokenizer"]
    assert stats["v"]["dim_in"] == 512 and stats["t"]["dim_in"] == 384
    assert result["item_representation"]["id_table_params"] == 1425 * 64
    assert result["best"]["test"]["recall@20"] > 0.1                 # random: 20/1425 = 0.014


def test_tokenize_command_prints_statistics(tmp_path, run_dirs, capsys):
    args = ["tokenize", "-d", "toy", f"--data_path={tmp_path / 'data'}", "--neighbours", "3",
            f"--motor_cache_dir={run_dirs['motor_cache_dir']}", "--motor_num_subspaces=4"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "collision" in text.lower() and "utilisation" in text.lower()
    assert main(args) == 0                                            # second time: from the cache
    assert "cache" in capsys.readouterr().out.lower()


def optimizer_groups(tmp_path, run_dirs, model_name="FREEDOM", **extra):
    config = toy_config(tmp_path, run_dirs, model_name, **extra)
    data = load_data(config)
    model, _ = build_model(config, data)
    return config, data, model, build_optimizer(config, model)


def test_motor_learning_rate_and_weight_decay_make_a_second_parameter_group(tmp_path, run_dirs):
    config, _, model, optimizer = optimizer_groups(tmp_path, run_dirs, motor_learning_rate=0.05,
                                                   motor_weight_decay=1e-3)
    backbone, motor = optimizer.param_groups
    motor_params = list(model.item_id_embedding.parameters())
    assert {id(p) for p in motor["params"]} == {id(p) for p in motor_params}
    assert (motor["lr"], motor["weight_decay"]) == (0.05, 1e-3)
    assert (backbone["lr"], backbone["weight_decay"]) == (config["learning_rate"], config["weight_decay"] or 0.0)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in backbone["params"]} == trainable - {id(p) for p in motor_params}


def test_an_unset_motor_key_takes_the_backbones_value(tmp_path, run_dirs):
    config, _, _, optimizer = optimizer_groups(tmp_path, run_dirs, motor_weight_decay=0.01)
    assert [(g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == \
        [(config["learning_rate"], 0.0), (config["learning_rate"], 0.01)]


@pytest.mark.parametrize("motor, extra", [(True, {}), (False, {"motor_learning_rate": 0.05})])
def test_one_group_without_the_keys_or_without_motor(tmp_path, run_dirs, motor, extra):
    _, _, model, optimizer = optimizer_groups(tmp_path, run_dirs, motor=motor, **extra)
    assert len(optimizer.param_groups) == 1
    assert len(optimizer.param_groups[0]["params"]) == sum(p.requires_grad for p in model.parameters())


def test_motor_learning_rate_zero_freezes_only_motor(tmp_path, run_dirs):
    config, data, model, optimizer = optimizer_groups(tmp_path, run_dirs, "BPR", motor_learning_rate=0.0)
    motor_before = [p.detach().clone() for p in model.item_embedding.parameters()]
    users_before = model.user_embedding.weight.detach().clone()
    batch = torch.tensor([[0, 1, 2], [data.train.items[0], data.train.items[1], data.train.items[2]],
                          [5, 6, 7]], device=config["device"])
    optimizer.zero_grad()
    model.calculate_loss(batch).backward()
    optimizer.step()
    assert all(torch.equal(b, p) for b, p in zip(motor_before, model.item_embedding.parameters()))
    assert not torch.equal(users_before, model.user_embedding.weight)


def test_a_bad_motor_learning_rate_names_the_key(tmp_path, run_dirs):
    with pytest.raises(ValueError, match=r"config key 'motor_learning_rate' must be a number >= 0 or "
                                         r"null, got -0.1"):
        optimizer_groups(tmp_path, run_dirs, motor_learning_rate=-0.1)


def test_grcn_gives_motor_its_own_small_learning_rate_by_default(tmp_path, run_dirs):
    # configs/model/GRCN.yaml: at the grid's first learning_rate (1) MOTOR diverges (benchmarks.md §5)
    _, _, _, optimizer = optimizer_groups(tmp_path, run_dirs, "GRCN", learning_rate=1)
    assert [g["lr"] for g in optimizer.param_groups] == [1, 0.001]
    _, _, _, optimizer = optimizer_groups(tmp_path, run_dirs, "GRCN", learning_rate=1, motor=False)
    assert [g["lr"] for g in optimizer.param_groups] == [1]
