"""MOTOR tokenizer: determinism, statistics, dimension/codebook adjustments, input validation."""
import warnings

import faiss
import numpy as np
import pytest

from mmrec_motor.motor.tokenizer import (TokenizerParams, TokenizerResult, fit_tokenize, pack_codes,
                                         unpack_codes)


@pytest.fixture(scope="module")
def feats():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((20, 64))
    return (centers[rng.integers(0, 20, 500)] + 0.3 * rng.standard_normal((500, 64))).astype(np.float32)


def quiet_fit(x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_tokenize(x, TokenizerParams(**kw))


def test_reconstruction_error_falls_as_M_grows(feats):
    errs = [quiet_fit(feats, num_subspaces=M, nbits=4, seed=0).stats["recon_mse"] for M in (1, 2, 4, 8, 16)]
    assert all(a > b for a, b in zip(errs, errs[1:])), errs


@pytest.mark.parametrize("quantizer", ["pq", "opq", "rq"])
def test_tokens_deterministic_for_a_seed(feats, quantizer):
    a = quiet_fit(feats, quantizer=quantizer, num_subspaces=4, nbits=4, seed=3)
    b = quiet_fit(feats, quantizer=quantizer, num_subspaces=4, nbits=4, seed=3)
    assert a.tokens.dtype == np.int64 and a.tokens.shape == (500, 4)
    assert a.tokens.min() >= 0 and a.tokens.max() < 16
    np.testing.assert_array_equal(a.tokens, b.tokens)


def test_seed_changes_pq_codebooks(feats):
    a = quiet_fit(feats, num_subspaces=4, nbits=5, seed=1, max_train_items=300)
    b = quiet_fit(feats, num_subspaces=4, nbits=5, seed=2, max_train_items=300)
    assert not np.array_equal(a.tokens, b.tokens)


def test_stats_content(feats):
    x = feats.copy()
    x[1] = x[0]  # an exact duplicate must collide
    r = quiet_fit(x, num_subspaces=4, nbits=4, seed=0)
    s = r.stats
    assert len(s["utilisation"]) == 4 and all(0 < u <= 1 for u in s["utilisation"])
    assert s["utilisation"] == [np.unique(r.tokens[:, j]).size / 16 for j in range(4)]
    assert 2 / 500 <= s["collision_rate"] <= 1
    assert (r.tokens[0] == r.tokens[1]).all()
    assert s["recon_mse"] > 0 and 0 < s["recon_rel"] < 1 and s["seconds"] >= 0
    assert s["from_cache"] is False and s["K"] == 16 and s["dim_quantized"] == 64


@pytest.mark.parametrize("nbits", [1, 3, 5, 8, 11, 16])
def test_code_unpacking_roundtrip(nbits):
    rng = np.random.default_rng(nbits)
    tokens = rng.integers(0, 2 ** nbits, (50, 5))
    code_size = (5 * nbits + 7) // 8
    np.testing.assert_array_equal(unpack_codes(pack_codes(tokens, nbits, code_size), 5, nbits), tokens)


def test_save_load_encodes_identically(feats, tmp_path):
    r = quiet_fit(feats, quantizer="opq", num_subspaces=4, nbits=4, normalize="standard", seed=0)
    r.save(str(tmp_path / "q.npz"))
    loaded = TokenizerResult.load(str(tmp_path / "q.npz"))
    np.testing.assert_array_equal(loaded.encode(feats), r.tokens)
    np.testing.assert_array_equal(r.encode(feats[:7]), r.tokens[:7])


def test_dim_not_divisible_applies_pca_with_warning(feats):
    with pytest.warns(UserWarning, match=r"not divisible by num_subspaces M=6.*PCA to 60"):
        r = fit_tokenize(feats, TokenizerParams(num_subspaces=6, nbits=3))
    assert r.stats["dim_quantized"] == 60 and r.tokens.shape == (500, 6)


def test_pca_dim_respected(feats):
    r = quiet_fit(feats, num_subspaces=4, nbits=3, pca_dim=16)
    assert r.stats["dim_quantized"] == 16


def test_opq_default_pca_on_wide_features():
    x = np.random.default_rng(1).standard_normal((300, 320)).astype(np.float32)
    r = quiet_fit(x, quantizer="opq", num_subspaces=4, nbits=2)
    assert r.stats["dim_quantized"] == 256
    assert any("PCA 320 -> 256" in w for w in r.stats["warnings"])


def test_rq_default_pca_only_above_512_dims():
    rng = np.random.default_rng(2)
    wide = quiet_fit(rng.standard_normal((300, 520)).astype(np.float32), quantizer="rq", num_subspaces=2, nbits=2)
    assert wide.stats["dim_quantized"] == 256
    assert any("rq: PCA 520 -> 256" in w for w in wide.stats["warnings"])
    narrow = quiet_fit(rng.standard_normal((300, 384)).astype(np.float32), quantizer="rq", num_subspaces=2, nbits=2)
    assert narrow.stats["dim_quantized"] == 300 and any("PCA to 300 dims" in w for w in narrow.stats["warnings"])
    enough = quiet_fit(rng.standard_normal((400, 384)).astype(np.float32), quantizer="rq", num_subspaces=2, nbits=2)
    assert enough.stats["dim_quantized"] == 384 and enough.stats["pca_explained"] == 1.0


def test_too_few_items_reduces_nbits(feats):
    with pytest.warns(UserWarning) as caught:
        r = fit_tokenize(feats[:100], TokenizerParams(num_subspaces=4, nbits=8))
    messages = [str(w.message) for w in caught]
    assert any("nbits reduced from 8 to 6 (K 256 -> 64)" in m for m in messages), messages
    assert any("only 100 training items for K=64" in m for m in messages), messages
    assert r.params.nbits == 6 and r.stats["K"] == 64 and r.tokens.max() < 64


def test_few_items_per_codeword_warns(feats):
    with pytest.warns(UserWarning, match=r"faiss advises"):
        fit_tokenize(feats[:200], TokenizerParams(num_subspaces=2, nbits=4))


@pytest.mark.parametrize("bad, match", [
    (np.zeros(10, np.float32), r"expected a 2-D array .* got shape \(10,\)"),
    (np.zeros((2, 3, 4), np.float32), r"expected a 2-D array .* got shape \(2, 3, 4\)"),
])
def test_bad_shape(bad, match):
    with pytest.raises(ValueError, match=match):
        fit_tokenize(bad, TokenizerParams())


def test_rows_must_match_n_items(feats):
    with pytest.raises(ValueError, match=r"has 500 rows \(shape \(500, 64\)\), expected n_items = 400"):
        fit_tokenize(feats, TokenizerParams(num_subspaces=4, nbits=3), n_items=400)


def test_nan_features_report_row_count(feats):
    x = feats.copy()
    x[3, 0] = np.nan
    x[10, 5] = np.inf
    with pytest.raises(ValueError, match=r"2 of 500 rows contain NaN or inf \(first: \[3, 10\]\)"):
        fit_tokenize(x, TokenizerParams(num_subspaces=4, nbits=3))


@pytest.mark.parametrize("kw, match", [
    ({"nbits": 0}, r"nbits=0 is out of range: expected 1 <= nbits <= 16"),
    ({"nbits": 17}, r"nbits=17 is out of range"),
    ({"quantizer": "lsh"}, r"unknown quantizer 'lsh' .*expected one of pq, opq, rq"),
    ({"normalize": "max"}, r"unknown normalize 'max'"),
    ({"num_subspaces": 0}, r"num_subspaces \(M\) must be >= 1, got 0"),
])
def test_bad_params(kw, match):
    with pytest.raises(ValueError, match=match):
        TokenizerParams(**kw)


def test_M_larger_than_D():
    x = np.random.default_rng(0).standard_normal((100, 6)).astype(np.float32)
    with pytest.raises(ValueError, match=r"M=8 is larger than the feature dimension D=6"):
        fit_tokenize(x, TokenizerParams(num_subspaces=8, nbits=2))


def test_randomized_pca_matches_exact_pca():
    from mmrec_motor.motor.tokenizer import PCA
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((400, 64)) * np.linspace(3, 0.1, 64)) @ np.linalg.qr(rng.standard_normal((64, 64)))[0]
    x = x.astype(np.float32) + 1.0
    p = PCA.fit(x, 16, seed=0)
    xc = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(xc.astype(np.float64), full_matrices=False)
    assert p.explained == pytest.approx((s[:16] ** 2).sum() / (s ** 2).sum(), abs=1e-4)
    # same subspace: projections of the exact directions onto ours keep their length
    np.testing.assert_allclose(np.linalg.norm(vt[:16] @ p.components.T, axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(p(x), xc @ p.components.T, atol=1e-4)
    assert np.array_equal(PCA.fit(x, 16, seed=0).components, p.components)


def test_pca_wider_than_the_item_count_is_reduced(feats):
    with pytest.warns(UserWarning) as caught:
        r = fit_tokenize(feats[:40], TokenizerParams(num_subspaces=4, nbits=2, pca_dim=48))
    assert r.stats["dim_quantized"] == 40 and r.tokens.shape == (40, 4)
    assert any("PCA to 48 dims needs at least as many training items; there are 40" in str(w.message)
               for w in caught)


def test_rq_stages_after_an_exact_reconstruction_give_token_0():
    """70 items, 64 first-stage codewords: nearly every item is its own first-stage centroid, so
    the later stages could only quantize rounding noise. Those tokens are 0 (the same on every CPU);
    an item that shared its first-stage cell keeps real second-stage tokens."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((70, 16)).astype(np.float32)
    result = quiet_fit(x, quantizer="rq", num_subspaces=4, nbits=6, seed=0)
    assert result.stats["dim_quantized"] == 16 and result.K == 64
    tokens = result.tokens
    z = result.preprocess(x)
    rq = faiss.downcast_index(result.index.index).rq
    codebooks = faiss.vector_to_array(rq.codebooks).reshape(4, 64, 16)
    after_first = ((z - codebooks[0, tokens[:, 0]]) ** 2).sum(axis=1) / (z ** 2).sum(axis=1)
    alone = after_first <= 1e-8
    assert alone.sum() > 40                                   # most items are their own cell
    assert (tokens[alone, 1:] == 0).all()
    shared = ~alone
    assert shared.any() and (tokens[shared, 1] != 0).any()    # real residuals keep their tokens
    assert result.stats["recon_rel"] < 1e-6
    np.testing.assert_array_equal(result.encode(x)[alone], tokens[alone])


def test_pq_tokens_are_not_settled(feats):
    """Only RQ has stages that refine a residual: PQ's sub-spaces are left as faiss encodes them."""
    result = quiet_fit(feats, quantizer="pq", num_subspaces=4, nbits=4, seed=0)
    raw = unpack_codes(result.index.sa_encode(result.preprocess(feats)), 4, 4)
    np.testing.assert_array_equal(result.tokens, raw)
