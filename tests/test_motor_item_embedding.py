"""MotorItemEmbedding: nn.Embedding interface and the once-per-step cache of ``.weight``."""
import copy

import numpy as np
import pytest
import torch

from mmrec_motor.motor.item_embedding import MotorItemEmbedding
from mmrec_motor.motor.tcn import TokenCrossNetwork

N, D = 80, 8


def make(cache=True, variant="agnostic"):
    rng = np.random.default_rng(0)
    tk = [rng.integers(0, 8, (N, 3)), rng.integers(0, 4, (N, 2))]
    return MotorItemEmbedding(TokenCrossNetwork(tk, [8, 4], D, variant=variant, n_layers=2, rank=2, seed=3),
                              cache=cache)


def backbone_loss(emb, users):
    """A stand-in forward that reads .weight three times (like MGCN) and calls emb(idx) once."""
    w1 = emb.weight
    h = torch.tanh(w1 @ w1.t()) @ emb.weight
    items = emb(torch.tensor([1, 2, 3, 50]))
    return ((users @ (h + emb.weight).t()) ** 2).mean() + items.pow(2).sum()


def grads(module):
    return [p.grad.clone() for p in module.parameters()]


@pytest.fixture
def users():
    return torch.randn(6, D, generator=torch.Generator().manual_seed(0))


def test_embedding_interface():
    emb = make()
    assert emb.num_embeddings == N and emb.embedding_dim == D
    assert emb.weight.shape == (N, D) and emb.weight.requires_grad
    idx = torch.tensor([[0, 5], [79, 5]])
    assert emb(idx).shape == (2, 2, D)
    torch.testing.assert_close(emb(idx), emb.weight[idx])
    torch.testing.assert_close(torch.nn.functional.embedding(idx, emb.weight), emb(idx))


@pytest.mark.parametrize("variant", ["agnostic", "specific", "mean"])
def test_three_reads_one_computation_same_values_and_grads(users, variant):
    cached, plain = make(True, variant), make(False, variant)
    plain.load_state_dict(cached.state_dict())
    backbone_loss(cached, users).backward()
    assert cached.n_computations == 1 and cached.n_row_computations == 0     # emb(idx) read the cache
    backbone_loss(plain, users).backward()
    assert plain.n_computations == 3 and plain.n_row_computations == 1
    for a, b in zip(grads(cached), grads(plain)):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(cached.weight.detach(), plain.weight.detach())


@pytest.mark.parametrize("variant", ["agnostic", "specific", "mean", "fm"])
def test_rows_without_a_cached_table_compute_only_those_rows(variant):
    """emb(idx) before any .weight read of the step: the network runs on the distinct rows of idx
    only, with the values and gradients of weight[idx]."""
    rows_side, table_side = make(True, variant), make(True, variant)
    table_side.load_state_dict(rows_side.state_dict())
    idx = torch.tensor([[3, 7, 3], [79, 0, 7]])
    got = rows_side(idx)
    assert got.shape == (2, 3, D)
    assert rows_side.n_computations == 0 and rows_side.n_row_computations == 1
    want = table_side.weight[idx]
    torch.testing.assert_close(got, want)
    weights = torch.arange(got.numel(), dtype=got.dtype).reshape(got.shape) / got.numel()
    (got * weights).sum().backward()
    (want * weights).sum().backward()
    for a, b in zip(grads(rows_side), grads(table_side)):
        torch.testing.assert_close(a, b)


def test_step_changes_values_and_next_read_recomputes(users):
    emb = make()
    opt = torch.optim.Adam(emb.parameters(), lr=0.01)
    before = emb.weight.detach().clone()
    for step in range(3):
        opt.zero_grad()
        backbone_loss(emb, users).backward()
        opt.step()
        assert emb.n_computations == step + 1
        assert not torch.allclose(emb.weight.detach(), before)
        before = emb.weight.detach().clone()
    # each read after a step computed once, and the next step's forward reused that table
    assert emb.n_computations == 4


def test_two_backwards_without_a_step(users):
    emb, ref = make(), make(False)
    ref.load_state_dict(emb.state_dict())
    backbone_loss(emb, users).backward()
    backbone_loss(emb, users).backward()  # the first backward freed the graph: must recompute
    assert emb.n_computations == 2
    backbone_loss(ref, users).backward()
    backbone_loss(ref, users).backward()
    for a, b in zip(grads(emb), grads(ref)):
        torch.testing.assert_close(a, b)


def test_no_grad_reads_are_fresh_after_parameter_changes():
    emb = make()
    with torch.no_grad():
        w0 = emb.weight
        assert not w0.requires_grad and emb.weight is w0 and emb.n_computations == 1
        emb.tcn.embedding.tables[0].add_(1.0)
        w1 = emb.weight
    assert emb.n_computations == 2 and not torch.allclose(w0, w1)
    with torch.no_grad():
        torch.testing.assert_close(w1, emb.tcn())


def test_no_grad_read_reuses_a_valid_grad_mode_table():
    emb = make()
    w = emb.weight
    with torch.no_grad():
        v = emb.weight
    assert emb.n_computations == 1 and not v.requires_grad
    torch.testing.assert_close(v, w.detach())


def test_in_place_change_of_the_returned_table_is_not_reused():
    emb = make()
    with torch.no_grad():
        w = emb.weight
        w.mul_(0)
        assert emb.weight.abs().sum() > 0 and emb.n_computations == 2


def test_state_dict_roundtrip_and_copies():
    a = make()
    opt = torch.optim.SGD(a.parameters(), lr=1.0)
    backbone_loss(a, torch.ones(2, D)).backward()
    opt.step()
    w = a.weight  # a cached table with a graph must not break deepcopy
    b = make()
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.weight, w)
    c = copy.deepcopy(a)
    torch.testing.assert_close(c.weight, w)
    assert c.weight is not w


def test_to_device_and_dtype_invalidates():
    emb = make()
    w32 = emb.weight
    emb.to(torch.float64)
    w64 = emb.weight
    assert w32.dtype == torch.float32 and w64.dtype == torch.float64 and emb.n_computations == 2


@pytest.mark.parametrize("optimizer", [
    lambda p: torch.optim.Adam(p, lr=0.1, fused=True),
    lambda p: torch.optim.AdamW(p, lr=0.1, fused=True),
    lambda p: torch.optim.SGD(p, lr=0.1, fused=True),
    lambda p: torch.optim.Adam(p, lr=0.1, foreach=True),
])
def test_evaluation_after_any_optimizer_step_is_fresh(users, optimizer):
    """Fused optimizers update parameters without bumping their _version: the cache must still miss."""
    emb = make()
    opt = optimizer(list(emb.parameters()))
    with torch.no_grad():
        before = emb.weight.clone()
    backbone_loss(emb, users).backward()
    opt.step()
    with torch.no_grad():
        after = emb.weight
        torch.testing.assert_close(after, emb.tcn())
    assert not torch.allclose(before, after)


def test_eval_and_train_switches_drop_the_cache():
    emb = make()
    with torch.no_grad():
        emb.weight
        emb.eval()
        emb.weight
    assert emb.n_computations == 2
