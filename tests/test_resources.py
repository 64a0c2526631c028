"""The memory guard: estimated before the evaluator's score matrix and the kNN similarity blocks are
allocated, with the available memory monkeypatched."""
import pytest
import torch

from mmrec_motor import resources
from mmrec_motor.cli import main
from mmrec_motor.config import Config
from mmrec_motor.data.dataset import load_dataset
from mmrec_motor.data.toy import ensure_toy
from mmrec_motor.evaluation import TopKEvaluator
from mmrec_motor.models import graphs
from mmrec_motor.resources import ResourceError, ensure_fits, rows_that_fit


def free(monkeypatch, n_bytes):
    monkeypatch.setattr(resources, "available_bytes", lambda device="cpu": n_bytes)


def test_available_bytes_on_cpu_is_a_positive_number():
    n = resources.available_bytes("cpu")
    assert isinstance(n, int) and n > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_available_bytes_on_cuda_is_at_most_the_device_memory():
    n = resources.available_bytes("cuda:0")
    assert 0 < n <= torch.cuda.get_device_properties(0).total_memory


def test_ensure_fits_names_the_sizes_and_the_key(monkeypatch):
    free(monkeypatch, 1000)
    ensure_fits(1000, "cpu", "x", "lower k")
    with pytest.raises(ResourceError, match=r"the thing needs 1001 B \(1001 bytes\) on cpu, but only 1000 B "
                                            r"\(1000 bytes\) is available; lower some_key"):
        ensure_fits(1001, "cpu", "the thing", "lower some_key")
    free(monkeypatch, None)                      # unknown: nothing is checked
    ensure_fits(10 ** 18, "cpu", "x", "y")


def test_rows_that_fit(monkeypatch):
    free(monkeypatch, 1000)
    assert rows_that_fit(100, 64, "cpu", share=1.0) == 10
    assert rows_that_fit(100, 64, "cpu", share=0.5) == 5
    assert rows_that_fit(100, 4, "cpu") == 4
    assert rows_that_fit(5000, 4, "cpu") == 1


@pytest.fixture
def toy(tmp_path):
    ensure_toy(str(tmp_path / "data"))
    config = Config("BPR", "toy", {"data_path": str(tmp_path / "data")})
    return load_dataset(config)


def test_evaluator_refuses_a_score_matrix_larger_than_free_memory(monkeypatch, toy):
    free(monkeypatch, 100_000)                   # 400 users x 300 items x 4 B = 480,000 B
    with pytest.raises(ResourceError, match=r"evaluation score matrix \(400 users x 300 items, float32\) needs "
                                            r"468\.8 KiB .*lower eval_batch_size \(now 4096\) to at most 83"):
        TopKEvaluator(toy, toy.valid, ["recall"], [20], batch_size=4096)
    evaluator = TopKEvaluator(toy, toy.valid, ["recall"], [20], batch_size=83)       # 99,600 B fits
    assert len(evaluator.batches) == 5


def test_the_suggested_eval_batch_size_runs(monkeypatch, tmp_path, run_dirs):
    free(monkeypatch, 100_000)
    args = ["run", "-m", "BPR", "-d", "toy", f"--data_path={tmp_path / 'data'}", "--epochs=1",
            "--eval_batch_size=41", f"--result_file={tmp_path / 'r.json'}"]
    args += [f"--{k}={v}" for k, v in run_dirs.items()]
    assert main(args) == 0 and (tmp_path / "r.json").exists()


def test_knn_blocks_shrink_to_fit_and_give_the_same_graph(monkeypatch):
    feats = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
    expected = graphs.knn_graph(feats, 5).to_dense()
    edges = graphs.cosine_knn_edges(feats, 5)
    free(monkeypatch, 300 * 4 * 20)              # half of it holds 10 rows of 300 floats
    assert graphs.similarity_chunk(300, 2048, "cpu") == 10
    assert torch.equal(graphs.knn_graph(feats, 5).to_dense(), expected)
    assert all(torch.equal(a, b) for a, b in zip(graphs.cosine_knn_edges(feats, 5), edges))
    free(monkeypatch, 100)                       # not even one row of 1,200 bytes
    with pytest.raises(ResourceError, match=r"item-item similarity matrix \(1 x 300, torch.float32\)"):
        graphs.knn_graph(feats, 5)
