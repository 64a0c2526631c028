"""GRCN on toy: ID and --motor runs, the parameter count by hand, the refined graph's edge weights,
evaluation with current parameters."""
import json
import math

import pytest
import torch

from mmrec_motor.cli import main
from mmrec_motor.config import Config
from mmrec_motor.models.grcn import segment_softmax
from mmrec_motor.quick_start import build_model, load_data
from mmrec_motor.trainer import build_optimizer

PINNED = {"reg_weight": 0.001, "learning_rate": 0.001}
U, I, DV, DT, D, C = 400, 300, 64, 32, 64, 64   # toy users, items, image/text dims; d; latent_embedding


def toy_config(tmp_path, run_dirs, **extra):
    values = {"data_path": str(tmp_path / "data"), "seed": 999, **run_dirs, **PINNED, **extra}
    return Config("GRCN", "toy", values)


def count(model):
    return sum(p.numel() for p in model.parameters())


def expected_params(feat_dims=(DV, DT)):
    """By hand: joint ID table + per modality (user prototypes, MLP) + per-node modality confidences."""
    total = (U + I) * D                                  # id_gcn.id_embedding
    for dim in feat_dims:
        total += U * C + dim * C + C                     # preference, MLP
    total += (U + I) * len(feat_dims)                    # model_specific_conf
    return total


def random_batch(generator, n=64):
    return torch.stack([torch.randint(0, U, (n,), generator=generator),
                        torch.randint(0, I, (n,), generator=generator),
                        torch.randint(0, I, (n,), generator=generator)])


@pytest.mark.parametrize("motor", [False, True])
def test_toy_run_two_epochs(tmp_path, run_dirs, motor):
    out = tmp_path / "r.json"
    args = ["run", "-m", "GRCN", "-d", "toy", "--epochs=2", f"--data_path={tmp_path / 'data'}",
            f"--result_file={out}"] + [f"--{k}={v}" for k, v in {**run_dirs, **PINNED}.items()]
    assert main(args + (["--motor"] if motor else [])) == 0
    result = json.loads(out.read_text())
    assert len(result["combinations"]) == 1 and result["motor"] is motor
    assert math.isfinite(result["combinations"][0]["valid"]["recall@20"])
    item = result["item_representation"]
    assert item["kind"] == ("motor" if motor else "id") and item["id_table_params"] == I * D
    if motor:
        assert item["motor"]["adapter"] == "joint:id_gcn.id_embedding"
        assert item["motor"]["extra_params"] == U * D
    else:
        assert item["params"] == I * D


def test_parameter_count_by_hand(tmp_path, run_dirs):
    config = toy_config(tmp_path, run_dirs)
    data = load_data(config)
    model, item = build_model(config, data)
    assert isinstance(model.id_gcn.id_embedding, torch.nn.Parameter)
    assert model.id_gcn.id_embedding.shape == (U + I, D)
    assert count(model) == expected_params()
    assert item == {"kind": "id", "params": I * D, "id_table_params": I * D}

    motor_model, motor_item = build_model(toy_config(tmp_path, run_dirs, motor=True), data)
    extra = motor_item["motor"]["extra_params"]          # the user rows, now motor_user_rows
    assert count(motor_model) == (count(model) - motor_item["id_table_params"] - extra
                                  + motor_item["params"] + extra)
    assert motor_model.id_gcn.id_embedding.shape == (U + I, D)


def test_one_modality(tmp_path, run_dirs):
    config = toy_config(tmp_path, run_dirs, vision_feature_file="")
    data = load_data(config)
    model, _ = build_model(config, data)
    assert model.v_feat is None and count(model) == expected_params((DT,))
    loss = model.calculate_loss(random_batch(torch.Generator().manual_seed(0)))
    assert torch.isfinite(loss)
    assert model.full_sort_predict([torch.tensor([0, 1])]).shape == (2, I)


def test_segment_softmax_matches_a_loop():
    scores = torch.tensor([1.0, 2.0, 3.0, -1.0, 0.5])
    groups = torch.tensor([0, 0, 2, 2, 2])
    got = segment_softmax(scores, groups, 3)
    want = torch.cat([torch.softmax(scores[:2], 0), torch.softmax(scores[2:], 0)])
    assert torch.allclose(got, want)


def test_refined_edge_weights_get_gradients_and_prototypes_route(tmp_path, run_dirs):
    config = toy_config(tmp_path, run_dirs)
    model, _ = build_model(config, load_data(config))
    model.calculate_loss(random_batch(torch.Generator().manual_seed(1))).backward()
    # the confidences only reach the loss through the sparse edge weights of the ID graph
    assert model.model_specific_conf.grad is not None and model.model_specific_conf.grad.abs().sum() > 0
    # routing moves the user prototypes away from normalize(P)
    content, _ = model.v_gcn(model.v_feat, (model.src, model.dst, model.n_user_edges))
    model.v_gcn.n_routing = 0
    unrouted, _ = model.v_gcn(model.v_feat, (model.src, model.dst, model.n_user_edges))
    assert not torch.allclose(content[:U], unrouted[:U])


def test_evaluation_uses_current_parameters(tmp_path, run_dirs):
    config = toy_config(tmp_path, run_dirs)
    data = load_data(config)
    model, _ = build_model(config, data)
    optimizer = build_optimizer(config, model)
    generator = torch.Generator().manual_seed(0)
    before = model.id_gcn.id_embedding.detach().clone()
    for _ in range(3):
        optimizer.zero_grad()
        loss = model.calculate_loss(random_batch(generator))
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
    assert not torch.equal(before, model.id_gcn.id_embedding.detach())
    users = [torch.arange(10)]
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(users)
        model.id_gcn.id_embedding[:U] += 0.5 * torch.randn(U, D, generator=generator)
        changed = model.full_sort_predict(users)
    assert scores.shape == (10, I) and not torch.allclose(scores, changed)
