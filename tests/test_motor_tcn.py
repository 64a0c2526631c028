"""Token tables + Token Cross Network: parameter-count formulas, shapes, init scale, state_dict."""
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


@pytest.mark.parametrize("layers, rank", [(0, 1), (1, 4), (3, 2)])
@pytest.mark.parametrize("ms, ks", [([4, 3], [16, 8]), ([5], [32])])
def test_parameter_counts_follow_the_formula(ms, ks, layers, rank):
    d, L, P = D, sum(ms), len(ms)
    T = sum(m * k * d for m, k in zip(ms, ks))
    expected = {
        "mean": T,
        "agnostic": T + layers * (2 * L * d * rank + L * d) + L * d * d + d,
        "specific": T + sum(layers * (2 * m * d * rank + m * d) + m * d * d + d for m in ms) + P * d * d + d,
    }
    for variant, n_params in expected.items():
        net = TokenCrossNetwork(tokens(ms=ms, ks=ks), ks, d, variant=variant, n_layers=layers, rank=rank)
        assert count(net) == n_params, variant
        assert TokenCrossNetwork.expected_num_parameters(ms, ks, d, variant, layers, rank) == n_params
        assert net.token_table_params() == T and net.cross_params() == n_params - T


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
