"""MMGCN on toy: ID and --motor runs, the parameter count by hand, evaluation with current parameters."""
import json
import math

import pytest
import torch

from mmrec_motor.cli import main
from mmrec_motor.config import Config
from mmrec_motor.quick_start import build_model, load_data
from mmrec_motor.trainer import build_optimizer

PINNED = {"reg_weight": 0.001, "learning_rate": 0.001}
U, I, DV, DT, D, LV = 400, 300, 64, 32, 64, 256   # toy users, items, image/text dims; d; image latent


def toy_config(tmp_path, run_dirs, **extra):
    values = {"data_path": str(tmp_path / "data"), "seed": 999, **run_dirs, **PINNED, **extra}
    return Config("MMGCN", "toy", values)


def count(model):
    return sum(p.numel() for p in model.parameters())


def expected_params(with_v=True, with_t=True, layers=3):
    """By hand: the joint ID table + each modality's network."""
    def modality(feat_dim, latent):
        width = latent or feat_dim
        n = U * width                                   # user preferences P_m
        if latent:
            n += feat_dim * latent + latent             # projection Linear
        for layer in range(layers):
            w = width if layer == 0 else D
            n += w * w                                  # aggregation weight W^l
            n += w * D + D                              # linear_l
            n += (w + D) * D + D                        # gate over [h || x_hat]
        return n
    total = (U + I) * D                                 # id_embedding
    if with_v:
        total += modality(DV, LV)
    if with_t:
        total += modality(DT, None)
    return total


@pytest.mark.parametrize("motor", [False, True])
def test_toy_run_two_epochs(tmp_path, run_dirs, motor):
    out = tmp_path / "r.json"
    args = ["run", "-m", "MMGCN", "-d", "toy", "--epochs=2", f"--data_path={tmp_path / 'data'}",
            f"--result_file={out}"] + [f"--{k}={v}" for k, v in {**run_dirs, **PINNED}.items()]
    assert main(args + (["--motor"] if motor else [])) == 0
    result = json.loads(out.read_text())
    assert len(result["combinations"]) == 1 and result["motor"] is motor
    assert math.isfinite(result["combinations"][0]["valid"]["recall@20"])
    item = result["item_representation"]
    assert item["kind"] == ("motor" if motor else "id") and item["id_table_params"] == I * D
    if motor:
        assert item["motor"]["adapter"] == "joint:id_embedding" and item["motor"]["extra_params"] == U * D
    else:
        assert item["params"] == I * D


def test_parameter_count_by_hand(tmp_path, run_dirs):
    config = toy_config(tmp_path, run_dirs)
    data = load_data(config)
    model, item = build_model(config, data)
    assert isinstance(model.id_embedding, torch.nn.Parameter) and model.id_embedding.shape == (U + I, D)
    assert count(model) == expected_params()
    assert item == {"kind": "id", "params": I * D, "id_table_params": I * D}

    motor_model, motor_item = build_model(toy_config(tmp_path, run_dirs, motor=True), data)
    extra = motor_item["motor"]["extra_params"]          # the user rows, now motor_user_rows
    # the joint table (item rows + user rows) leaves, MOTOR and the user rows come in
    assert count(motor_model) == (count(model) - motor_item["id_table_params"] - extra
                                  + motor_item["params"] + extra)
    assert motor_model.id_embedding.shape == (U + I, D)


def test_one_modality(tmp_path, run_dirs):
    config = toy_config(tmp_path, run_dirs, vision_feature_file="")
    data = load_data(config)
    model, _ = build_model(config, data)
    assert model.v_feat is None and count(model) == expected_params(with_v=False)
    loss = model.calculate_loss(torch.tensor([[0, 1], [data.train.items[0], 3], [5, 6]]))
    assert torch.isfinite(loss)
    assert model.full_sort_predict([torch.tensor([0, 1])]).shape == (2, I)


def test_evaluation_uses_current_parameters(tmp_path, run_dirs):
    config = toy_config(tmp_path, run_dirs)
    data = load_data(config)
    model, _ = build_model(config, data)
    optimizer = build_optimizer(config, model)
    generator = torch.Generator().manual_seed(0)
    before = model.id_embedding.detach().clone()
    for _ in range(3):
        batch = torch.stack([torch.randint(0, U, (64,), generator=generator),
                             torch.randint(0, I, (64,), generator=generator),
                             torch.randint(0, I, (64,), generator=generator)])
        optimizer.zero_grad()
        loss = model.calculate_loss(batch)
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
    assert not torch.equal(before, model.id_embedding.detach())   # the ID table is trained
    users = [torch.arange(10)]
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(users)
        model.id_embedding[:U] += 0.5 * torch.randn(U, D, generator=generator)
        changed = model.full_sort_predict(users)
    assert scores.shape == (10, I) and not torch.allclose(scores, changed)
