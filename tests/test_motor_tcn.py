"""Token tables + Token Cross Network: parameter-count formulas, shapes, init scale, state_dict, and
the fast paths (sparse pooled mean, compressed gather, blocked cross layers) against plain autograd."""
import math

import numpy as np
import pytest
import torch

from mmrec_motor.motor.tcn import TokenCrossNetwork

N, D = 120, 16
MS, KS = [4, 3], [16, 8]


def tokens(seed=0, ms=MS, ks=KS, n=N):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, k, (n, m)) for m, k in zip(ms, ks)]


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("cross_dim", [None, 0, 4, D, 2 * D])
@pytest.mark.parametrize("layers, rank", [(0, 1), (1, 4), (3, 2)])
@pytest.mark.parametrize("ms, ks", [([4, 3], [16, 8]), ([5], [32])])
def test_parameter_counts_follow_the_formula(ms, ks, layers, rank, cross_dim):
    d, L, P = D, sum(ms), len(ms)
    c = d if not cross_dim or cross_dim >= d else cross_dim     # None / 0 / >= d: no projection
    p = d * c if c < d else 0
    T = sum(m * k * d for m, k in zip(ms, ks))
    expected = {
        "mean": T,
        "agnostic": T + p + layers * (2 * L * c * rank + L * c) + L * c * d + d,
        "specific": (T + p + sum(layers * (2 * m * c * rank + m * c) + m * c * d + d for m in ms)
                     + P * d * d + d),
    }
    for variant, n_params in expected.items():
        net = TokenCrossNetwork(tokens(ms=ms, ks=ks), ks, d, variant=variant, n_layers=layers, rank=rank,
                                cross_dim=cross_dim)
        assert count(net) == n_params, variant
        assert net.cross_dim == c
        assert (net.token_proj is not None) == (variant != "mean" and c < d)
        assert TokenCrossNetwork.expected_num_parameters(ms, ks, d, variant, layers, rank, cross_dim) == n_params
        assert net.token_table_params() == T and net.cross_params() == n_params - T


def test_uncompressed_counts_are_the_old_formula():
    """cross_dim = d is the design before motor_tcn_dim existed (no projection, F = L d)."""
    d, L, T = D, sum(MS), sum(m * k * D for m, k in zip(MS, KS))
    net = TokenCrossNetwork(tokens(), KS, d, variant="agnostic", n_layers=2, rank=3, cross_dim=None)
    assert count(net) == T + 2 * (2 * L * d * 3 + L * d) + L * d * d + d


def test_baby_default_parameter_count():
    """Defaults on Baby: 2 modalities x 8 sub-spaces x K = 256, d = 64, 2 layers, rank 8, c = 16."""
    n = TokenCrossNetwork.expected_num_parameters([8, 8], [256, 256], 64, "agnostic", 2, 8, 16)
    assert n == 262_144 + 64 * 16 + 2 * (2 * 256 * 8 + 256) + 256 * 64 + 64 == 288_320
    assert TokenCrossNetwork.expected_num_parameters([8, 8], [256, 256], 64, "agnostic", 2, 8) == 362_560


def test_bad_cross_dim():
    with pytest.raises(ValueError, match=r"cross_dim \(motor_tcn_dim\) must be >= 0"):
        TokenCrossNetwork(tokens(), KS, D, cross_dim=-1)


def test_parameter_count_does_not_depend_on_n_items():
    a = TokenCrossNetwork(tokens(n=50), KS, D)
    b = TokenCrossNetwork(tokens(n=5000), KS, D)
    assert count(a) == count(b)


@pytest.mark.parametrize("variant", ["agnostic", "specific", "mean"])
def test_shapes_rows_and_init_scale(variant):
    torch.manual_seed(0)
    net = TokenCrossNetwork(tokens(), KS, D, variant=variant, n_layers=2, rank=3, seed=1)
    out = net()
    assert out.shape == (N, D)
    idx = torch.tensor([5, 0, 119, 5])
    torch.testing.assert_close(net(idx), out[idx])
    # the pooled mean starts at the ID table's scale: std of U(-a, a) = a / sqrt(3), a = sqrt(6/(N+D))
    id_std = math.sqrt(6 / (N + D)) / math.sqrt(3)
    assert 0.7 * id_std < out.std().item() < 1.3 * id_std


def test_token_ids_buffer_has_offsets_and_moves_with_module():
    tk = tokens()
    net = TokenCrossNetwork(tk, KS, D)
    ids = net.embedding.token_ids
    assert ids.shape == (N, sum(MS)) and "embedding.token_ids" in net.state_dict()
    np.testing.assert_array_equal(ids[:, :4].numpy(), tk[0] + np.arange(4) * 16)
    np.testing.assert_array_equal(ids[:, 4:].numpy(), tk[1] + np.arange(3) * 8 + 4 * 16)
    table = torch.cat(list(net.embedding.tables))
    torch.testing.assert_close(net.embedding(), table[ids])
    torch.testing.assert_close(net.embedding.modality(1), net.embedding.tables[1][torch.as_tensor(tk[1]) + torch.arange(3) * 8])
    assert net.embedding.tables[0].shape == (4 * 16, D) and net.embedding.tables[1].shape == (3 * 8, D)
    net64 = net.to(torch.float64)
    assert net64().dtype == torch.float64 and net64.embedding.token_ids.dtype == torch.long


