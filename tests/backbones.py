"""Scaffolding shared by the tests/test_backbone_*.py files: toy configs, data and models, CLI runs
with pinned grid keys (and a refused --motor run), the checks of a run's result file, MOTOR's
parameter identity, a few training steps, and the check that evaluation reads the current parameters.

Devices: a model lives on its config's device (cuda:0 under MMREC_MOTOR_TEST_GPU=1, else the CPU).
Batches and other tensors are made on the CPU (the same values on every device) and moved to the
model with `to_model(model, tensor)`; train_steps and check_scores_follow_parameters do it themselves.

Plain functions; the fixtures they take as arguments (tmp_path, run_dirs, capsys) come from pytest
and conftest.py. Every expectation a backbone derives by hand (parameter formulas, table sizes, error
messages) stays in its own test file and is passed in.
"""
import json
import math

import torch

from mmrec_motor.cli import main
from mmrec_motor.config import Config
from mmrec_motor.data.loader import load_data
from mmrec_motor.quick_start import build_model, build_optimizer


class FixedScores(torch.nn.Module):
    """A stand-in ranker for evaluation tests: one fixed random score row (seed `seed`) for every user."""

    def __init__(self, n_items, seed=0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.row = torch.rand(n_items, generator=generator)

    def full_sort_predict(self, interaction):
        return self.row.expand(len(interaction[0]), -1).clone()


def toy_config(model, pinned, tmp_path, run_dirs, motor=False, **extra):
    """The Config of `model` on the toy dataset under tmp_path/data, seed 999, files kept in
    run_dirs, the pinned grid keys, then `extra` overrides."""
    values = {"data_path": str(tmp_path / "data"), "motor": motor, "seed": 999, **run_dirs, **pinned,
              **extra}
    return Config(model, "toy", values)


def build(config):
    """Load the config's data and build its backbone: (data, model, item representation)."""
    data = load_data(config)
    model, item = build_model(config, data)
    return data, model, item


def cli_args(model, pinned, tmp_path, run_dirs, out):
    """`mmrec-motor run` arguments: `model` on toy for 2 epochs, data under tmp_path/data, result file
    `out`, run_dirs and the pinned grid keys as --key=value flags."""
    return (["run", "-m", model, "-d", "toy", "--epochs=2", f"--data_path={tmp_path / 'data'}",
             f"--result_file={out}"] + [f"--{k}={v}" for k, v in {**run_dirs, **pinned}.items()])


def run_toy(model, pinned, tmp_path, run_dirs, *extra_args):
    """Run the CLI with cli_args (result file tmp_path/r.json) followed by `extra_args`; returns the
    exit status and the result file's path."""
    out = tmp_path / "r.json"
    return main(cli_args(model, pinned, tmp_path, run_dirs, out) + list(extra_args)), out


def train_toy(model, pinned, tmp_path, run_dirs, motor=False):
    """The two-epoch toy run (with --motor when `motor`); it must exit 0. Returns the loaded result file."""
    status, out = run_toy(model, pinned, tmp_path, run_dirs, *(["--motor"] if motor else []))
    assert status == 0
    return json.loads(out.read_text())


def check_id_table_run(result, pinned, motor, id_table_params):
    """The result of train_toy for a backbone with an item ID table: one combination, whose parameters
    are the seed and the pinned keys, finite valid and test recall@20; the item representation is
    MOTOR or the ID table, reports the ID table's size and, without MOTOR, has exactly its parameters."""
    combo = result["combinations"][0]
    assert len(result["combinations"]) == 1 and combo["parameters"] == {"seed": 999, **pinned}
    assert math.isfinite(combo["valid"]["recall@20"]) and math.isfinite(combo["test"]["recall@20"])
    item = result["item_representation"]
    assert item["kind"] == ("motor" if motor else "id")
    assert item["id_table_params"] == id_table_params
    if not motor:
        assert item["params"] == id_table_params


def check_joint_table_run(result, motor, id_table_params, adapter, extra_params):
    """The result of train_toy for a backbone with one joint user+item ID table: one combination, the
    motor flag, finite valid recall@20, the item representation's kind and ID table size; with MOTOR
    the adapter's name and its extra parameters (the user rows), without it the ID table's parameters."""
    assert len(result["combinations"]) == 1 and result["motor"] is motor
    assert math.isfinite(result["combinations"][0]["valid"]["recall@20"])
    item = result["item_representation"]
    assert item["kind"] == ("motor" if motor else "id") and item["id_table_params"] == id_table_params
    if motor:
        assert item["motor"]["adapter"] == adapter
        assert item["motor"]["extra_params"] == extra_params
    else:
        assert item["params"] == id_table_params


def check_motor_refused(model, pinned, tmp_path, run_dirs, capsys, message):
    """The toy run with --motor is refused: exit status 2, `message` in stderr, no result file."""
    status, out = run_toy(model, pinned, tmp_path, run_dirs, "--motor")
    assert status == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def n_parameters(model):
    """Every parameter's element count, summed."""
    return sum(p.numel() for p in model.parameters())


def motor_delta(item, joint=False):
    """MOTOR's parameter identity: how many parameters the --motor model has more than the ID one,
    from its item representation `item` (build_model's second value). The item ID table leaves and
    MOTOR's parameters and the adapter's extra ones come in; the adapter must add none (asserted).
    With `joint`, the whole user+item table leaves and its user rows come back as the extra ones."""
    extra = item["motor"]["extra_params"]
    if joint:
        return - item["id_table_params"] - extra + item["params"] + extra
    assert extra == 0
    return - item["id_table_params"] + item["params"] + extra


def device_of(model):
    """The device the model's parameters live on (its config's "device")."""
    return next(model.parameters()).device


def to_model(model, tensor):
    """`tensor` on the device of `model`'s parameters."""
    return tensor.to(device_of(model))


def toy_batch(data, negatives=True):
    """A fixed batch on the CPU: users 0-3, the first four training items, negatives 5-8 (left out
    without `negatives`)."""
    rows = [[0, 1, 2, 3], data.train.items[:4].tolist()] + ([[5, 6, 7, 8]] if negatives else [])
    return torch.tensor(rows)


def random_batch(generator, n_users, n_items, n=64):
    """A [3, n] batch of random users, positives and negatives drawn from `generator` (on the CPU)."""
    return torch.stack([torch.randint(0, n_users, (n,), generator=generator),
                        torch.randint(0, n_items, (n,), generator=generator),
                        torch.randint(0, n_items, (n,), generator=generator)])


def train_steps(model, config, batches, steps=3, pre_epoch=False):
    """`steps` optimiser steps (build_optimizer(config, model)) on model.calculate_loss, each loss
    finite. `batches`: the batch of every step, or a function called for a new one at each step;
    each is moved to the model's device. With `pre_epoch`, model.pre_epoch_processing() runs before
    the first step."""
    optimizer = build_optimizer(config, model)
    for step in range(steps):
        if pre_epoch and step == 0:
            model.pre_epoch_processing()
        batch = to_model(model, batches() if callable(batches) else batches)
        optimizer.zero_grad()
        loss = model.calculate_loss(batch)
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()


def check_scores_follow_parameters(model, n_items, perturbations, predict=None, inspect=None,
                                   finite=True):
    """Evaluation reads the current parameters. In eval mode and without gradients, the scores of
    users 0-9 (`predict(users)`, by default model.full_sort_predict((users,))) are [10, n_items]
    (and finite, with `finite`); `inspect(scores, users)`, if given, checks them further; then each
    of `perturbations` (functions that change a parameter in place) must change the scores. The users
    are on the model's device, and so are the scores."""
    model.eval()
    users = torch.arange(10, device=device_of(model))
    if predict is None:
        def predict(users):
            return model.full_sort_predict((users,))
    with torch.no_grad():
        before = predict(users)
        assert before.shape == (10, n_items) and (not finite or torch.isfinite(before).all())
        if inspect is not None:
            inspect(before, users)
        for perturb in perturbations:
            perturb()
            after = predict(users)
            assert not torch.allclose(before, after)
            before = after
