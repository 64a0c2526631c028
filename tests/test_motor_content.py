"""Content-anchored token embeddings (motor_content): centroids, the init scale, the proj table and
its gradients, parameter counts, and the hook's key check."""
import math

import numpy as np
import pytest
import torch

from mmrec_motor.motor.content import centred_features, content_init, token_centroids
from mmrec_motor.motor.tcn import TokenCrossNetwork


def test_token_centroids_by_hand():
    tokens = np.array([[0, 1], [0, 0], [1, 1]])                 # M = 2, K = 2
    feats = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]], np.float32)
    c = token_centroids(tokens, feats, 2)
    # rows: (s0,k0) items 0,1; (s0,k1) item 2; (s1,k0) item 1; (s1,k1) items 0,2
    np.testing.assert_allclose(c, [[2.0, 1.0], [5.0, 4.0], [3.0, 2.0], [3.0, 2.0]])
    # an unused codeword gets a zero row; a token out of range is refused
    assert np.all(token_centroids(tokens, feats, 3)[2] == 0)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        token_centroids(np.array([[2, 0]] * 3), feats, 2)


def test_centred_features_l2_then_centre():
    x = centred_features(np.array([[3.0, 4.0], [0.0, 2.0]]), "l2")
    np.testing.assert_allclose(x, [[0.3, -0.1], [-0.3, 0.1]], atol=1e-6)
    with pytest.raises(ValueError, match="unknown normalize"):
        centred_features(np.ones((2, 2)), "zscore")


def test_content_init_matches_target_std_and_keeps_content_order():
    rng = np.random.default_rng(0)
    feats = centred_features(rng.standard_normal((200, 12)), "l2")
    tokens = rng.integers(0, 8, (200, 3))
    c = token_centroids(tokens, feats, 8)
    rows = tokens + np.arange(3) * 8
    proj, table = content_init(c, 4, rows, target_std=0.05)
    assert proj.shape == (12, 4) and table.shape == (24, 4)
    np.testing.assert_allclose(table, c @ proj, rtol=1e-5, atol=1e-7)
    assert table[rows].mean(axis=1).std() == pytest.approx(0.05, rel=1e-4)
    # the projection's columns are orthogonal (principal directions, scaled)
    gram = proj.T @ proj
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-6)


def _net(mode, variant="mean", n=150, seed=0):
    rng = np.random.default_rng(seed)
    toks = [rng.integers(0, 16, (n, 4)), rng.integers(0, 8, (n, 2))]
    feats = [rng.standard_normal((n, 10)).astype(np.float32), rng.standard_normal((n, 6)).astype(np.float32)]
    content = [centred_features(f) for f in feats]
    return TokenCrossNetwork(toks, [16, 8], 8, variant=variant, n_layers=1, rank=2, cross_dim=4,
                             content=content if mode != "none" else None, content_mode=mode), toks, content


@pytest.mark.parametrize("variant", ["mean", "agnostic"])
def test_parameter_counts_with_content(variant):
    for mode, dims in (("none", None), ("init", None), ("proj", [10, 6])):
        net, _, _ = _net(mode, variant)
        expected = TokenCrossNetwork.expected_num_parameters([4, 2], [16, 8], 8, variant, 1, 2, 4,
                                                             content_dims=dims)
        assert sum(p.numel() for p in net.parameters()) == expected
    # proj adds exactly sum_m D_m d
    assert (TokenCrossNetwork.expected_num_parameters([4, 2], [16, 8], 8, "mean", 1, 2, 4, [10, 6])
            - TokenCrossNetwork.expected_num_parameters([4, 2], [16, 8], 8, "mean", 1, 2, 4)) == 16 * 8


def test_init_and_proj_start_from_the_same_content_table():
    init, toks, content = _net("init")
    proj, _, _ = _net("proj")
    with torch.no_grad():
        np.testing.assert_allclose(init().numpy(), proj().numpy(), rtol=1e-5, atol=1e-6)
        # per modality: the table is the centroids through the learned map, plus a zero offset
        emb = proj.embedding
        c0 = torch.from_numpy(token_centroids(toks[0], content[0], 16))
        torch.testing.assert_close(emb.table()[:64], c0 @ emb.content_proj[0])
        assert float(emb.tables[0].abs().sum()) == 0.0
    # the pooled item vectors have the ID table's per-coordinate std a / sqrt(3)
    a = math.sqrt(6.0 / (150 + 8))
    with torch.no_grad():
        stds = [float(init.embedding.pooled(init.embedding.table(), m).std()) for m in (0, 1)]
    assert stds == pytest.approx([a / math.sqrt(3)] * 2, rel=1e-3)


def test_proj_gradient_reaches_the_content_map_through_an_item_no_batch_holds():
    net, _, _ = _net("proj")
    out = net(torch.tensor([0, 1, 2]))
    out.sum().backward()
    emb = net.embedding
    assert emb.content_proj[0].grad is not None and float(emb.content_proj[0].grad.abs().sum()) > 0
    # item 149 shares the content map: its row changes after one step on items 0-2
    before = net().detach()[149].clone()
    with torch.no_grad():
        for p in net.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    assert not torch.allclose(net().detach()[149], before)


