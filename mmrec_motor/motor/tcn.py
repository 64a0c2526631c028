"""The Token Cross Network (TCN): item representations (n_items, d) from item tokens.

Notation: n = n_items, P modalities, modality m has M_m tokens per item drawn from K_m codewords each,
L = sum_m M_m tokens per item, d = embedding dim, c = ``cross_dim`` (d_c, key ``motor_tcn_dim``),
r = ``rank``, n_layers = ``n_layers``.

The pieces, one module each:

* :mod:`.token_embedding`: the token tables E_all (R x d, R = sum_m M_m K_m), the item -> token rows
  buffer ``token_ids`` (n, L), an item's token embeddings T_i in R^{L x d}, and their two sparse reads
  (the pooled mean mean_j T_i[j] = (S E_all)_i, and the flat token rows of any (R x c) table);
* :mod:`.cross`: the low-rank DCN-v2 cross layers and the cross tower,
  x_{l+1} = x_0 * (U_l (V_l^T x_l) + b_l) + x_l;
* :mod:`.fm`: the ``fm`` variant's pairwise term.

Compressed tokens: P in R^{d x c} projects every token row (one P, shared by all tokens and, in
``specific``, by all modalities); the crossing runs on x_0 = vec(T_i P) in R^{L c}, read from the
(R x c) table E_all P (computed once per step) rather than from the (n, L, d) token tensor. c = d
(``cross_dim`` None / 0 / >= d) means no projection (P = identity, no parameters).

Variants (``TokenCrossNetwork(variant=...)``), output e_i in R^d:

* ``agnostic``: x_0 = vec(T_i P) in R^{L c}; n_layers cross layers;
  e_i = s (W x_L + w) + mean_j T_i[j],  W in R^{d x L c}, w in R^d, s = 1 / sqrt(L c).
* ``specific``: per modality m, x_0^m = vec(T_i^m P) in R^{M_m c}; n_layers cross layers each;
  h_m = s_m (W_m x_L^m + w_m) + mean_j T_i^m[j], s_m = 1 / sqrt(M_m c); then
  e_i = s_F (F [h_1; ...; h_P] + f) + mean_m h_m,  F in R^{d x P d}, f in R^d, s_F = 1 / sqrt(P d).
* ``mean``: e_i = mean_j T_i[j] = (S E_all)_i (no crossing, no P). The default since the sports20 /
  lfm2k screening of docs/motor-design.md: every crossing variant lost to it on validation.
* ``fm``: e_i = m_i + W q_i + w with m_i the pooled mean and q_i = (L m_i^2 - mean_j T_i[j]^2) / (L - 1)
  the mean elementwise product over ordered pairs of the item's tokens (W in R^{d x d}, w start at 0):
  a symmetric crossing without per-position weights, from two sparse pooled means.

Options on top of any variant:

* ``token_dropout`` p (``motor_token_dropout``): in training each (item, token) is dropped with
  probability p at every step; the pooled means are over the kept tokens and the cross towers see
  zeros (the masked paths gather (n, L, d) instead of using the sparse operators); off in eval.
* ``content`` / ``content_mode`` (``motor_content``, :mod:`.content`): token tables start at (``init``)
  or are anchored on (``proj``: C_m W_m + Delta_m) the mean content of the items carrying each token.
* ``fine_tokens`` (``motor_fine_nbits``, :mod:`.fine`): e_i += sum_m F_m[f_im], one k-means cell per
  item and modality, F_m (K_f x d) starting at 0.
* ``fine_dropout`` q (``motor_fine_dropout``): in training each (item, modality) fine cell is left out
  with probability q at every step, e_i = pooled tokens + sum_m z_im F_m[f_im] with z_im ~ Bernoulli(1 - q)
  and no rescaling, so the shared tokens must place an item on their own as often as q; every cell
  is in at evaluation. An item never seen in training is placed by its tokens and by a cell that
  its content neighbours trained (the idea of DropoutNet's input dropout for cold start).
* ``unseen_weights`` (``motor_unseen_norm``, :mod:`.unseen`): the rows of items without a training
  interaction are multiplied by one detached factor that gives them, as a group, a trained item's
  mean length; no parameter.
* ``unseen_neighbours`` (``motor_unseen_neighbours``, :mod:`.unseen`): before that, each unseen row
  becomes the mean of itself and of its k content-nearest trained items' mean row (detached).

The pooled residuals stay in full d; only the crossing sees compressed tokens.

Parameter counts (asserted by the tests), with T = sum_m M_m K_m d the token tables and
p = d c if c < d else 0 (the projection P):

* mean:     T
* fm:       T + d^2 + d
* agnostic: T + p + n_layers (2 L c r + L c) + L c d + d
* specific: T + p + sum_m [n_layers (2 M_m c r + M_m c) + M_m c d + d] + P d^2 + d

``proj`` content adds sum_m D_m d (the maps W_m), fine tokens sum_m K_f d. None of them depends on
n_items (``motor_fine_nbits: auto`` grows K_f with the catalogue up to 2^14 cells, then stops). Defaults (L = 16, d = 64, c = 16, r = 8, 2 layers, K = 256):
T = 262,144 + TCN 26,176 = 288,320 (agnostic).

Cost. A graph backbone reads the full item table every optimisation step, so the TCN runs over all
n items every batch (BPR and VBPR read only their batch's rows, which
:class:`~.item_embedding.MotorItemEmbedding` then computes alone), and its cost is memory traffic over (n, L c) tensors (each elementwise pass over a
7050 x 1024 float tensor cost 10-28 ms on one CPU thread here, much of it page faults on fresh
allocations rather than arithmetic). Hence c = 16 by default (motor_tcn_dim), and the implementation:

* the pooled means are CSR products S @ E_all with a prebuilt S^T for the backward, never the
  (n, L, d) gather, and x_0 is an index_select of E_all P whose backward is a CSR product
  (:mod:`.token_embedding`);
* the cross layers and the output projection are one autograd function that works on cache-sized row
  blocks, recomputes them in the backward instead of saving (n, F) activations, and folds the scales
  into the (d x F) weights (:mod:`.cross`).

Measured forward+backward per step, Baby size (n = 7050, L = 16, K = 256, d = 64, 2 layers, rank 8),
one thread, ``benchmarks/tcn_speed.py``: before (gather design, c = d) mean 28 ms, agnostic 260 ms,
specific 215 ms; now at c = 16 mean ~4 ms, agnostic ~35 ms, specific ~40 ms (c = d: ~120 ms).

Initialisation (chosen so the backbone sees an ID table's scale at step 0, because the backbones'
reg weights were tuned for xavier-uniform ID tables): token tables ~ U(-a sqrt(L), a sqrt(L)) with
a = sqrt(6 / (n_items + d)), the xavier-uniform bound of the n_items x d ID table being replaced. The
mean of an item's L token rows then has the per-coordinate std of that ID table (a / sqrt(3)) when its
tokens differ. P: xavier-uniform (about preserves the token scale). U_l, V_l: xavier-uniform; b_l = 0.
The output projections W (and W_m, F) start at zero,
so at initialisation e_i is exactly the pooled token mean (``specific``: the mean over modalities of
the per-modality means); the crossing is learned from there
(gradients reach W at once and P, U, V from the second step on). The fixed factors s = 1/sqrt(fan-in)
keep the projections' learning speed near an ID row's: Adam moves every weight by about lr per step
whatever its gradient's scale, so an unscaled (d x L d) projection would move an item vector by about
lr * ||x_L||_1 per step, some 60x what an ID row moves at L d = 1024 (seen as a clear accuracy loss on
the toy data); with s it moves about lr * sqrt(F) * mean|x_L|, the same order as an ID row. All init
draws use a private ``torch.Generator`` (``seed``) so building the network does not disturb the global RNG.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as tnf
from torch import nn

from .cross import CrossTower, resolve_cross_dim
from .fm import mean_and_pairs
from .token_embedding import TokenEmbedding
from .unseen import blend_neighbours, rescale_unseen

__all__ = ["VARIANTS", "TokenCrossNetwork", "TokenEmbedding", "id_table_init_bound", "resolve_cross_dim"]

VARIANTS = ("agnostic", "specific", "mean", "fm")


def id_table_init_bound(n_items: int, dim: int) -> float:
    """xavier-uniform bound of an (n_items x dim) table: sqrt(6 / (n_items + dim))."""
    return math.sqrt(6.0 / (n_items + dim))


class TokenCrossNetwork(nn.Module):
    """Item representations from tokens: (token tables + TCN) -> (n_items, d). See module docstring.

    Args:
        tokens: one int array (n_items, M_m) per modality, values in [0, K_m).
        codebook_sizes: K_m per modality.
        dim: d (the backbone's embedding size).
        variant: ``'agnostic'`` | ``'specific'`` | ``'mean'`` | ``'fm'``.
        n_layers: cross layers (per tower); >= 0.
        rank: r >= 1.
        init_bound: ID-table bound a; None -> sqrt(6 / (n_items + d)). Token tables use a * sqrt(L).
        seed: seed of the private init generator.
        modality_names: labels for reports.
        cross_dim: c, the width of a token inside the cross towers (``motor_tcn_dim``); None, 0 or
            >= d -> d (no projection). Ignored by ``'mean'`` and ``'fm'``.

    forward(idx=None) -> (n_items, d) or (len(idx), d).
    """

    def __init__(self, tokens: Sequence, codebook_sizes: Sequence[int], dim: int,
                 variant: str = "agnostic", n_layers: int = 2, rank: int = 8,
                 init_bound: Optional[float] = None, seed: int = 0,
                 modality_names: Optional[Sequence[str]] = None, cross_dim: Optional[int] = 16,
                 content: Optional[Sequence] = None, content_mode: str = "none",
                 token_dropout: float = 0.0, fine_tokens: Optional[Sequence] = None,
                 fine_sizes: Optional[Sequence[int]] = None,
                 unseen_weights: Optional[Sequence[float]] = None, fine_dropout: float = 0.0,
                 unseen_neighbours: Optional[Tuple[np.ndarray, np.ndarray]] = None):
        super().__init__()
        if not 0.0 <= float(token_dropout) < 1.0:
            raise ValueError(f"token_dropout (motor_token_dropout) must lie in [0, 1), got {token_dropout}")
        self.token_dropout = float(token_dropout)
        if not 0.0 <= float(fine_dropout) < 1.0:
            raise ValueError(f"fine_dropout (motor_fine_dropout) must lie in [0, 1), got {fine_dropout}")
        self.fine_dropout = float(fine_dropout)
        if variant not in VARIANTS:
            raise ValueError(f"unknown TCN variant {variant!r} (motor_tcn): expected one of "
                             f"{', '.join(VARIANTS)}")
        if int(n_layers) < 0:
            raise ValueError(f"n_layers (motor_tcn_layers) must be >= 0, got {n_layers}")
        if int(rank) < 1:
            raise ValueError(f"rank (motor_tcn_rank) must be >= 1, got {rank}")
        if int(dim) < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        c = resolve_cross_dim(cross_dim, dim)
        g = torch.Generator().manual_seed(int(seed))
        n_items = int(np.asarray(tokens[0]).shape[0])
        L = sum(int(np.asarray(t).shape[1]) for t in tokens)
        a = id_table_init_bound(n_items, dim) if init_bound is None else float(init_bound)
        self.variant, self.n_layers, self.rank, self.dim = variant, int(n_layers), int(rank), int(dim)
        self.cross_dim = c
        self.modality_names = list(modality_names) if modality_names else [str(i) for i in range(len(tokens))]
        # nn.Linear's constructor draws from the global RNG (then we zero it): keep that state intact
        with torch.random.fork_rng(devices=[]):
            self.embedding = TokenEmbedding(tokens, codebook_sizes, dim, a * math.sqrt(L), g,
                                            content=content, content_mode=content_mode,
                                            content_std=a / math.sqrt(3.0))
            self.token_proj = None
            if variant not in ("mean", "fm") and c < dim:
                bound = math.sqrt(6.0 / (dim + c))
                self.token_proj = nn.Parameter(torch.empty(dim, c).uniform_(-bound, bound, generator=g))
            if variant == "agnostic":
                self.tower = CrossTower(L, dim, self.n_layers, self.rank, g, cross_dim=c)
            elif variant == "specific":
                self.towers = nn.ModuleList([CrossTower(M, dim, self.n_layers, self.rank, g, cross_dim=c)
                                             for M in self.embedding.num_subspaces])
                self.fuse = nn.Linear(len(tokens) * dim, dim)
                nn.init.zeros_(self.fuse.weight)
                nn.init.zeros_(self.fuse.bias)
                self.fuse_scale = 1.0 / math.sqrt(len(tokens) * dim)
            elif variant == "fm":
                self.pair_proj = nn.Linear(dim, dim)
                nn.init.zeros_(self.pair_proj.weight)
                nn.init.zeros_(self.pair_proj.bias)
        # fine content tokens (:mod:`.fine`): one zero-initialised table per modality, added
        self.fine_tables = nn.ParameterList(
            [nn.Parameter(torch.zeros(int(k), dim)) for k in (fine_sizes or [])])
        self.fine_ids = None
        if fine_tokens is not None and len(fine_tokens):
            cells = [torch.as_tensor(np.asarray(f), dtype=torch.long).reshape(-1) for f in fine_tokens]
            if len(cells) != len(self.fine_tables) or any(x.shape[0] != n_items for x in cells):
                raise ValueError(f"fine tokens: expected one ({n_items},) array per fine table "
                                 f"({len(self.fine_tables)}), got shapes {[tuple(x.shape) for x in cells]}")
            for cell, k in zip(cells, fine_sizes):
                if cell.min() < 0 or cell.max() >= int(k):
                    raise ValueError(f"fine tokens: values must lie in [0, {k}), got "
                                     f"[{int(cell.min())}, {int(cell.max())}]")
            del self.fine_ids
            self.register_buffer("fine_ids", torch.stack(cells, dim=1))
        # unseen items' length (:mod:`.unseen`): derived from the training data, so not saved
        self.unseen_weights = self.unseen_mask = None
        if unseen_weights is not None:
            w = torch.as_tensor(np.asarray(unseen_weights), dtype=torch.float32).reshape(-1)
            if w.shape[0] != n_items or (w < 0).any() or not (w > 0).any():
                raise ValueError(f"unseen_weights: expected ({n_items},) weights >= 0, some > 0, got shape "
                                 f"{tuple(w.shape)}")
            del self.unseen_weights, self.unseen_mask
            self.register_buffer("unseen_weights", w, persistent=False)
            self.register_buffer("unseen_mask", w == 0, persistent=False)
        # unseen items' content neighbours (:func:`.unseen.unseen_neighbours`): derived, not saved
        self.neighbour_items = self.neighbour_ids = None
        if unseen_neighbours is not None:
            items, ids = (torch.as_tensor(np.asarray(a), dtype=torch.long) for a in unseen_neighbours)
            if (items.dim() != 1 or ids.dim() != 2 or ids.shape[0] != items.shape[0]
                    or items.numel() == 0 or int(items.max()) >= n_items or int(ids.max()) >= n_items):
                raise ValueError(f"unseen_neighbours: expected (U,) item ids and (U, k) neighbour ids below "
                                 f"{n_items}, got shapes {tuple(items.shape)}, {tuple(ids.shape)}")
            mask = torch.zeros(n_items, dtype=torch.bool)
            mask[items] = True
            if self.unseen_mask is not None and not torch.equal(mask, self.unseen_mask):
                raise ValueError("unseen_neighbours and unseen_weights disagree on which items are unseen")
            del self.neighbour_items, self.neighbour_ids, self.unseen_mask
            self.register_buffer("neighbour_items", items, persistent=False)
            self.register_buffer("neighbour_ids", ids, persistent=False)
            self.register_buffer("unseen_mask", mask, persistent=False)

    @property
    def num_items(self) -> int:
        return self.embedding.num_items

    @staticmethod
    def expected_num_parameters(num_subspaces: Sequence[int], codebook_sizes: Sequence[int], dim: int,
                                variant: str, n_layers: int, rank: int,
                                cross_dim: Optional[int] = None,
                                content_dims: Optional[Sequence[int]] = None) -> int:
        """The parameter-count formula of the module docstring (cross_dim None / 0 / >= d: c = d);
        ``content_dims`` (D_m per modality) adds the ``proj`` content maps W_m, sum_m D_m d."""
        d, r = dim, rank
        c = resolve_cross_dim(cross_dim, d)
        p = d * c if c < d else 0
        T = sum(M * K * d for M, K in zip(num_subspaces, codebook_sizes)) + sum(content_dims or []) * d
        L, P = sum(num_subspaces), len(num_subspaces)
        if variant == "mean":
            return T
        if variant == "fm":
            return T + d * d + d
        if variant == "agnostic":
            return T + p + n_layers * (2 * L * c * r + L * c) + L * c * d + d
        if variant == "specific":
            return (T + p + sum(n_layers * (2 * M * c * r + M * c) + M * c * d + d for M in num_subspaces)
                    + P * d * d + d)
        raise ValueError(f"unknown TCN variant {variant!r}")

    def token_table_params(self) -> int:
        """Token tables (and, with ``proj`` content, the content maps W_m, and the fine tables)."""
        return (sum(p.numel() for p in self.embedding.parameters())
                + sum(p.numel() for p in self.fine_tables.parameters()))

    def cross_params(self) -> int:
        return sum(p.numel() for p in self.parameters()) - self.token_table_params()

    def _dropout_mask(self, idx: Optional[torch.Tensor], like: torch.Tensor) -> Optional[torch.Tensor]:
        """Token dropout (training only): a (n or len(idx), L) 0/1 mask, each token kept with
        probability 1 - token_dropout, drawn from torch's generator on the table's device."""
        p = self.token_dropout
        if not self.training or p <= 0.0:
            return None
        n = self.num_items if idx is None else int(idx.numel())
        keep = torch.rand(n, self.embedding.num_tokens, device=like.device) >= p
        return keep.to(like.dtype)

    def _fm(self, table: torch.Tensor, idx: Optional[torch.Tensor], mask: Optional[torch.Tensor]
            ) -> torch.Tensor:
        """``fm``: e_i = m_i + W q_i + w, (m_i, q_i) from :func:`.fm.mean_and_pairs`: (n or len(idx), d)."""
        mean, pair = mean_and_pairs(self.embedding, table, idx, mask)
        return mean + self.pair_proj(pair)

    def forward(self, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self._items_forward(idx)
        if self.unseen_mask is None:
            return out
        if idx is None:
            return self._unseen_rules(out)
        if not bool(self.unseen_mask[idx].any()):   # e.g. BPR's training batches: no unseen item in them
            return out
        with torch.no_grad():
            full = self._items_forward(None)
        return self._unseen_rules(out, idx, full)

    def _unseen_rules(self, out: torch.Tensor, rows: Optional[torch.Tensor] = None,
                      full: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The unseen rows (:mod:`.unseen`): content neighbours blended in, then the length rule.
        ``rows`` None: ``out`` is the whole table; otherwise its rows ``rows``, ``full`` the whole table."""
        if self.neighbour_ids is not None:
            if rows is None:
                out = blend_neighbours(out, self.neighbour_items, self.neighbour_ids)
            else:
                out = blend_neighbours(out, self.neighbour_items, self.neighbour_ids, rows=rows, full=full)
                full = blend_neighbours(full, self.neighbour_items, self.neighbour_ids)
        if self.unseen_weights is not None:
            w = self.unseen_weights.to(out.dtype)
            out = (rescale_unseen(out, w, self.unseen_mask) if rows is None
                   else rescale_unseen(out, w, self.unseen_mask, rows=rows, full=full))
        return out

    def _items_forward(self, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Pooled (or crossed) tokens plus the fine cells: (n or len(idx), d)."""
        out = self._tokens_forward(idx)
        if self.fine_ids is None:
            return out
        cells = self.fine_ids if idx is None else self.fine_ids[idx]
        keep = None
        if self.training and self.fine_dropout > 0.0:              # z_im ~ Bernoulli(1 - q)
            keep = (torch.rand(cells.shape, device=out.device) >= self.fine_dropout).to(out.dtype)
        for m, table in enumerate(self.fine_tables):               # + sum_m z_im F_m[f_im]
            rows = tnf.embedding(cells[:, m], table)
            out = out + (rows if keep is None else rows * keep[:, m:m + 1])
        return out

    def _tokens_forward(self, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        emb = self.embedding
        table = emb.table()                                        # E_all (R, d)
        mask = self._dropout_mask(idx, table)
        if self.variant == "mean":
            return emb.pooled(table, idx=idx, mask=mask)
        if self.variant == "fm":
            return self._fm(table, idx, mask)
        compact = table if self.token_proj is None else table @ self.token_proj   # E_all P (R, c)
        if self.variant == "agnostic":
            return self.tower(emb.gathered(compact, idx=idx, mask=mask), emb.pooled(table, idx=idx, mask=mask))
        masks = [None if mask is None else mask[:, sl] for sl in emb.slices]
        hs = [tower(emb.gathered(compact, m, idx, masks[m]), emb.pooled(table, m, idx, masks[m]))
              for m, tower in enumerate(self.towers)]              # P x (n, d)
        h = torch.cat(hs, dim=1)                                   # (n, P d)
        # s_F (F h + f) + mean_m h_m = h (s_F F + [I ... I] / P)^T + s_F f: the mean and the scale
        # live in the (d x P d) weight, not in passes over h
        s, P = self.fuse_scale, len(hs)
        eye = torch.eye(self.dim, dtype=h.dtype, device=h.device).repeat(1, P) / P
        return torch.addmm(s * self.fuse.bias, h, (s * self.fuse.weight + eye).t())

    def extra_repr(self) -> str:
        return (f"variant={self.variant}, n_items={self.num_items}, dim={self.dim}, "
                f"cross_dim={self.cross_dim}, "
                f"tokens_per_modality={dict(zip(self.modality_names, self.embedding.num_subspaces))}, "
                f"codebook_sizes={self.embedding.codebook_sizes}, n_layers={self.n_layers}, rank={self.rank}")
