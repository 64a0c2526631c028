"""Catalogue scale: tokenizing by blocks of rows and on a training sample, memory-mapped feature files,
items scored in chunks at evaluation, and MOTOR rows computed for a BPR batch's items only."""
import numpy as np
import pytest
import torch

import mmrec_motor.motor.preprocess as preprocess
import mmrec_motor.motor.tokenizer as tokenizer
import mmrec_motor.motor.tokenizer_params as tokenizer_params
from mmrec_motor.config import Config, grid
from mmrec_motor.data.dataset import DataError
from mmrec_motor.data.features import load_named
from mmrec_motor.data.loader import load_data
from mmrec_motor.evaluation import TopKEvaluator
from mmrec_motor.motor.tokenizer import TokenizerParams, fit_tokenize
from mmrec_motor.quick_start import build_model, sampler_of
from mmrec_motor.trainer import init_seed


def _features(n=700, d=24, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


@pytest.mark.parametrize("quantizer, normalize", [("pq", "l2"), ("rq", "standard"), ("opq", "l2")])
def test_blocks_of_rows_give_the_tokens_and_statistics_of_one_pass(monkeypatch, quantizer, normalize):
    x = _features()
    params = TokenizerParams(quantizer=quantizer, num_subspaces=4, nbits=4, normalize=normalize, seed=3)
    whole = fit_tokenize(x, params)
    monkeypatch.setattr(preprocess, "BLOCK_ROWS", 128)         # 700 rows: 6 blocks, the last of 60
    blocks = fit_tokenize(x, params)
    np.testing.assert_array_equal(blocks.tokens, whole.tokens)
    for stat in ("recon_mse", "recon_rel"):
        assert blocks.stats[stat] == pytest.approx(whole.stats[stat], rel=1e-6)


def test_the_quantizer_trains_on_a_sample_beyond_the_cap(monkeypatch):
    x = _features(n=900)
    assert fit_tokenize(x, TokenizerParams(num_subspaces=4, nbits=4)).stats["n_train"] == 900
    monkeypatch.setattr(tokenizer, "AUTO_MAX_TRAIN_ITEMS", 500)
    sampled = fit_tokenize(x, TokenizerParams(num_subspaces=4, nbits=4))
    assert sampled.stats["n_train"] == 500 and sampled.tokens.shape == (900, 4)    # every item encoded
    explicit = fit_tokenize(x, TokenizerParams(num_subspaces=4, nbits=4, max_train_items=300))
    assert explicit.stats["n_train"] == 300
    assert tokenizer_params.AUTO_MAX_TRAIN_ITEMS == 2 ** 17


def _dataset(tmp_path, features):
    folder = tmp_path / "data" / "toy"
    config = Config("BPR", "toy", {"data_path": str(tmp_path / "data"), "use_gpu": False})
    data = load_data(config)
    np.save(folder / "text_feat.npy", features(data.n_items))
    return config, data


def test_motor_features_are_memory_mapped_when_float32(tmp_path):
    config, data = _dataset(tmp_path, lambda n: _features(n=n))
    ((path, array),) = load_named(config, {"t": "text_feature_file"}, data.n_items).values()
    assert isinstance(array, np.memmap) and not array.flags.writeable and array.shape == (data.n_items, 24)
    np.testing.assert_array_equal(array, np.load(path))
    np.save(path, _features(n=data.n_items).astype(np.float64))         # float64: read and converted
    ((_, converted),) = load_named(config, {"t": "text_feature_file"}, data.n_items).values()
    assert not isinstance(converted, np.memmap) and converted.dtype == np.float32
    bad = _features(n=data.n_items)
    bad[7, 3] = np.nan
    np.save(path, bad)
    with pytest.raises(DataError, match=r"1 row\(s\) contain NaN or inf, first item IDs \[7\]"):
        load_named(config, {"t": "text_feature_file"}, data.n_items)


def _trained_bpr(tmp_path, motor=False, model_name="BPR"):
    config, data = _dataset(tmp_path, lambda n: _features(n=n))
    config = Config(model_name, "toy", {"data_path": str(tmp_path / "data"), "use_gpu": False, "motor": motor,
                                   "motor_cache_dir": str(tmp_path / "tokens"), "motor_fine_nbits": None,
                                   "motor_modalities": ["t"]})
    for name, value in zip(*grid(config)[0]):
        config[name] = value
    init_seed(0)
    model, _ = build_model(config, data)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for batch in sampler_of(config, data):
        optimizer.zero_grad()
        model.calculate_loss(batch).backward()
        optimizer.step()
    return config, data, model


@pytest.mark.parametrize("chunk", [20, 77, 299])
def test_items_scored_in_chunks_rank_as_whole_rows(tmp_path, chunk):
    config, data, model = _trained_bpr(tmp_path)
    whole = TopKEvaluator(data, data.test, ["recall", "ndcg"], [5, 20], batch_size=64)
    chunked = TopKEvaluator(data, data.test, ["recall", "ndcg"], [5, 20], batch_size=64, item_chunk=chunk)
    assert chunked.item_chunk == chunk
    ranked, ranked_chunks = whole.rank(model), chunked.rank(model)
    np.testing.assert_array_equal(ranked_chunks, ranked)
    assert chunked.evaluate(model) == whole.evaluate(model)
    # a user's training items never come back, whichever chunk they fall in
    train = data.train_matrix()
    for row, user in enumerate(chunked.users[:50]):
        assert not set(ranked_chunks[row]) & set(train[user].indices)


def test_item_chunk_errors_and_whole_catalogue(tmp_path):
    config, data = _dataset(tmp_path, lambda n: _features(n=n))
    with pytest.raises(ValueError, match="'eval_item_chunk': 10 items per chunk is fewer than the largest "
                                         "cut-off 20"):
        TopKEvaluator(data, data.test, ["recall"], [5, 20], batch_size=8, item_chunk=10)
    with pytest.raises(ValueError, match="'eval_item_chunk': expected a positive number"):
        TopKEvaluator(data, data.test, ["recall"], [5], batch_size=8, item_chunk=0)
    assert TopKEvaluator(data, data.test, ["recall"], [5], 8, item_chunk=data.n_items).item_chunk is None
    with pytest.raises(ValueError, match="eval_item_chunk"):
        Config("BPR", "toy", {"eval_item_chunk": -3})


def test_motor_bpr_step_computes_only_the_batch_rows(tmp_path):
    config, data, model = _trained_bpr(tmp_path, motor=True)
    motor = model.item_embedding
    assert motor.n_computations == 0                     # no step built the whole table
    assert motor.n_row_computations == len(sampler_of(config, data))
    batch = next(iter(sampler_of(config, data)))
    items = torch.stack([batch[1], batch[2]])
    torch.testing.assert_close(motor(items), motor.weight[items])


def test_scale_script_measures_id_and_motor_cells(tmp_path):
    """benchmarks/scale.py on a small synthetic catalogue: one cell a variant, the item parameters of
    each (an ID table n x d; MOTOR's M x K x d token tables whatever n), the report."""
    import json
    import subprocess
    import sys

    from tests.conftest import REPO
    out = tmp_path / "scale"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "scale.py"), "--items", "1500,3000",
                           "--models", "BPR", "--variants", "id,motor", "--steps", "2", "--warmup", "1",
                           "--eval_users", "200", "--dim", "16", "--out", str(out), "--motor_quantizer=pq",
                           "--motor_fine_nbits=None", "--motor_num_subspaces=4", "--motor_nbits=4"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    cells = {p.stem: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}
    assert set(cells) == {"BPR-id-1500", "BPR-motor-1500", "BPR-id-3000", "BPR-motor-3000"}
    for n in (1500, 3000):
        assert cells[f"BPR-id-{n}"]["item_params"] == n * 64
        assert cells[f"BPR-motor-{n}"]["item_params"] == 4 * 16 * 64
        assert cells[f"BPR-id-{n}"]["n_users"] == 1000 and cells[f"BPR-id-{n}"]["eval_users"] == 200
        assert cells[f"BPR-id-{n}"]["n_train"] == 1000 * 100 - 2 * 200
    assert "| BPR | MOTOR | 3,000 | 1,000 | 4,096 |" in (out / "scale.md").read_text()