def test_content_mode_needs_features_and_a_known_name():
    rng = np.random.default_rng(0)
    toks = [rng.integers(0, 4, (20, 2))]
    with pytest.raises(ValueError, match="needs one feature matrix per modality"):
        TokenCrossNetwork(toks, [4], 8, variant="mean", content_mode="proj")
    with pytest.raises(ValueError, match="motor_content"):
        TokenCrossNetwork(toks, [4], 8, variant="mean", content=[np.ones((20, 3))], content_mode="ids")


@pytest.mark.parametrize("variant", ["mean", "agnostic", "specific"])
def test_token_dropout_is_training_only_and_a_full_mask_is_the_fast_path(variant):
    rng = np.random.default_rng(1)
    toks = [rng.integers(0, 16, (60, 4)), rng.integers(0, 8, (60, 2))]
    plain = TokenCrossNetwork(toks, [16, 8], 8, variant=variant, n_layers=1, rank=2, cross_dim=4)
    drop = TokenCrossNetwork(toks, [16, 8], 8, variant=variant, n_layers=1, rank=2, cross_dim=4,
                             token_dropout=0.5)
    drop.load_state_dict(plain.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(drop.eval()(), plain.eval()())            # off at evaluation
        emb, table = plain.embedding, plain.embedding.table()
        ones = torch.ones(60, 6)
        torch.testing.assert_close(emb.pooled(table, mask=ones), emb.pooled(table))
        torch.testing.assert_close(emb.gathered(table, mask=ones), emb.gathered(table))
        # a dropped token leaves the mean of the others
        mask = ones.clone()
        mask[0, :5] = 0
        torch.testing.assert_close(emb.pooled(table, mask=mask)[0], table[emb.token_ids[0, 5]])
    torch.manual_seed(0)
    out = drop.train()()
    assert out.shape == (60, 8) and not torch.allclose(out, plain.eval()())
    with pytest.raises(ValueError, match=r"motor_token_dropout\) must lie in \[0, 1\)"):
        TokenCrossNetwork(toks, [16, 8], 8, variant=variant, token_dropout=1.0)


def test_fm_crossing_is_the_mean_plus_projected_pairwise_products():
    rng = np.random.default_rng(2)
    toks = [rng.integers(0, 16, (40, 4)), rng.integers(0, 8, (40, 2))]
    net = TokenCrossNetwork(toks, [16, 8], 8, variant="fm")
    assert sum(p.numel() for p in net.parameters()) == TokenCrossNetwork.expected_num_parameters(
        [4, 2], [16, 8], 8, "fm", 2, 8) == 64 * 8 + 16 * 8 + 8 * 8 + 8
    with torch.no_grad():
        torch.testing.assert_close(net(), net.embedding().mean(dim=1))     # W = 0: the pooled mean
        net.pair_proj.weight.copy_(torch.from_numpy(rng.standard_normal((8, 8)).astype(np.float32)))
        T = net.embedding()                                                  # (n, L, d)
        pairs = sum(T[:, j] * T[:, k] for j in range(6) for k in range(6) if j != k) / 30
        torch.testing.assert_close(net(), T.mean(dim=1) + net.pair_proj(pairs), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(net(torch.tensor([3, 7])), net()[[3, 7]])


def test_fine_tokens_add_a_zero_initialised_cell_table():
    from mmrec_motor.motor.fine import kmeans_cells
    rng = np.random.default_rng(3)
    # two opposite groups of twenty (after l2 normalisation): two cells, one per group
    feats = np.repeat(np.array([[1.0] * 6, [-1.0] * 6]), 20, axis=0) + 0.01 * rng.standard_normal((40, 6))
    two, _ = kmeans_cells(feats, 1, seed=0)
    assert len(set(two[:20])) == len(set(two[20:])) == 1 and two[0] != two[20]
    cells, K = kmeans_cells(feats, 2, seed=0)
    assert K == 4 and cells.shape == (40,) and set(cells) <= {0, 1, 2, 3}
    np.testing.assert_array_equal(kmeans_cells(feats, 2, seed=0)[0], cells)        # deterministic
    with pytest.warns(UserWarning, match="using 32"):
        assert kmeans_cells(feats, 10, seed=0)[1] == 32                          # <= n cells
    toks = [rng.integers(0, 8, (40, 3))]
    plain = TokenCrossNetwork(toks, [8], 8, variant="mean")
    net = TokenCrossNetwork(toks, [8], 8, variant="mean", fine_tokens=[cells], fine_sizes=[K])
    net.embedding.load_state_dict(plain.embedding.state_dict())
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in plain.parameters()) + 4 * 8
    assert net.token_table_params() == 3 * 8 * 8 + 4 * 8
    with torch.no_grad():
        torch.testing.assert_close(net(), plain())                       # F = 0 at step 0
        net.fine_tables[0].copy_(torch.arange(32, dtype=torch.float32).view(4, 8))
        torch.testing.assert_close(net(), plain() + net.fine_tables[0][torch.from_numpy(cells)])
        torch.testing.assert_close(net(torch.tensor([5, 17])), net()[[5, 17]])
    with pytest.raises(ValueError, match=r"values must lie in \[0, 4\)"):
        TokenCrossNetwork(toks, [8], 8, variant="mean", fine_tokens=[cells + 1], fine_sizes=[K])



def test_fine_dropout_leaves_whole_cells_out_in_training_only():
    """motor_fine_dropout q: each (item, modality) cell is in or out as a whole, with no rescaling;
    every cell is in at evaluation, where the output equals the network without the key."""
    rng = np.random.default_rng(4)
    toks = [rng.integers(0, 8, (400, 3)), rng.integers(0, 4, (400, 2))]
    cells = [rng.integers(0, 16, 400), rng.integers(0, 8, 400)]
    plain = TokenCrossNetwork(toks, [8, 4], 8, variant="mean", fine_tokens=cells, fine_sizes=[16, 8])
    drop = TokenCrossNetwork(toks, [8, 4], 8, variant="mean", fine_tokens=cells, fine_sizes=[16, 8],
                             fine_dropout=0.25)
    with torch.no_grad():
        for table in plain.fine_tables:
            table.copy_(torch.from_numpy(rng.standard_normal(tuple(table.shape)).astype(np.float32)))
    drop.load_state_dict(plain.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(drop.eval()(), plain.eval()())           # off at evaluation
        tokens_only = plain._tokens_forward(None)
        parts = [table[torch.from_numpy(c)] for table, c in zip(plain.fine_tables, cells)]
        torch.manual_seed(0)
        out = drop.train()()
    # each row is tokens + a 0/1 choice of each modality's cell: solve for the choices
    kept = []
    for row in range(400):
        options = {(a, b): tokens_only[row] + a * parts[0][row] + b * parts[1][row]
                   for a in (0, 1) for b in (0, 1)}
        match = [key for key, value in options.items() if torch.allclose(out[row], value, atol=1e-5)]
        assert len(match) == 1, row
        kept.append(match[0])
    share_out = 1 - np.asarray(kept, dtype=float).mean()
    assert 0.18 < share_out < 0.32                                             # about q = 0.25
    with pytest.raises(ValueError, match=r"motor_fine_dropout\) must lie in \[0, 1\)"):
        TokenCrossNetwork(toks, [8, 4], 8, variant="mean", fine_tokens=cells, fine_sizes=[16, 8],
                          fine_dropout=1.0)

def test_auto_fine_bits_follow_the_catalogue_and_stop_growing():
    from mmrec_motor.motor.fine import auto_nbits
    assert [auto_nbits(n) for n in (300, 1425, 13952, 18357, 10**6)] == [6, 8, 12, 12, 14]
    assert [auto_nbits(n, 2) for n in (300, 1425, 13952, 18357, 10**6)] == [7, 9, 13, 13, 14]
    assert auto_nbits(3, 8) == 1                                   # fewer items than a cell: one bit
    with pytest.raises(ValueError, match=r"motor_fine_items_per_cell must be >= 1"):
        auto_nbits(100, 0)


def test_own_cells_move_popular_items_to_new_rows_by_hand():
    from mmrec_motor.motor.fine import own_cells
    cells = np.array([0, 0, 1, 1, 2, 3])
    counts = np.array([12, 1, 0, 30, 11, 10])
    out, K = own_cells(cells, 4, counts, 11)             # items 0, 3, 4 have >= 11: rows 4, 5, 6
    np.testing.assert_array_equal(out, [4, 0, 1, 5, 6, 3])
    assert K == 7 and cells[0] == 0                       # the input is not changed
    out, K = own_cells(cells, 4, counts, 100)             # nobody that popular: unchanged
    np.testing.assert_array_equal(out, cells)
    assert K == 4
    with pytest.raises(ValueError, match=r"training counts of shape \(5,\), expected one per item \(6,\)"):
        own_cells(cells, 4, counts[:5], 11)
    with pytest.raises(ValueError, match="motor_fine_own_min_interactions must be >= 1, got 0"):
        own_cells(cells, 4, counts, 0)


def test_fine_tokens_are_on_by_default_and_an_explicit_null_turns_them_off():
    from mmrec_motor.config import Config
    from mmrec_motor.motor.hook import fine_bits_setting
    assert fine_bits_setting(Config("BPR", "toy", {})) == "auto"
    assert fine_bits_setting({}) == "auto"                       # a config without the key: the default
    for off in (None, 0, "off"):
        assert fine_bits_setting(Config("BPR", "toy", {"motor_fine_nbits": off})) is None
        assert fine_bits_setting({"motor_fine_nbits": off}) is None
    assert fine_bits_setting({"motor_fine_nbits": 10}) == "10"
    with pytest.raises(ValueError, match="motor_fine_nbits must be auto, null"):
        fine_bits_setting({"motor_fine_nbits": "many"})
