"""The cross towers of the Token Cross Network (:mod:`.tcn`): low-rank DCN-v2 layers over an item's
flattened, compressed tokens.

Notation: k tokens per item (L for ``agnostic``, M_m for one modality of ``specific``), c = the
width of a compressed token (``cross_dim``, key ``motor_tcn_dim``; :func:`resolve_cross_dim`),
F = k c, r = ``rank``, d = the embedding dim.

Cross layer (low-rank DCN-v2, :class:`LowRankCross`), on a flattened x in R^F:

    x_{l+1} = x_0 * (U_l (V_l^T x_l) + b_l) + x_l,        U_l, V_l in R^{F x r}, b_l in R^F

Tower (:class:`CrossTower`), x_0 in R^F and the pooled token mean p in R^d of the item:

    out = s (W x_L + w) + p,      W in R^{d x F}, w in R^d, s = 1 / sqrt(F)

Parameters of a tower: n_layers (2 F r + F) + F d + d. Init: U_l, V_l xavier-uniform, b_l = 0, W = 0
and w = 0 (so a tower starts as the pooled mean); s keeps W's learning speed near an ID row's
(:mod:`.tcn`, "Initialisation").

Cost: the tower runs over every item every step, on (n, F) tensors. The layers and the output
projection are one autograd function (:class:`_CrossTowerFn`) that works on cache-sized row blocks,
recomputes them in the backward instead of saving (n, F) activations, and folds s into the (d x F)
weights; same values as autograd through :class:`LowRankCross` and a linear layer.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn


def resolve_cross_dim(cross_dim: Optional[int], dim: int) -> int:
    """c from the ``motor_tcn_dim`` setting: None / 0 / >= d -> d (no projection), else the value."""
    if cross_dim is None or int(cross_dim) == 0:
        return int(dim)
    if int(cross_dim) < 0:
        raise ValueError(f"cross_dim (motor_tcn_dim) must be >= 0 (0 or null = the embedding dim), "
                         f"got {cross_dim}")
    return min(int(cross_dim), int(dim))


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
