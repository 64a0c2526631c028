"""MOTOR token cache: hits equal fresh runs, changes miss, corruption is detected and rebuilt."""
import os
import warnings

import lmdb
import numpy as np
import pytest

from mmrec_motor.motor.cache import MAGIC, TokenCache, cache_key
from mmrec_motor.motor.tokenizer import TokenizerParams, fit_tokenize

PARAMS = TokenizerParams(num_subspaces=4, nbits=3, seed=0)


@pytest.fixture(scope="module")
def feats():
    return np.random.default_rng(0).standard_normal((400, 32)).astype(np.float32)


def tokenize(path, x, params=PARAMS):
    with TokenCache(str(path)) as cache, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cache.tokenize(x, params)


def raw_entries(path):
    env = lmdb.open(str(path), subdir=True)
    with env.begin() as txn:
        items = [(k, v) for k, v in txn.cursor() if not k.startswith(b"__")]
    env.close()
    return items


def overwrite(path, key, value):
    env = lmdb.open(str(path), subdir=True)
    with env.begin(write=True) as txn:
        txn.put(key, value)
    env.close()


def test_hit_equals_fresh_tokens(tmp_path, feats):
    t1, s1 = tokenize(tmp_path, feats)
    t2, s2 = tokenize(tmp_path, feats)
    np.testing.assert_array_equal(t1, fit_tokenize(feats, PARAMS).tokens)
    np.testing.assert_array_equal(t1, t2)
    assert t2.dtype == np.int64
    assert s1["from_cache"] is False and s2["from_cache"] is True
    assert s2["collision_rate"] == s1["collision_rate"] and s2["utilisation"] == s1["utilisation"]
    assert s2["seconds"] == s1["seconds"] and "lookup_seconds" in s2
    assert len(raw_entries(tmp_path)) == 1


@pytest.mark.parametrize("change", [dict(seed=1), dict(nbits=4), dict(num_subspaces=2),
                                    dict(normalize="none"), dict(quantizer="rq"), dict(pca_dim=16),
                                    dict(max_train_items=200)])
def test_changed_parameter_misses(tmp_path, feats, change):
    tokenize(tmp_path, feats)
    p2 = TokenizerParams(**{**PARAMS.to_dict(), **change})
    assert cache_key(feats, p2) != cache_key(feats, PARAMS)
    _, s = tokenize(tmp_path, feats, p2)
    assert s["from_cache"] is False


def test_changed_array_misses(tmp_path, feats):
    tokenize(tmp_path, feats)
    x = feats.copy()
    x[17, 3] += 1e-3
    t, s = tokenize(tmp_path, x)
    assert s["from_cache"] is False
    np.testing.assert_array_equal(t, fit_tokenize(x, PARAMS).tokens)
    _, s = tokenize(tmp_path, feats[:350])  # same bytes prefix, other shape
    assert s["from_cache"] is False


@pytest.mark.parametrize("damage", ["flip_payload", "truncate", "garbage_header", "bad_magic"])
def test_corrupt_entry_is_rebuilt_with_warning(tmp_path, feats, damage):
    fresh, _ = tokenize(tmp_path, feats)
    [(key, value)] = raw_entries(tmp_path)
    value = bytearray(value)
    if damage == "flip_payload":
        value[-5] ^= 0xFF
    elif damage == "truncate":
        value = value[:len(value) - 40]
    elif damage == "garbage_header":
        value[len(MAGIC) + 6:len(MAGIC) + 12] = b"\x00\xff{{{{"
    else:
        value[:4] = b"XXXX"
    overwrite(tmp_path, key, bytes(value))
    with TokenCache(str(tmp_path)) as cache:
        with pytest.warns(UserWarning, match=r"is corrupt .*deleted, recomputing"):
            tokens, stats = cache.tokenize(feats, PARAMS)
    assert stats["from_cache"] is False
    np.testing.assert_array_equal(tokens, fresh)
    _, stats = tokenize(tmp_path, feats)  # the rebuilt entry is trusted again
    assert stats["from_cache"] is True


def test_unreadable_lmdb_file_is_moved_aside_and_rebuilt(tmp_path, feats):
    path = tmp_path / "cache"
    path.mkdir()
    (path / "data.mdb").write_bytes(b"this is not an lmdb file" * 200)
    with pytest.warns(UserWarning, match=r"cannot be opened .*rebuilding"):
        cache = TokenCache(str(path))
    with cache, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokens, stats = cache.tokenize(feats, PARAMS)
    assert stats["from_cache"] is False and tokens.shape == (400, 4)
    assert any(p.name.startswith("cache.corrupt") for p in tmp_path.iterdir())


def test_unwritable_location_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(RuntimeError, match=r"cannot be created .*motor_cache_dir"):
        TokenCache(str(blocker / "cache"))


def test_map_grows_when_full(tmp_path):
    x = np.random.default_rng(1).standard_normal((3000, 16)).astype(np.float32)
    params = TokenizerParams(num_subspaces=16, nbits=9, seed=0)
    with TokenCache(str(tmp_path), map_size=64 << 10) as cache, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t, _ = cache.tokenize(x, params)
        t2, s = cache.tokenize(x, params)
    assert s["from_cache"] and np.array_equal(t, t2) and t.max() >= 256
    assert os.path.isdir(tmp_path)
