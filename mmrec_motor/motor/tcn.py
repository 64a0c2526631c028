"""Token embeddings and the Token Cross Network (TCN).

Notation: n = n_items, P modalities, modality m has M_m tokens per item drawn from K_m codewords each,
L = sum_m M_m tokens per item, d = embedding dim, c = ``cross_dim`` (d_c, key ``motor_tcn_dim``),
r = ``rank``, n_layers = ``n_layers``.

Token tables (:class:`TokenEmbedding`): modality m owns a table E_m of shape (M_m * K_m, d); sub-space s
uses rows s*K_m .. s*K_m + K_m - 1. E_all = [E_1; ...; E_P] (R x d, R = sum_m M_m K_m) stacks them. The
buffer ``token_ids`` (n, L) holds, for every item, its tokens as rows of E_all (sub-space and modality
offsets already added; columns of modality m are ``slices[m]``). An item's token embeddings form
T_i in R^{L x d} (its rows of E_all in modality order).

Pooled mean without a gather: mean_j T_i[j] = (S E_all)_i with S the constant sparse (n x R) matrix
whose row i holds 1/L at the item's L token rows (per modality m: S_m, 1/M_m at its M_m rows). S and
S^T are CSR matrices built from ``token_ids`` on first use and cached per (device, dtype); they are not
in the state_dict and are rebuilt whenever ``token_ids`` changes (``load_state_dict``, ``.to()``).

Compressed tokens: P in R^{d x c} projects every token row (one P, shared by all tokens and, in
``specific``, by all modalities); the crossing runs on x_0 = vec(T_i P) in R^{L c}, read from the
(R x c) table E_all P (computed once per step) rather than from the (n, L, d) token tensor. c = d
(``cross_dim`` None / 0 / >= d) means no projection (P = identity, no parameters).

Cross layer (low-rank DCN-v2, :class:`LowRankCross`), on a flattened x in R^{F}:

    x_{l+1} = x_0 * (U_l (V_l^T x_l) + b_l) + x_l,        U_l, V_l in R^{F x r}, b_l in R^F

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

Cost. The backbone reads the full item table every optimisation step, so the TCN runs over all n
items every batch, and its cost is memory traffic over (n, L c) tensors (each elementwise pass over a
7050 x 1024 float tensor cost 10-28 ms on one CPU thread here, much of it page faults on fresh
allocations rather than arithmetic). Hence c = 16 by default (motor_tcn_dim), and the implementation:

* the pooled means are CSR products S @ E_all with a prebuilt S^T for the backward
  (:class:`_SparseMatmul`), never the (n, L, d) gather;
* x_0 is an index_select of E_all P whose backward is a CSR product (:class:`_GatherRows`);
  (both for the whole catalogue on CPU / CUDA in float32 / float64; ``forward(idx)`` and other
  devices or dtypes use embedding_bag and a plain gather, same values);
* the cross layers and the output projection are one autograd function (:class:`_CrossTowerFn`) that
  works on cache-sized row blocks, recomputes them in the backward instead of saving (n, F)
  activations, and folds the scales into the (d x F) weights.

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
import warnings
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as tnf
from torch import nn

from .content import CONTENT_MODES, content_init, token_centroids

VARIANTS = ("agnostic", "specific", "mean", "fm")


def id_table_init_bound(n_items: int, dim: int) -> float:
    """xavier-uniform bound of an (n_items x dim) table: sqrt(6 / (n_items + dim))."""
    return math.sqrt(6.0 / (n_items + dim))


def resolve_cross_dim(cross_dim: Optional[int], dim: int) -> int:
    """c from the ``motor_tcn_dim`` setting: None / 0 / >= d -> d (no projection), else the value."""
    if cross_dim is None or int(cross_dim) == 0:
        return int(dim)
    if int(cross_dim) < 0:
        raise ValueError(f"cross_dim (motor_tcn_dim) must be >= 0 (0 or null = the embedding dim), "
                         f"got {cross_dim}")
    return min(int(cross_dim), int(dim))


def _csr_pair(rows: torch.Tensor, num_cols: int, value: float, dtype: torch.dtype
              ) -> Tuple[torch.Tensor, torch.Tensor]:
    """A (len(rows) x num_cols) CSR matrix with ``value`` at row i's columns ``rows[i]`` (distinct),
    and its transpose, also CSR (the backward of A @ X is A^T @ grad)."""
    n, k = rows.shape
    cols = rows.sort(dim=1).values.reshape(-1)
    dev = rows.device
    vals = torch.full((n * k,), float(value), dtype=dtype, device=dev)
    crow = torch.arange(0, n * k + 1, k, device=dev) if k else torch.zeros(n + 1, dtype=torch.long, device=dev)
    order = torch.argsort(cols, stable=True)
    crow_t = torch.zeros(num_cols + 1, dtype=torch.long, device=dev)
    crow_t[1:] = torch.cumsum(torch.bincount(cols, minlength=num_cols), 0)
    with warnings.catch_warnings():  # "sparse CSR support is in beta state"
        warnings.simplefilter("ignore")
        a = torch.sparse_csr_tensor(crow, cols, vals, (n, num_cols))
        at = torch.sparse_csr_tensor(crow_t, order // max(k, 1), vals[order], (num_cols, n))
    return a, at


class _SparseMatmul(torch.autograd.Function):
    """A @ X for a constant CSR A, with the backward A^T @ grad from a prebuilt CSR transpose (torch's
    own backward of a sparse @ dense product transposes A every step and is 3x slower on CPU)."""

    @staticmethod
    def forward(ctx, x, a, at):
        ctx.at = at
        return a @ x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return ctx.at @ grad.contiguous(), None, None


class _GatherRows(torch.autograd.Function):
    """X[ids].view(n, -1) for flat ids (n*k,), with the backward A^T @ grad, A^T the CSR transpose of
    the (n*k x rows) one-hot matrix (faster than index_select's scatter-add backward on CPU)."""

    @staticmethod
    def forward(ctx, x, ids, at, n):
        ctx.at = at
        return x.index_select(0, ids).view(n, -1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        g = grad.reshape(ctx.at.shape[1], -1).contiguous()
        return ctx.at @ g, None, None, None


class TokenEmbedding(nn.Module):
    """Per-modality token tables, the item -> token-id buffer, and the sparse pooling/gather operators.

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
    :meth:`pooled` and :meth:`gathered` are what the network uses: the token mean as a sparse product
    and the flat token rows of any (R x c) table, both without the (n, L, d) tensor.
    """

    def __init__(self, tokens: Sequence, codebook_sizes: Sequence[int], dim: int, init_bound: float,
                 generator: Optional[torch.Generator] = None, content: Optional[Sequence] = None,
                 content_mode: str = "none", content_std: Optional[float] = None):
        super().__init__()
        if content_mode not in CONTENT_MODES:
            raise ValueError(f"unknown content mode {content_mode!r} (motor_content): expected one of "
                             f"{', '.join(CONTENT_MODES)}")
        if content_mode != "none" and (content is None or len(content) != len(tokens)):
            raise ValueError(f"motor_content={content_mode!r} needs one feature matrix per modality, got "
                             f"{0 if content is None else len(content)} for {len(tokens)} modalities")
        self.content_mode = content_mode
        contents, projections = [], []
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
            if content_mode != "none":
                centroids = token_centroids(t.numpy(), np.asarray(content[m]), K)       # (M K, D_m)
                target = init_bound / math.sqrt(3.0) if content_std is None else float(content_std)
                proj, start_table = content_init(centroids, dim, (cols[-1] - (row0 - M * K)).numpy(), target)
                if content_mode == "init":
                    w = torch.from_numpy(start_table)
                else:                                   # proj: E_m = C_m W_m + Delta_m, Delta_m = 0
                    w = torch.zeros(M * K, dim)
                    contents.append(torch.from_numpy(centroids))
                    projections.append(nn.Parameter(torch.from_numpy(proj)))
            tables.append(nn.Parameter(w))
        self.tables = nn.ParameterList(tables)
        # proj: the constant centroids C_m (buffers) and the learned maps W_m (D_m, d)
        for m, c in enumerate(contents):
            self.register_buffer(f"content_{m}", c)
        self.content_proj = nn.ParameterList(projections)
        self.register_buffer("token_ids", torch.cat(cols, dim=1).contiguous())
        self.dim = dim
        self.num_items = n
        self.num_tokens = start
        self.num_rows = row0
        self._sparse: Dict = {}

    def modality(self, m: int, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Token embeddings of modality m: (n or len(idx), M_m, d)."""
        ids = self.token_ids[:, self.slices[m]]
        if idx is not None:
            ids = ids[idx]
        return self.table()[ids]

    def table(self) -> torch.Tensor:
        """All token tables stacked: E_all, (sum_m M_m K_m, d); with ``proj`` content, modality m's
        block is C_m W_m + Delta_m (:mod:`.content`)."""
        if self.content_mode == "proj":
            blocks = [torch.addmm(delta, getattr(self, f"content_{m}"), w)
                      for m, (delta, w) in enumerate(zip(self.tables, self.content_proj))]
        else:
            blocks = list(self.tables)
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=0)

    def forward(self, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        ids = self.token_ids if idx is None else self.token_ids[idx]
        return self.table()[ids]

    # -- sparse operators (cached per device and dtype, rebuilt from token_ids) -----------------
    def _ids(self, modality: Optional[int], idx: Optional[torch.Tensor]) -> torch.Tensor:
        ids = self.token_ids if modality is None else self.token_ids[:, self.slices[modality]]
        return ids if idx is None else ids[idx]

    def _operator(self, kind: str, modality: Optional[int], dtype: torch.dtype):
        """('pool' | 'gather', modality or None) -> cached (A, A^T) CSR pair (flat ids for 'gather')."""
        ids = self.token_ids
        stamp = (ids.data_ptr(), ids._version, ids.device, tuple(ids.shape))
        if self._sparse.get("stamp") != stamp:
            self._sparse = {"stamp": stamp}
        key = (kind, modality, dtype)
        op = self._sparse.get(key)
        if op is None:
            rows = self._ids(modality, None)
            if kind == "pool":
                op = _csr_pair(rows, self.num_rows, 1.0 / max(rows.shape[1], 1), dtype)
            else:
                flat = rows.reshape(-1).contiguous()
                op = (flat, _csr_pair(flat.view(-1, 1), self.num_rows, 1.0, dtype)[1])
            self._sparse[key] = op
        return op

    @staticmethod
    def _sparse_ok(x: torch.Tensor) -> bool:
        return x.device.type in ("cpu", "cuda") and x.dtype in (torch.float32, torch.float64)

    def pooled(self, table: torch.Tensor, modality: Optional[int] = None,
               idx: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """mean_j T_i[j] over all tokens (or modality m's): (n or len(idx), width of ``table``).

        ``table`` is E_all (or any (R x w) tensor with the same rows). Whole catalogue: S @ table.
        ``mask`` (n or len(idx), k) of 0/1 (token dropout): the mean over the kept tokens only (an item
        with none kept gets 0).
        """
        if mask is not None:
            rows = table[self._ids(modality, idx)] * mask.unsqueeze(-1)            # (n, k, w)
            return rows.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        if idx is None and self._sparse_ok(table):
            a, at = self._operator("pool", modality, table.dtype)
            return _SparseMatmul.apply(table, a, at)
        return tnf.embedding_bag(self._ids(modality, idx), table, mode="mean")

    def gathered(self, table: torch.Tensor, modality: Optional[int] = None,
                 idx: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """vec of each item's token rows of ``table`` (R x w): (n or len(idx), k w), k = L or M_m;
        ``mask`` (n, k) zeroes dropped tokens' rows."""
        if mask is not None:
            rows = table[self._ids(modality, idx)] * mask.unsqueeze(-1)
            return rows.reshape(rows.shape[0], -1)
        if idx is None and self._sparse_ok(table):
            flat, at = self._operator("gather", modality, table.dtype)
            return _GatherRows.apply(table, flat, at, self.num_items)
        ids = self._ids(modality, idx)
        return table[ids].reshape(ids.shape[0], -1)

    def _apply(self, fn, *args, **kwargs):
        self._sparse = {}
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self):
        state = dict(super().__getstate__())
        state["_sparse"] = {}  # rebuilt on demand; never pickled or deep-copied
        return state


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


def _cross_chunk_rows(x0: torch.Tensor) -> int:
    """Rows per block in :class:`_CrossTowerFn`: on CPU about 512 KB per (rows, F) block (so a block's
    working set stays in a core's L2 cache; 512 rows at F = 256 measured best here), elsewhere all."""
    if x0.device.type != "cpu":
        return max(int(x0.shape[0]), 1)
    return max(64, (1 << 17) // max(int(x0.shape[1]), 1))


class _CrossTowerFn(torch.autograd.Function):
    """x_L @ Ws^T + base, x_L from the cross layers x_{l+1} = x0 * (U_l (V_l^T x_l) + b_l) + x_l.

    Same values as autograd through :class:`LowRankCross` and a linear layer, computed so that the
    (n, F) tensors are not streamed through memory a dozen times per step:

    * the rows are processed in blocks (:func:`_cross_chunk_rows`) that stay in cache; nothing but x0
      is saved, and the backward recomputes a block's layers before back-propagating through it
      (the extra GEMMs are cheaper than the memory traffic and allocations they replace);
    * U_l (V_l^T x_l) + b_l = [z_l, 1] [U_l, b_l]^T with z_l = V_l^T x_l: one GEMM writes it, and
      [dU_l, db_l] = dy^T [z_l, 1] is one GEMM (no bias broadcast, no column sum);
    * no scalar multiplies, dL/dx0 accumulated in place (addcmul_), dL/dx_l = g + (dy U_l) V_l^T
      one in-place GEMM.

    Inputs: x0 (n, F), base (n, d), Ws (d, F), rows per block, then (U, V, b) per layer (>= 1 layer).
    """

    @staticmethod
    def _ubs(params):
        """[U_l, b_l] per layer: (F, r + 1)."""
        return [torch.cat([params[i], params[i + 2].unsqueeze(1)], dim=1) for i in range(0, len(params), 3)]

    @staticmethod
    def forward(ctx, x0, base, ws, rows, *params):
        n, F = x0.shape
        rows = max(1, min(int(rows), n))
        ubs = _CrossTowerFn._ubs(params)
        ones = x0.new_ones(rows, 1)
        # block buffers, reused by every block (cache-resident, and no allocation per block)
        y, bufs = x0.new_empty(rows, F), [x0.new_empty(rows, F), x0.new_empty(rows, F)]
        out = torch.empty(base.shape, dtype=base.dtype, device=base.device)
        for a in range(0, n, rows):
            x0c = x0[a:a + rows]
            m = x0c.shape[0]
            x = x0c
            for i, ub in enumerate(ubs):
                z1 = torch.cat([x @ params[3 * i + 1], ones[:m]], dim=1)   # [z, 1]: (m, r + 1)
                torch.mm(z1, ub.t(), out=y[:m])                             # U z + b
                x = torch.addcmul(x, x0c, y[:m], out=bufs[i % 2][:m])
            torch.addmm(base[a:a + rows], x, ws.t(), out=out[a:a + rows])
        ctx.save_for_backward(x0, ws, *params)
        ctx.rows = rows
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out):
        x0, ws, *params = ctx.saved_tensors
        rows, k = ctx.rows, len(params) // 3
        n, F = x0.shape
        ubs = _CrossTowerFn._ubs(params)
        ones = x0.new_ones(rows, 1)
        g_out = g_out.contiguous()
        gx0, gws = torch.empty_like(x0), torch.zeros_like(ws)
        gubs = [torch.zeros_like(ub) for ub in ubs]
        gvs = [torch.zeros_like(params[3 * i + 1]) for i in range(k)]
        # block buffers: x_1..x_L, y_0..y_{L-1}, dL/dx, dL/dy, dL/dx0
        xs = [x0.new_empty(rows, F) for _ in range(k)]
        ys = [x0.new_empty(rows, F) for _ in range(k)]
        g_buf, gy_buf, gx0_buf = x0.new_empty(rows, F), x0.new_empty(rows, F), x0.new_empty(rows, F)
        for a in range(0, n, rows):
            x0c = x0[a:a + rows]
            m = x0c.shape[0]
            inputs, z1s, x = [], [], x0c                         # recompute the block's layers
            for i, ub in enumerate(ubs):
                z1 = torch.cat([x @ params[3 * i + 1], ones[:m]], dim=1)
                torch.mm(z1, ub.t(), out=ys[i][:m])
                inputs.append(x)
                z1s.append(z1)
                x = torch.addcmul(x, x0c, ys[i][:m], out=xs[i][:m])
            gc = g_out[a:a + rows]
            gws.addmm_(gc.t(), x)                                # dL/dWs
            g, gy, gx0c = g_buf[:m], gy_buf[:m], gx0_buf[:m]
            torch.mm(gc, ws, out=g)                              # dL/dx_L
            for i in reversed(range(k)):
                y = ys[i][:m]
                torch.mul(g, x0c, out=gy)                        # dL/dy
                if i == k - 1:
                    torch.mul(g, y, out=gx0c)
                else:
                    gx0c.addcmul_(g, y)
                gz = gy @ params[3 * i]                          # dL/dz: (m, r)
                gubs[i].addmm_(gy.t(), z1s[i])                   # [dL/dU, dL/db]
                gvs[i].addmm_(inputs[i].t(), gz)                 # dL/dV
                g.addmm_(gz, params[3 * i + 1].t())              # dL/dx_i = g (skip) + gz V^T
            torch.add(gx0c, g, out=gx0[a:a + rows])              # x_0 is also layer 0's x
        grads = []
        for gub, gv in zip(gubs, gvs):
            grads += [gub[:, :-1].contiguous(), gv, gub[:, -1].contiguous()]
        return (gx0, g_out, gws, None, *grads)


class CrossTower(nn.Module):
    """n_layers cross layers over x_0 in R^{k c}, then s (W x_L + w) + pooled in R^d, s = 1/sqrt(k c).

    Parameters: n_layers (2 k c r + k c) + k c d + d.
    forward(x0: (n, k c), pooled: (n, d)) -> (n, d).
    """

    def __init__(self, num_tokens: int, dim: int, n_layers: int, rank: int,
                 generator: Optional[torch.Generator] = None, cross_dim: Optional[int] = None):
        super().__init__()
        F = num_tokens * resolve_cross_dim(cross_dim, dim)
        self.layers = nn.ModuleList([LowRankCross(F, rank, generator) for _ in range(n_layers)])
        self.proj = nn.Linear(F, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.proj_scale = 1.0 / math.sqrt(F)
        self.block_rows: Optional[int] = None  # rows per block of the cross computation; None = auto

    def forward(self, x0: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        s = self.proj_scale
        # s (W x + w) + pooled, with s folded into the (d x F) weight and the (d,) bias rather than
        # applied to an (n, F) tensor
        base, ws = pooled + s * self.proj.bias, s * self.proj.weight
        if not self.layers:
            return torch.addmm(base, x0, ws.t())
        params = [p for layer in self.layers for p in (layer.U, layer.V, layer.b)]
        rows = self.block_rows or _cross_chunk_rows(x0)
        return _CrossTowerFn.apply(x0, base, ws, int(rows), *params)


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
        cross_dim: c, the width of a token inside the cross towers (``motor_tcn_dim``); None, 0 or
            >= d -> d (no projection). Ignored by ``'mean'``.

    forward(idx=None) -> (n_items, d) or (len(idx), d).
    """

    def __init__(self, tokens: Sequence, codebook_sizes: Sequence[int], dim: int,
                 variant: str = "agnostic", n_layers: int = 2, rank: int = 8,
                 init_bound: Optional[float] = None, seed: int = 0,
                 modality_names: Optional[Sequence[str]] = None, cross_dim: Optional[int] = 16,
                 content: Optional[Sequence] = None, content_mode: str = "none",
                 token_dropout: float = 0.0, fine_tokens: Optional[Sequence] = None,
                 fine_sizes: Optional[Sequence[int]] = None):
        super().__init__()
        if not 0.0 <= float(token_dropout) < 1.0:
            raise ValueError(f"token_dropout (motor_token_dropout) must lie in [0, 1), got {token_dropout}")
        self.token_dropout = float(token_dropout)
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
        """``fm``: e_i = m_i + W q_i + w, m_i = mean_j T_i[j] and q_i the mean over ordered pairs j != k
        of T_i[j] * T_i[k] (elementwise), q_i = (L m_i^2 - mean_j T_i[j]^2) / (L - 1), from two sparse
        pooled means (no (n, L, d) tensor). W (d x d), w start at 0: the crossing is symmetric in the
        tokens and has no per-position weights, so it cannot single out an exact token combination."""
        emb = self.embedding
        mean = emb.pooled(table, idx=idx, mask=mask)
        sq = emb.pooled(table * table, idx=idx, mask=mask)
        L = (torch.full((1, 1), float(emb.num_tokens), dtype=table.dtype, device=table.device)
             if mask is None else mask.sum(dim=1, keepdim=True))
        pair = (L * mean * mean - sq) / (L - 1.0).clamp(min=1.0)
        return mean + self.pair_proj(pair)

    def forward(self, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self._tokens_forward(idx)
        if self.fine_ids is None:
            return out
        cells = self.fine_ids if idx is None else self.fine_ids[idx]
        for m, table in enumerate(self.fine_tables):               # + sum_m F_m[f_im]
            out = out + tnf.embedding(cells[:, m], table)
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
