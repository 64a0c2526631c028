"""Token tables (:class:`TokenEmbedding`): every item's tokens as rows of one stacked table, and the
two reads the Token Cross Network (:mod:`.tcn`) makes of it without an (n, L, d) gather.

Notation: n = n_items, P modalities, modality m has M_m tokens per item drawn from K_m codewords each,
L = sum_m M_m tokens per item, d = embedding dim.

Tables: modality m owns a table E_m of shape (M_m * K_m, d); sub-space s uses rows
s*K_m .. s*K_m + K_m - 1. E_all = [E_1; ...; E_P] (R x d, R = sum_m M_m K_m) stacks them. The buffer
``token_ids`` (n, L) holds, for every item, its tokens as rows of E_all (sub-space and modality
offsets already added; columns of modality m are ``slices[m]``). An item's token embeddings form
T_i in R^{L x d} (its rows of E_all in modality order). With ``content`` (:mod:`.content`) the tables
start at (``init``) or are anchored on (``proj``: E_m = C_m W_m + Delta_m) the mean content of the
items carrying each token.

Pooled mean without a gather (:meth:`TokenEmbedding.pooled`): mean_j T_i[j] = (S E_all)_i with S the
constant sparse (n x R) matrix whose row i holds 1/L at the item's L token rows (per modality m: S_m,
1/M_m at its M_m rows). S and S^T are CSR matrices built from ``token_ids`` on first use and cached
per (device, dtype); they are not in the state_dict and are rebuilt whenever ``token_ids`` changes
(``load_state_dict``, ``.to()``). The backward is S^T @ grad from the prebuilt S^T
(:class:`_SparseMatmul`).

Flat token rows (:meth:`TokenEmbedding.gathered`): vec(T_i P) in R^{L c}, read from any (R x c) table
such as E_all P: an index_select whose backward is a CSR product (:class:`_GatherRows`).

Both sparse paths serve the whole catalogue on CPU / CUDA in float32 / float64; ``idx`` and other
devices or dtypes use embedding_bag and a plain gather (same values), and a token-dropout ``mask``
the (n, k, w) gather.
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
