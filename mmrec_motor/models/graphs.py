"""Sparse graph construction in plain torch: the normalised user-item graph and modality kNN item
graphs, with a file cache whose name encodes everything that shapes the graph."""
from __future__ import annotations

import hashlib
import os
from typing import Optional, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from mmrec_motor.data.dataset import dataset_dir
from mmrec_motor.fileio import remove_stale_temporaries, save_torch
from mmrec_motor.motor.cache import usable_cache_dir, writable_dir
from mmrec_motor.resources import ensure_fits, rows_that_fit


def to_sparse_tensor(indices: torch.Tensor, values: torch.Tensor, size) -> torch.Tensor:
    """A coalesced COO sparse float tensor."""
    return torch.sparse_coo_tensor(indices, values, size, check_invariants=False).coalesce()


def isolated_self_loops_on(config) -> bool:
    """Config key ``isolated_self_loops``: True / False, or ``auto`` (the default) = on exactly when the
    inductive cold-start protocol holds items out of training (``cold_item_ratio`` > 0)."""
    value = config["isolated_self_loops"]
    if value is None or str(value).lower() == "auto":
        return bool(config["cold_item_ratio"])
    return bool(value)


def with_isolated_self_loops(adj: sp.spmatrix) -> sp.csr_matrix:
    """``adj`` plus a self-loop of weight 1 on every node whose row is empty (no edge).

    Propagation X_{k+1} = A X_k zeroes such a node after the first layer, so a layer mean
    (1 / (K+1)) sum_k X_k keeps only 1 / (K+1) of its own embedding: an item held out of training
    (inductive cold start) is scored at that fraction of its length whatever its embedding says. With
    the loop, X_{k+1}[i] = X_k[i] and the layer mean is X_0[i]. Rows that have an edge are unchanged.
    """
    adj = sp.csr_matrix(adj)
    isolated = np.flatnonzero(np.diff(adj.indptr) == 0)
    if len(isolated) == 0:
        return adj
    loops = sp.csr_matrix((np.ones(len(isolated), dtype=adj.dtype), (isolated, isolated)), shape=adj.shape)
    return (adj + loops).tocsr()


def sparse_from_scipy(matrix: sp.spmatrix, device) -> torch.Tensor:
    """A scipy sparse matrix as a coalesced float32 torch COO tensor on ``device``."""
    coo = sp.coo_matrix(matrix)
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return to_sparse_tensor(indices, torch.from_numpy(coo.data.astype(np.float32)), coo.shape).to(device)


def normalized_interaction_graph(inter: sp.coo_matrix, n_users: int, n_items: int,
                                 device, isolated_self_loops: bool = False) -> torch.Tensor:
    """The symmetric normalised adjacency of the user-item bipartite graph.

    A = [[0, R], [R^T, 0]] of size (U+I) x (U+I), R the binary interactions; returns
    D^{-1/2} A D^{-1/2} with D = diag(rowsum(A) + 1e-7) (the epsilon as in MMRec);
    ``isolated_self_loops``: plus 1 on the diagonal of the nodes without an edge
    (:func:`with_isolated_self_loops`).
    """
    rows = np.concatenate([inter.row, inter.col + n_users])
    cols = np.concatenate([inter.col + n_users, inter.row])
    n = n_users + n_items
    adj = sp.coo_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, n)).tocsr()
    adj.data[:] = 1.0
    inv_sqrt = np.power(np.asarray(adj.sum(axis=1)).ravel() + 1e-7, -0.5)
    norm = sp.diags(inv_sqrt) @ adj @ sp.diags(inv_sqrt)
    if isolated_self_loops:
        norm = with_isolated_self_loops(norm)
    return sparse_from_scipy(norm, device)


def bipartite_edge_norm(users: torch.Tensor, items: torch.Tensor, n_users: int,
                        n_items: int) -> torch.Tensor:
    """Per-edge weight 1 / sqrt(deg(u) * deg(i)) of a user-item edge list (degrees + 1e-7)."""
    user_deg = torch.bincount(users, minlength=n_users).float() + 1e-7
    item_deg = torch.bincount(items, minlength=n_items).float() + 1e-7
    return user_deg[users].pow(-0.5) * item_deg[items].pow(-0.5)


def similarity_chunk(n: int, chunk: int, device, dtype=torch.float32) -> int:
    """Rows per block of an ``[rows, n]`` similarity matrix: ``chunk``, or fewer when that block would
    not fit in half the memory available on ``device`` (resources.rows_that_fit); raises
    ResourceError when not even one row fits."""
    row_bytes = n * torch.empty((), dtype=dtype).element_size()
    rows = rows_that_fit(row_bytes, max(1, min(chunk, n)), device, share=0.5)
    ensure_fits(rows * row_bytes, device, f"a block of the item-item similarity matrix ({rows} x {n}, "
                f"{dtype})", "the kNN item graph cannot be built on this device: free memory, or run "
                "on a device with more (use_gpu / gpu_id)")
    return rows