def test_state_dict_roundtrip_restores_tokens_and_weights():
    a = TokenCrossNetwork(tokens(0), KS, D, variant="specific", seed=1)
    with torch.no_grad():
        for p in a.parameters():
            p.add_(0.01 * torch.randn_like(p))
    b = TokenCrossNetwork(tokens(1), KS, D, variant="specific", seed=2)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(), b())


def test_seeded_init_does_not_touch_global_rng():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    TokenCrossNetwork(tokens(), KS, D)
    torch.testing.assert_close(torch.rand(3), expected)


@pytest.mark.parametrize("kw, match", [
    ({"variant": "transformer"}, r"unknown TCN variant 'transformer' \(motor_tcn\): expected one of agnostic, specific, mean"),
    ({"rank": 0}, r"rank \(motor_tcn_rank\) must be >= 1"),
    ({"n_layers": -1}, r"n_layers \(motor_tcn_layers\) must be >= 0"),
])
def test_bad_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        TokenCrossNetwork(tokens(), KS, D, **kw)


def test_tokens_out_of_range():
    tk = tokens()
    tk[1][0, 0] = 8
    with pytest.raises(ValueError, match=r"modality 1: values must lie in \[0, 8\)"):
        TokenCrossNetwork(tk, KS, D)


# ---- fast paths against the plain formulas ------------------------------------------------------
def reference_forward(net, idx=None):
    """The module docstring's formulas with plain autograd: gather (n, L, d), mean, LowRankCross, Linear."""
    emb = net.embedding
    E = emb.table()
    Ec = E if net.token_proj is None else E @ net.token_proj
    ids = emb.token_ids if idx is None else emb.token_ids[idx]

    def tower(t, tok):
        x0 = Ec[tok].reshape(tok.shape[0], -1)
        x = x0
        for layer in t.layers:
            x = layer(x0, x)
        return t.proj_scale * t.proj(x) + E[tok].mean(dim=1)

    if net.variant == "mean":
        return E[ids].mean(dim=1)
    if net.variant == "agnostic":
        return tower(net.tower, ids)
    h = torch.stack([tower(t, ids[:, emb.slices[m]]) for m, t in enumerate(net.towers)], dim=1)
    return net.fuse_scale * net.fuse(h.reshape(h.shape[0], -1)) + h.mean(dim=1)


@pytest.mark.parametrize("variant", ["agnostic", "specific", "mean"])
@pytest.mark.parametrize("cross_dim", [None, 5])
@pytest.mark.parametrize("layers, block_rows", [(0, None), (1, None), (3, None), (2, 7)])
def test_fast_paths_match_the_plain_formulas(variant, cross_dim, layers, block_rows):
    net = TokenCrossNetwork(tokens(), KS, D, variant=variant, n_layers=layers, rank=2, seed=4,
                            cross_dim=cross_dim).double()
    towers = [net.tower] if variant == "agnostic" else list(getattr(net, "towers", []))
    for t in towers:
        t.block_rows = block_rows                     # 7 rows: many blocks and a ragged last one
    with torch.no_grad():                             # leave the zero init so every path matters
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()),
                                     dtype=p.dtype))
    params = list(net.parameters())
    for idx in (None, torch.tensor([3, 0, 3, 119])):
        out, ref = net(idx), reference_forward(net, idx)
        torch.testing.assert_close(out, ref)
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
        fast = torch.autograd.grad((out * weight).sum(), params)
        slow = torch.autograd.grad((ref * weight).sum(), params)
        for a, b in zip(fast, slow):
            torch.testing.assert_close(a, b)


def test_pooled_mean_is_the_sparse_product_of_the_gather_mean():
    net = TokenCrossNetwork(tokens(), KS, D, variant="specific")
    emb, E = net.embedding, net.embedding.table()
    torch.testing.assert_close(emb.pooled(E), emb().mean(dim=1))
    for m in range(len(MS)):
        torch.testing.assert_close(emb.pooled(E, m), emb.modality(m).mean(dim=1))
        torch.testing.assert_close(emb.gathered(E, m), emb.modality(m).reshape(N, -1))
    # the sparse operators follow token_ids (load_state_dict copies into the buffer) and the device
    other = TokenCrossNetwork(tokens(seed=5), KS, D, variant="specific")
    emb.pooled(E)
    net.load_state_dict(other.state_dict())
    torch.testing.assert_close(emb.pooled(emb.table()), other.embedding().mean(dim=1))
    assert not any("sparse" in k or "csr" in k.lower() for k in net.state_dict())


def test_init_output_is_exactly_the_pooled_mean():
    for variant in ("agnostic", "specific"):
        net = TokenCrossNetwork(tokens(), KS, 32, variant=variant, cross_dim=8)
        assert net.cross_dim == 8 and net.token_proj.shape == (32, 8)
        emb = net.embedding
        pooled = (emb().mean(dim=1) if variant == "agnostic"   # specific: the mean of per-modality means
                  else torch.stack([emb.modality(m).mean(dim=1) for m in range(len(MS))]).mean(dim=0))
        torch.testing.assert_close(net(), pooled, rtol=0, atol=1e-6)
        bound = math.sqrt(6 / (32 + 8))
        assert net.token_proj.abs().max() <= bound and net.token_proj.std() > 0.4 * bound


def test_deepcopy_and_pickle_drop_the_sparse_cache():
    import copy
    import pickle
    net = TokenCrossNetwork(tokens(), KS, D, variant="agnostic", cross_dim=4)
    out = net()
    assert net.embedding._sparse
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        torch.testing.assert_close(clone(), out)
