"""DualGNN on toy: ID run, --motor refused, the parameter count by hand, the user co-occurrence graph
(built by the model, cached), evaluation with current parameters."""
import json
import math

import numpy as np
import torch

from mmrec_motor.cli import main
from mmrec_motor.config import Config
from mmrec_motor.quick_start import build_model, load_data
from mmrec_motor.trainer import build_optimizer

PINNED = {"reg_weight": 0.001, "learning_rate": 0.001, "aggr_mode": "add"}
U, I, DV, DT, D, K = 400, 300, 64, 32, 64, 40   # toy users, items, image/text dims; d; user_knn_k


def toy_config(tmp_path, run_dirs, **extra):
    values = {"data_path": str(tmp_path / "data"), "seed": 999, **run_dirs, **PINNED, **extra}
    return Config("DualGNN", "toy", values)


def cli_args(tmp_path, run_dirs, out):
    return (["run", "-m", "DualGNN", "-d", "toy", "--epochs=2", f"--data_path={tmp_path / 'data'}",
             f"--result_file={out}"] + [f"--{k}={v}" for k, v in {**run_dirs, **PINNED}.items()])


def count(model):
    return sum(p.numel() for p in model.parameters())


def expected_params(feat_dims=(DV, DT)):
    """By hand: per modality (user preferences, MLP D->4d, MLP_1 4d->d) + weight_u + weight_i."""
    total = sum(U * D + (dim * 4 * D + 4 * D) + (4 * D * D + D) for dim in feat_dims)
    return total + U * 2 + I * 2


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
    assert list((tmp_path / "graphs").glob("user_cooc_u400_k40_softmax_*.pt"))


def test_motor_is_refused(tmp_path, run_dirs, capsys):
    out = tmp_path / "r.json"
    assert main(cli_args(tmp_path, run_dirs, out) + ["--motor"]) == 2
    assert "DualGNN has no item ID embedding table" in capsys.readouterr().err
    assert not out.exists()


def test_parameter_count_by_hand(tmp_path, run_dirs):
    config = toy_config(tmp_path, run_dirs)
    model, item = build_model(config, load_data(config))
    assert count(model) == expected_params()
    assert item["params"] == 0


def test_one_modality(tmp_path, run_dirs):
    config = toy_config(tmp_path, run_dirs, text_feature_file="")
    data = load_data(config)
    model, _ = build_model(config, data)
    assert model.t_feat is None and count(model) == expected_params((DV,))
    assert torch.isfinite(model.calculate_loss(random_batch(torch.Generator().manual_seed(0))))
    assert model.full_sort_predict([torch.tensor([0, 1])]).shape == (2, I)


def test_user_graph_is_top_k_cooccurrence_and_cached(tmp_path, run_dirs):
    config = toy_config(tmp_path, run_dirs)
    data = load_data(config)
    model, _ = build_model(config, data)
    graph = model.user_graph.to_dense()
    R = data.inter_matrix(form="csr").toarray()
    counts = R @ R.T
    np.fill_diagonal(counts, 0)
    for u in range(0, U, 37):                               # a reference, one user at a time
        nonzero = np.flatnonzero(counts[u])
        ranked = nonzero[np.lexsort((nonzero, -counts[u, nonzero]))][:K]
        want = torch.zeros(U)
        want[ranked] = torch.softmax(torch.tensor(counts[u, ranked], dtype=torch.float32), 0)
        assert torch.allclose(graph[u], want, atol=1e-6)
    assert torch.allclose(graph.sum(1)[graph.sum(1) > 0], torch.ones(1))
    files = list((tmp_path / "graphs").glob("user_cooc_*.pt"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    again, _ = build_model(config, data)                    # read back from the cache
    assert files[0].stat().st_mtime_ns == stamp
    assert torch.equal(again.user_graph.to_dense(), graph)


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
        model.v_gcn.preference += 0.5 * torch.randn(U, D, generator=generator)
        changed = model.full_sort_predict(users)
    assert scores.shape == (10, I) and not torch.allclose(scores, changed)