def knn_graph(features: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """The normalised kNN graph of the items by cosine similarity of their features.

    Each item i links to the k items with the highest cosine similarity (itself included, as in
    MMRec); with A that binary [I, I] matrix and r = rowsum(A) + 1e-7 (= k), the edge weight is
    r_i^{-1/2} r_j^{-1/2}. Similarities are computed ``chunk`` rows at a time, so memory is
    chunk x I rather than I x I.
    """
    n = features.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"knn_k must be between 1 and the number of items ({n}), got {k}")
    normed = features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)
    chunk = similarity_chunk(n, chunk, features.device, features.dtype)
    neighbours = torch.cat([torch.topk(normed[s:s + chunk] @ normed.T, k, dim=1).indices
                            for s in range(0, n, chunk)])
    rows = torch.arange(n, device=features.device).repeat_interleave(k)
    cols = neighbours.reshape(-1)
    row_sum = torch.bincount(rows, minlength=n).float() + 1e-7
    values = row_sum[rows].pow(-0.5) * row_sum[cols].pow(-0.5)
    return to_sparse_tensor(torch.stack([rows, cols]), values, (n, n))


def fingerprint(*arrays: Optional[torch.Tensor]) -> str:
    """A short hash of tensors' contents (None counts as absent), for cache file names."""
    digest = hashlib.sha1()
    for array in arrays:
        if array is None:
            digest.update(b"none")
        else:
            data = array.detach().cpu().contiguous().numpy()
            digest.update(str(data.shape).encode())
            digest.update(data.tobytes())
    return digest.hexdigest()[:12]


def graph_cache_dir(config) -> str:
    """``graph_cache_dir`` from the config, by default ``<data_path>/<dataset>/graph_cache``."""
    cache_dir = config["graph_cache_dir"]
    if cache_dir is None:
        cache_dir = os.path.join(dataset_dir(config), "graph_cache")
    return cache_dir


def cached_graph(cache_dir: Optional[str], name_parts: Sequence, build, device) -> torch.Tensor:
    """Load the sparse graph named by ``name_parts`` from ``cache_dir`` or build and save it.

    The file name joins every part (parameters, modalities, feature fingerprint), so a change in any
    of them is a different file. A file that cannot be read is rebuilt. ``cache_dir=None`` disables
    the cache. A folder that cannot be written (a read-only data folder) is replaced by the user cache
    directory, with a warning (``motor.cache.usable_cache_dir``; a graph already in the read-only
    folder is still read).
    """
    if not cache_dir:
        return build().to(device)
    name = "_".join(str(p) for p in name_parts) + ".pt"
    path = os.path.join(cache_dir, name)
    if not os.path.isfile(path):
        cache_dir = usable_cache_dir(cache_dir, "graph_cache", "graph cache")
        if cache_dir is None:
            return build().to(device)
        path = os.path.join(cache_dir, name)
    if os.path.isfile(path):
        try:
            return torch.load(path, map_location=device)
        except Exception:  # a truncated or foreign file: rebuild it below
            pass
    graph = build()
    if writable_dir(cache_dir) is not None:     # a damaged graph in a read-only folder: not saved
        return graph.to(device)
    remove_stale_temporaries(path)              # temporaries of killed runs (fileio)
    save_torch(graph.cpu(), path)
    return graph.to(device)


def mixed_knn_graph(config, name: str, v_feat: Optional[torch.Tensor], t_feat: Optional[torch.Tensor],
                    k: int, image_weight: float, device) -> torch.Tensor:
    """The frozen item-item graph of the raw features (FREEDOM's and DRAGON's), [I, I] sparse:

        S = w S_v + (1 - w) S_t,   S_m = knn_graph(features of m, k),   w = ``image_weight``

    (one modality: S = S_m). Cached (:func:`cached_graph`) as
    ``<name>_k<k>_w<w>_<modalities>_<fingerprint of the features>.pt``, w = 1 for one modality.
    """
    present = [(m, f) for m, f in (("v", v_feat), ("t", t_feat)) if f is not None]
    modalities = "".join(m for m, _ in present)
    weight = image_weight if modalities == "vt" else 1.0

    def build() -> torch.Tensor:
        graphs = {m: knn_graph(f, k) for m, f in present}
        if len(graphs) == 1:
            return next(iter(graphs.values()))
        return (weight * graphs["v"] + (1.0 - weight) * graphs["t"]).coalesce()

    parts = [name, f"k{k}", f"w{weight:g}", modalities, fingerprint(v_feat, t_feat)]
    return cached_graph(graph_cache_dir(config), parts, build, device)


