"""Token embeddings and the Token Cross Network (TCN).

Notation: n = n_items, P modalities, modality m has M_m tokens per item drawn from K_m codewords each,
L = sum_m M_m tokens per item, d = embedding dim, r = ``rank``, n_layers = ``n_layers``.

Token tables (:class:`TokenEmbedding`): modality m owns a table E_m of shape (M_m * K_m, d); sub-space s
uses rows s*K_m .. s*K_m + K_m - 1. The buffer ``token_ids`` (n, L) holds, for every item, its tokens
with the sub-space offset s*K_m already added (columns of modality m are ``slices[m]``). An item's
token embeddings form T_i in R^{L x d} (the rows of all modalities, concatenated in modality order).

Cross layer (low-rank DCN-v2, :class:`LowRankCross`), on a flattened x in R^{F}:

    x_{l+1} = x_0 * (U_l (V_l^T x_l) + b_l) + x_l,        U_l, V_l in R^{F x r}, b_l in R^F

Variants (``TokenCrossNetwork(variant=...)``), output e_i in R^d:

* ``agnostic``: x_0 = vec(T_i) in R^{L d}; n_layers cross layers;
  e_i = s (W x_L + c) + mean_j T_i[j],  W in R^{d x L d}, c in R^d, s = 1 / sqrt(L d).
* ``specific``: per modality m, x_0^m = vec(T_i^m) in R^{M_m d}; n_layers cross layers each;
  h_m = s_m (W_m x_L^m + c_m) + mean_j T_i^m[j], s_m = 1 / sqrt(M_m d); then
  e_i = s_F (F [h_1; ...; h_P] + f) + mean_m h_m,  F in R^{d x P d}, f in R^d, s_F = 1 / sqrt(P d).
* ``mean``: e_i = mean_j T_i[j] (no crossing: the ablation baseline).

Parameter counts (asserted by the tests), with T = sum_m M_m K_m d the token tables:

* mean:     T
* agnostic: T + n_layers (2 L d r + L d) + L d^2 + d
* specific: T + sum_m [n_layers (2 M_m d r + M_m d) + M_m d^2 + d] + P d^2 + d

None of them depends on n_items.

Initialisation (chosen so the backbone sees an ID table's scale at step 0, because the backbones'
reg weights were tuned for xavier-uniform ID tables): token tables ~ U(-a sqrt(L), a sqrt(L)) with
a = sqrt(6 / (n_items + d)), the xavier-uniform bound of the n_items x d ID table being replaced. The
mean of an item's L token rows then has the per-coordinate std of that ID table (a / sqrt(3)) when its
tokens differ. U_l, V_l: xavier-uniform; b_l = 0. The output projections W (and W_m, F) start at zero,
so at initialisation e_i is exactly the pooled token mean; the crossing is learned from there
(gradients reach W at once and U, V from the second step on). The fixed factors s = 1/sqrt(fan-in)
keep the projections' learning speed near an ID row's: Adam moves every weight by about lr per step
whatever its gradient's scale, so an unscaled (d x L d) projection would move an item vector by about
lr * ||x_L||_1 per step, some 60x what an ID row moves at L d = 1024 (seen as a clear accuracy loss on
the toy data); with s it moves about lr * sqrt(L d) * mean|x_L|, the same order as an ID row. All init draws use a private
``torch.Generator`` (``seed``) so building the network does not disturb the global RNG.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

VARIANTS = ("agnostic", "specific", "mean")


def id_table_init_bound(n_items: int, dim: int) -> float:
    """xavier-uniform bound of an (n_items x dim) table: sqrt(6 / (n_items + dim))."""
    return math.sqrt(6.0 / (n_items + dim))


class TokenEmbedding(nn.Module):
    """Per-modality token tables and the item -> token-id buffer.

    Args:
        tokens: one int array per modality, shape (n, M_m), values in [0, K_m).
        codebook_sizes: K_m per modality.
        dim: d.
        init_bound: tables are drawn from U(-init_bound, init_bound).
        generator: torch.Generator for the init.

    Buffers: ``token_ids`` (n, L) int64: row indices into the concatenation of all tables, i.e.
    token t of sub-space s of modality m is stored as R_m + s*K_m + t, R_m = sum_{m'<m} M_m' K_m'.
    Parameters: ``tables[m]`` of shape (M_m * K_m, d).
    forward(idx=None) -> (n or len(idx), L, d) (one gather from the concatenated tables).
    """

    def __init__(self, tokens: Sequence, codebook_sizes: Sequence[int], dim: int, init_bound: float,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        if len(tokens) == 0 or len(tokens) != len(codebook_sizes):
            raise ValueError(f"need one token matrix per modality and one codebook size each, got "
                             f"{len(tokens)} token matrices and {len(codebook_sizes)} sizes")
        cols, self.slices, self.num_subspaces = [], [], []
        n, start, row0 = None, 0, 0
        self.codebook_sizes = [int(k) for k in codebook_sizes]
        tables = []
        for m, (tok, K) in enumerate(zip(tokens, self.codebook_sizes)):
            t = torch.as_tensor(np.asarray(tok), dtype=torch.long)
            if t.dim() != 2:
                raise ValueError(f"tokens of modality {m}: expected (n_items, M), got shape {tuple(t.shape)}")
            if n is None:
                n = t.shape[0]
            elif t.shape[0] != n:
                raise ValueError(f"tokens of modality {m}: {t.shape[0]} rows, expected {n} like modality 0")
            if t.numel() and (t.min() < 0 or t.max() >= K):
                raise ValueError(f"tokens of modality {m}: values must lie in [0, {K}), got "
                                 f"[{int(t.min())}, {int(t.max())}]")
            M = t.shape[1]
            cols.append(t + torch.arange(M, dtype=torch.long) * K + row0)
            row0 += M * K
            self.slices.append(slice(start, start + M))
            self.num_subspaces.append(M)
            start += M
            w = torch.empty(M * K, dim).uniform_(-init_bound, init_bound, generator=generator)
            tables.append(nn.Parameter(w))
        self.tables = nn.ParameterList(tables)
        self.register_buffer("token_ids", torch.cat(cols, dim=1).contiguous())
        self.dim = dim
        self.num_items = n
        self.num_tokens = start

    def modality(self, m: int, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Token embeddings of modality m: (n or len(idx), M_m, d)."""
        ids = self.token_ids[:, self.slices[m]]
        if idx is not None:
            ids = ids[idx]
        return self.table()[ids]

    def table(self) -> torch.Tensor:
        """All token tables stacked: (sum_m M_m K_m, d)."""
        return self.tables[0] if len(self.tables) == 1 else torch.cat(list(self.tables), dim=0)

    def forward(self, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        ids = self.token_ids if idx is None else self.token_ids[idx]
        return self.table()[ids]


class LowRankCross(nn.Module):
    """One low-rank DCN-v2 cross layer on R^F: x_{l+1} = x0 * (U (V^T x) + b) + x.

    Parameters: U (F, r), V (F, r), b (F,): 2 F r + F. forward(x0, x): (n, F), (n, F) -> (n, F).
    """

    def __init__(self, features: int, rank: int, generator: Optional[torch.Generator] = None):
        super().__init__()
        bu = math.sqrt(6.0 / (features + rank))
        self.U = nn.Parameter(torch.empty(features, rank).uniform_(-bu, bu, generator=generator))
        self.V = nn.Parameter(torch.empty(features, rank).uniform_(-bu, bu, generator=generator))
        self.b = nn.Parameter(torch.zeros(features))

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # fused: addmm gives U (V^T x) + b in one pass, addcmul gives x + x0 * that in one more
        return torch.addcmul(x, x0, torch.addmm(self.b, x @ self.V, self.U.t()))


class CrossTower(nn.Module):
    """n_layers cross layers over vec(T) in R^{L d}, then s (W x_L + c) + mean_j T[j] in R^d, s = 1/sqrt(L d).

    Parameters: n_layers (2 L d r + L d) + L d^2 + d. forward(T: (n, L, d)) -> (n, d).
    """

    def __init__(self, num_tokens: int, dim: int, n_layers: int, rank: int,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        F = num_tokens * dim
        self.layers = nn.ModuleList([LowRankCross(F, rank, generator) for _ in range(n_layers)])
        self.proj = nn.Linear(F, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.proj_scale = 1.0 / math.sqrt(F)

    def forward(self, T: torch.Tensor) -> torch.Tensor:
        x0 = T.reshape(T.shape[0], -1)
        x = x0
        for layer in self.layers:
            x = layer(x0, x)
        return self.proj_scale * self.proj(x) + T.mean(dim=1)


class TokenCrossNetwork(nn.Module):
    """Item representations from tokens: (token tables + TCN) -> (n_items, d). See module docstring.

    Args:
        tokens: one int array (n_items, M_m) per modality, values in [0, K_m).
        codebook_sizes: K_m per modality.
        dim: d (the backbone's embedding size).
        variant: ``'agnostic'`` | ``'specific'`` | ``'mean'``.
        n_layers: cross layers (per tower); >= 0.
        rank: r >= 1.
        init_bound: ID-table bound a; None -> sqrt(6 / (n_items + d)). Token tables use a * sqrt(L).
        seed: seed of the private init generator.
        modality_names: labels for reports.

    forward(idx=None) -> (n_items, d) or (len(idx), d).
    """

    def __init__(self, tokens: Sequence, codebook_sizes: Sequence[int], dim: int,
                 variant: str = "agnostic", n_layers: int = 2, rank: int = 8,
                 init_bound: Optional[float] = None, seed: int = 0,
                 modality_names: Optional[Sequence[str]] = None):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown TCN variant {variant!r} (motor_tcn): expected one of "
                             f"{', '.join(VARIANTS)}")
        if int(n_layers) < 0:
            raise ValueError(f"n_layers (motor_tcn_layers) must be >= 0, got {n_layers}")
        if int(rank) < 1:
            raise ValueError(f"rank (motor_tcn_rank) must be >= 1, got {rank}")
        if int(dim) < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        g = torch.Generator().manual_seed(int(seed))
        n_items = int(np.asarray(tokens[0]).shape[0])
        L = sum(int(np.asarray(t).shape[1]) for t in tokens)
        a = id_table_init_bound(n_items, dim) if init_bound is None else float(init_bound)
        self.variant, self.n_layers, self.rank, self.dim = variant, int(n_layers), int(rank), int(dim)
        self.modality_names = list(modality_names) if modality_names else [str(i) for i in range(len(tokens))]
        # nn.Linear's constructor draws from the global RNG (then we zero it): keep that state intact
        with torch.random.fork_rng(devices=[]):
            self.embedding = TokenEmbedding(tokens, codebook_sizes, dim, a * math.sqrt(L), g)
            if variant == "agnostic":
                self.tower = CrossTower(L, dim, self.n_layers, self.rank, g)
            elif variant == "specific":
                self.towers = nn.ModuleList([CrossTower(M, dim, self.n_layers, self.rank, g)
                                             for M in self.embedding.num_subspaces])
                self.fuse = nn.Linear(len(tokens) * dim, dim)
                nn.init.zeros_(self.fuse.weight)
                nn.init.zeros_(self.fuse.bias)
                self.fuse_scale = 1.0 / math.sqrt(len(tokens) * dim)

    @property
    def num_items(self) -> int:
        return self.embedding.num_items

    @staticmethod
    def expected_num_parameters(num_subspaces: Sequence[int], codebook_sizes: Sequence[int], dim: int,
                                variant: str, n_layers: int, rank: int) -> int:
        """The parameter-count formula of the module docstring."""
        d, r = dim, rank
        T = sum(M * K * d for M, K in zip(num_subspaces, codebook_sizes))
        L, P = sum(num_subspaces), len(num_subspaces)
        if variant == "mean":
            return T
        if variant == "agnostic":
            return T + n_layers * (2 * L * d * r + L * d) + L * d * d + d
        if variant == "specific":
            return (T + sum(n_layers * (2 * M * d * r + M * d) + M * d * d + d for M in num_subspaces)
                    + P * d * d + d)
        raise ValueError(f"unknown TCN variant {variant!r}")

    def token_table_params(self) -> int:
        return sum(p.numel() for p in self.embedding.parameters())

    def cross_params(self) -> int:
        return sum(p.numel() for p in self.parameters()) - self.token_table_params()

    def forward(self, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.variant == "mean":
            return self.embedding(idx).mean(dim=1)
        if self.variant == "agnostic":
            return self.tower(self.embedding(idx))
        h = torch.stack([tower(self.embedding.modality(m, idx)) for m, tower in enumerate(self.towers)],
                        dim=1)                                     # (n, P, d)
        return self.fuse_scale * self.fuse(h.reshape(h.shape[0], -1)) + h.mean(dim=1)

    def extra_repr(self) -> str:
        return (f"variant={self.variant}, n_items={self.num_items}, dim={self.dim}, "
                f"tokens_per_modality={dict(zip(self.modality_names, self.embedding.num_subspaces))}, "
                f"codebook_sizes={self.embedding.codebook_sizes}, n_layers={self.n_layers}, rank={self.rank}")
