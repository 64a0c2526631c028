"""DRAGON on toy: ID run, --motor refused, the parameter count by hand, the homogeneous graphs
(built by the model, cached under names with their parameters), evaluation with current parameters."""
import json
import math

import torch

from mmrec_motor.cli import main
from mmrec_motor.config import Config
from mmrec_motor.models.graphs import knn_graph
from mmrec_motor.quick_start import build_model, load_data
from mmrec_motor.trainer import build_optimizer

PINNED = {"reg_weight": 0.001, "learning_rate": 0.001, "aggr_mode": "add"}
U, I, DV, DT, D = 400, 300, 64, 32, 64   # toy users, items, image/text dims; d


def toy_config(tmp_path, run_dirs, **extra):
    values = {"data_path": str(tmp_path / "data"), "seed": 999, **run_dirs, **PINNED, **extra}
    return Config("DRAGON", "toy", values)


def cli_args(tmp_path, run_dirs, out):
    return (["run", "-m", "DRAGON", "-d", "toy", "--epochs=2", f"--data_path={tmp_path / 'data'}",
             f"--result_file={out}"] + [f"--{k}={v}" for k, v in {**run_dirs, **PINNED}.items()])


def count(model):
    return sum(p.numel() for p in model.parameters())


def expected_params(feat_dims=(DV, DT)):
    """By hand: per modality (user preferences, MLP D->4d, MLP_1 4d->d) + weight_u [U, 2, 1]."""
    return sum(U * D + (dim * 4 * D + 4 * D) + (4 * D * D + D) for dim in feat_dims) + U * 2


def random_batch(generator, n=64):
    return torch.stack([torch.randint(0, U, (n,), generator=generator),
                        torch.randint(0, I, (n,), generator=generator),
                        torch.randint(0, I, (n,), generator=generator)])


def test_toy_run_two_epochs(tmp_path, run_dirs):
    out = tmp_path / "r.json"
    assert main(cli_args(tmp_path, run_dirs, out)) == 0
    result = json.loads(out.read_text())
    assert math.isfinite(result["combinations"][0]["valid"]["recall@20"])
    assert result["item_representation"] == {"kind": "id", "params": 0, "id_table_params": 0}
    names = sorted(p.name for p in (tmp_path / "graphs").glob("*.pt"))
    assert len(names) == 2 and names[0].startswith("dragon_mm_adj_k10_w0.1_vt_")
    assert names[1].startswith("user_cooc_u400_k40_softmax_")


def test_motor_is_refused(tmp_path, run_dirs, capsys):
    out = tmp_path / "r.json"
    assert main(cli_args(tmp_path, run_dirs, out) + ["--motor"]) == 2
    assert "DRAGON has no item ID embedding table" in capsys.readouterr().err
    assert not out.exists()


def test_parameter_count_and_shapes(tmp_path, run_dirs):
    config = toy_config(tmp_path, run_dirs)
    model, item = build_model(config, load_data(config))
    assert count(model) == expected_params() and item["params"] == 0
    users, items = model.forward()
    assert users.shape == (U, 2 * D) and items.shape == (I, 2 * D)       # concatenated modalities
    want = 0.1 * knn_graph(model.v_feat, 10) + 0.9 * knn_graph(model.t_feat, 10)
    assert torch.allclose(model.mm_adj.to_dense(), want.to_dense())


def test_one_modality(tmp_path, run_dirs):
    config = toy_config(tmp_path, run_dirs, vision_feature_file="")
    data = load_data(config)
    model, _ = build_model(config, data)
    assert model.v_feat is None and count(model) == expected_params((DT,))
    assert torch.allclose(model.mm_adj.to_dense(), knn_graph(model.t_feat, 10).to_dense())
    assert list((tmp_path / "graphs").glob("dragon_mm_adj_k10_w1_t_*.pt"))
    assert torch.isfinite(model.calculate_loss(random_batch(torch.Generator().manual_seed(0))))
    assert model.full_sort_predict([torch.tensor([0, 1])]).shape == (2, I)


def test_evaluation_uses_current_parameters(tmp_path, run_dirs):
    config = toy_config(tmp_path, run_dirs)
    model, _ = build_model(config, load_data(config))
    optimizer = build_optimizer(config, model)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        optimizer.zero_grad()
        loss = model.calculate_loss(random_batch(generator))
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
    users = [torch.arange(10)]
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(users)
        model.t_gcn.preference += 0.5 * torch.randn(U, D, generator=generator)
        changed = model.full_sort_predict(users)
    assert scores.shape == (10, I) and not torch.allclose(scores, changed)