@pytest.mark.parametrize("normalize", ["l2", "standard", "none"])
def test_content_centroids_by_blocks_equal_the_direct_means(monkeypatch, normalize):
    """motor_content's inputs by blocks of rows (no (n M, D) or float64 (n, D) temporary): the centred
    features and each token's mean feature row, against the formulas computed directly."""
    import mmrec_motor.motor.content as content
    x = _features(n=203, d=6, seed=4).astype(np.float64) * 3 + 1
    if normalize == "l2":
        want = x / np.linalg.norm(x, axis=1, keepdims=True)
    elif normalize == "standard":
        want = (x - x.mean(0)) / x.std(0)
    else:
        want = x.copy()
    want -= want.mean(0)
    tokens = np.random.default_rng(1).integers(0, 5, (203, 3))
    monkeypatch.setattr(preprocess, "BLOCK_ROWS", 16)
    got = content.centred_features(x.astype(np.float32), normalize)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    centroids = content.token_centroids(tokens, got, 5)
    for s in range(3):
        for k in range(5):
            members = tokens[:, s] == k
            expected = got[members].mean(0) if members.any() else np.zeros(6)
            np.testing.assert_allclose(centroids[s * 5 + k], expected, rtol=1e-5, atol=1e-6)
    table = np.random.default_rng(2).standard_normal((15, 4))
    rows = np.random.default_rng(3).integers(0, 15, (203, 3))
    assert content.pooled_std(table, rows) == pytest.approx(table[rows].mean(axis=1).std(), rel=1e-12)


def test_motor_vbpr_step_computes_only_the_batch_rows(tmp_path):
    """VBPR reads its ID part through item_rows: with MOTOR, the batch's rows alone."""
    config, data, model = _trained_bpr(tmp_path, motor=True, model_name="VBPR")
    assert model.motor_items.n_computations == 0
    assert model.motor_items.n_row_computations == len(sampler_of(config, data))
    items = torch.tensor([0, 5, 5, 17])
    torch.testing.assert_close(model.item_rows("i_embedding", items), model.i_embedding[items])