def cosine_knn_edges(features: torch.Tensor, k: int, chunk: int = 2048):
    """The k most cosine-similar items of every item (itself included) as weighted edges.

    Returns ``(rows, cols, sims)``, each [I * k]: row i's neighbours are chosen ``chunk`` rows at a
    time without gradient (memory chunk x I, never I x I), and ``sims`` are their cosine
    similarities. When ``features`` requires grad, ``sims`` is recomputed from the gathered rows so
    that it carries the gradient to ``features`` (extra memory I * k * D); otherwise the top-k
    values are used as they are.
    """
    n = features.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"knn_k must be between 1 and the number of items ({n}), got {k}")
    normed = features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)
    chunk = similarity_chunk(n, chunk, features.device, features.dtype)
    with torch.no_grad():
        flat = normed.detach()
        best = [torch.topk(flat[s:s + chunk] @ flat.T, k, dim=1) for s in range(0, n, chunk)]
    rows = torch.arange(n, device=features.device).repeat_interleave(k)
    cols = torch.cat([b.indices for b in best]).reshape(-1)
    if torch.is_grad_enabled() and features.requires_grad:
        sims = (normed[rows] * normed[cols]).sum(dim=1)
    else:
        sims = torch.cat([b.values for b in best]).reshape(-1)
    return rows, cols, sims


def sym_normalize_edges(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor,
                        n: int) -> torch.Tensor:
    """Edge values of D^{-1/2} W D^{-1/2}, D = diag(row sums of W), for an [n, n] edge list W
    (duplicate edges count as their sum; a zero row sum gives 0, as in MMRec). Differentiable."""
    degree = torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, rows, values)
    inv_sqrt = degree.pow(-0.5)
    inv_sqrt = torch.where(torch.isinf(inv_sqrt), torch.zeros_like(inv_sqrt), inv_sqrt)
    return inv_sqrt[rows] * values * inv_sqrt[cols]


def weighted_knn_graph(features: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """The cosine kNN item graph weighted by the similarities, symmetrically normalised by its row
    sums (MMRec's ``build_knn_normalized_graph(..., 'sym')`` / LATTICE's original graph), sparse
    [I, I]; built without gradient, chunk x I memory."""
    with torch.no_grad():
        rows, cols, sims = cosine_knn_edges(features, k, chunk)
        n = features.shape[0]
        values = sym_normalize_edges(rows, cols, sims, n)
        return to_sparse_tensor(torch.stack([rows, cols]), values, (n, n))


def cooccurrence_topk_graph(inter: sp.spmatrix, k: int, weighting: str = "softmax",
                            chunk: int = 4096) -> torch.Tensor:
    """The top-k co-occurrence graph of the rows of a binary matrix R (e.g. users of the interactions),
    sparse [n, n] with n = R's rows (DualGNN/DRAGON's user-user graph).

    C = R R^T without its diagonal (C[u, v] = the number of columns u and v share). Row u keeps its
    (at most) k largest entries (ties: the lower column index first); the kept values become, per row,
    ``'softmax'``: softmax of the counts over the kept neighbours, or ``'mean'``: 1 / (kept count).
    A row without co-occurrences stays empty. Built with scipy ``chunk`` rows at a time.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if weighting not in ("softmax", "mean"):
        raise ValueError(f"weighting must be 'softmax' or 'mean', got {weighting!r}")
    binary = sp.csr_matrix(inter, dtype=np.float32, copy=True)
    binary.data[:] = 1.0
    n = binary.shape[0]
    transposed = binary.T.tocsr()
    rows, cols, counts = [], [], []
    for start in range(0, n, chunk):
        block = (binary[start:start + chunk] @ transposed).tocoo()
        r, c, v = block.row.astype(np.int64) + start, block.col.astype(np.int64), block.data
        off_diagonal = r != c
        r, c, v = r[off_diagonal], c[off_diagonal], v[off_diagonal]
        order = np.lexsort((c, -v, r))          # by row, then count descending, then column
        r, c, v = r[order], c[order], v[order]
        rank = np.arange(len(r)) - np.searchsorted(r, r, side="left")
        kept = rank < k
        rows.append(r[kept])
        cols.append(c[kept])
        counts.append(v[kept])
    r, c, v = (np.concatenate(x) if x else np.zeros(0) for x in (rows, cols, counts))
    r, c = torch.from_numpy(r.astype(np.int64)), torch.from_numpy(c.astype(np.int64))
    v = torch.from_numpy(v.astype(np.float32))
    if weighting == "softmax":
        top = torch.full((n,), float("-inf")).scatter_reduce(0, r, v, reduce="amax", include_self=True)
        weights = torch.exp(v - top[r])
    else:
        weights = torch.ones_like(v)
    total = torch.zeros(n).index_add(0, r, weights)
    return to_sparse_tensor(torch.stack([r, c]), weights / total[r], (n, n))
