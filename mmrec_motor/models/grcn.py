"""GRCN (Wei et al., "Graph-Refined Convolutional Network for Multimedia Recommendation with Implicit
Feedback", ACM MM 2020).

Graph: the N = U + I nodes with every training interaction as two directed edges (u -> U+i and
U+i -> u). Per modality m (features v_m [I, D_m], C = ``latent_embedding``):
  * content: f_i = normalize(leaky_relu(W_m v_i + b)) [I, C]; user prototypes p_u = normalize(P_m[u]),
    P_m [U, C] trainable. Routing, ``n_layers`` times: a_ui = softmax over u's items of <p_u, f_i>,
    p_u <- normalize(p_u + sum_i a_ui f_i).
  * graph refining: x = [p; f]; for each directed edge j -> n, alpha^m_{jn} = softmax over n's
    incoming edges of <x_n, x_j>; the content representation is c^m = x + (sum_j alpha^m_{jn} x_j)_n.
Edge weights (``confid`` mode, pruning): w_{jn} = relu(max_m alpha^m_{jn} * k_{j,m}), K [N, M] the
trainable per-node modality confidences (M modalities).
ID graph (``id_gcn``): e = normalize(E), E [N, d] = ``id_gcn.id_embedding`` (users rows [0, U), items
[U, N)); h1 = W e, h2 = W h1 with W the weighted adjacency (W[n, j] = w_{jn}); id = e + h1 + h2.
Isolated nodes (``isolated_self_loops``, graphs.py; on under the inductive cold-start protocol): a node
without a training edge gets a self-loop of weight 1 in both graphs, so it keeps its own row through
each layer: id = 3 e and c^m = 2 x. Without it an edgeless item is [e || x], 1.41 long on sports20
against 2.04 for a trained item on average, and almost never reaches a top 20; with it, 3.61, so new
items are favoured as a group (docs/benchmarks.md section 25 measures how much of the cold score
that is).
Representation: [id || c^1 || ... || c^M] (d + M C dims); score(u, i) = <r_u, r_{U+i}>.
Loss: BPR -mean log sigmoid(s(u, i+) - s(u, i-)) + reg_weight * (mean E[u]^2 + mean E[U+i]^2 over the
batch rows + sum_m mean P_m[u]^2 over the batch users + mean P_image^2 over all users) (the last
term as in MMRec, which adds it for the image modality only).

All graph operations are per-edge gathers, a segment softmax (scatter max / index_add) and
weighted index_add propagation (:func:`propagate`), which carries gradients to the edge weights
(MMRec uses torch_geometric's message passing). Differences from MMRec's port:
  * routing: MMRec's edge list points user -> item, so its routing messages reach the items and the
    user rows it reads back are zero (the prototypes never move). Here the messages go item -> user as
    in the paper's routing.
  * MMRec's edge dropout has rate 0 (a no-op) and is omitted; text-only data works (MMRec's t-only
    branch stores its content under a misspelt name and fails).
  * ``full_sort_predict`` recomputes the representations with the current parameters.
MOTOR replaces the item rows of ``id_gcn.id_embedding`` (JointTableAdapter); it is read once per forward.
"""
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmrec_motor.models.common import GeneralRecommender
from mmrec_motor.models.graphs import isolated_self_loops_on


def segment_softmax(scores: torch.Tensor, segments: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Softmax of ``scores`` [E] within each group of equal ``segments`` [E] (values < n_segments)."""
    top = torch.full((n_segments,), float("-inf"), device=scores.device, dtype=scores.dtype)
    top = top.scatter_reduce(0, segments, scores.detach(), reduce="amax", include_self=True)
    exp = torch.exp(scores - top[segments])
    total = torch.zeros(n_segments, device=scores.device, dtype=scores.dtype).index_add(0, segments, exp)
    return exp / total[segments]


def propagate(dst: torch.Tensor, src: torch.Tensor, weights: torch.Tensor, x: torch.Tensor,
              n_out: int) -> torch.Tensor:
    """out[n] = sum over the edges e = (j -> n) of weights[e] * x[j]: [n_out, d].

    The product of the weighted sparse matrix with ``x`` as a gather and an index_add: the gradient
    reaches ``weights`` through elementwise products (torch.sparse.mm's gradient for its values
    would build the dense [n_out, n] product and mask it)."""
    out = torch.zeros(n_out, x.shape[1], dtype=x.dtype, device=x.device)
    return out.index_add(0, dst, weights.unsqueeze(1) * x[src])


class _EGCN(nn.Module):
    """The ID graph: the joint table E [U+I, d] propagated twice over the refined, weighted graph."""

    def __init__(self, n_nodes: int, dim: int):
        super().__init__()
        self.id_embedding = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_nodes, dim)))

    def forward(self, dst: torch.Tensor, src: torch.Tensor, weights: torch.Tensor,
                loops: Optional[torch.Tensor] = None):
        """The weighted adjacency has W[dst[e], src[e]] = weights[e]; ``loops`` [N, 1] (or None) adds
        a self-loop of that weight on each node."""
        ids = self.id_embedding
        x = F.normalize(ids)
        h1 = propagate(dst, src, weights, x, x.shape[0])
        h2 = propagate(dst, src, weights, h1, x.shape[0])
        if loops is not None:
            h1 = h1 + loops * x
            h2 = h2 + loops * h1
        return x + h1 + h2, ids


class _CGCN(nn.Module):
    """One modality's content graph: user prototypes routed over their items, then one attention layer."""

    def __init__(self, n_users: int, feat_dim: int, dim: int, n_routing: int):
        super().__init__()
        self.n_users, self.n_routing = n_users, n_routing
        self.preference = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_users, dim)))
        self.MLP = nn.Linear(feat_dim, dim)
        nn.init.xavier_normal_(self.MLP.weight)

    def forward(self, features: torch.Tensor, graph, loops: Optional[torch.Tensor] = None):
        """``loops`` [N, 1] (or None): a self-loop of that attention weight on each node (given only
        to nodes without an incoming edge, whose softmax would have one term)."""
        src, dst, n_user_edges = graph
        n_nodes = self.n_users + features.shape[0]
        items = F.normalize(F.leaky_relu(self.MLP(features)))
        prefs = F.normalize(self.preference)
        # the first n_user_edges edges are item -> user, sorted by (user, item)
        users, item_ids = dst[:n_user_edges], src[:n_user_edges] - self.n_users
        for _ in range(self.n_routing):
            att = segment_softmax((prefs[users] * items[item_ids]).sum(1), users, self.n_users)
            routed = propagate(users, item_ids, att, items, self.n_users)
            prefs = F.normalize(prefs + routed)
        x = torch.cat([prefs, items], dim=0)
        alpha = segment_softmax((x[dst] * x[src]).sum(1), dst, n_nodes)
        refined = propagate(dst, src, alpha, x, n_nodes)
        if loops is not None:
            refined = refined + loops * x
        return x + refined, alpha


class GRCN(GeneralRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_dim = config["embedding_size"]
        self.latent_dim = config["latent_embedding"]
        self.n_routing = config["n_layers"]
        self.reg_weight = config["reg_weight"]
        n_nodes = self.n_users + self.n_items

        inter = dataset.inter_matrix(form="coo")
        users = inter.row.astype(np.int64)
        items = inter.col.astype(np.int64) + self.n_users
        src = np.concatenate([items, users])
        dst = np.concatenate([users, items])
        order = np.lexsort((src, dst))         # by destination, then source: a coalesced layout
        self.src = torch.from_numpy(src[order]).to(self.device)
        self.dst = torch.from_numpy(dst[order]).to(self.device)
        self.n_user_edges = len(users)         # destinations < U come first: the item -> user edges
        # [N, 1]: 1 on the nodes without an edge when isolated_self_loops is on (module docstring)
        self.loops = None
        if isolated_self_loops_on(config):
            edgeless = np.bincount(dst, minlength=n_nodes) == 0
            if edgeless.any():
                self.loops = torch.from_numpy(edgeless.astype(np.float32)).unsqueeze(1).to(self.device)

        self.id_gcn = _EGCN(n_nodes, self.embedding_dim)
        self.modalities = []
        if self.v_feat is not None:
            self.v_gcn = _CGCN(self.n_users, self.v_feat.shape[1], self.latent_dim, self.n_routing)
            self.modalities.append(("v_gcn", "v_feat"))
        if self.t_feat is not None:
            self.t_gcn = _CGCN(self.n_users, self.t_feat.shape[1], self.latent_dim, self.n_routing)
            self.modalities.append(("t_gcn", "t_feat"))
        self.model_specific_conf = nn.Parameter(
            nn.init.xavier_normal_(torch.empty(n_nodes, len(self.modalities))))

    def forward(self):
        """(representations [U+I, d + M C], the ID table read for this forward)."""
        graph = (self.src, self.dst, self.n_user_edges)
        contents, alphas = [], []
        for gcn, feat in self.modalities:
            content, alpha = getattr(self, gcn)(getattr(self, feat), graph, self.loops)
            contents.append(content)
            alphas.append(alpha)
        confidence = self.model_specific_conf[self.src]                       # [2E, M], per source node
        weight = torch.relu((torch.stack(alphas, dim=1) * confidence).max(dim=1).values)
        id_rep, ids = self.id_gcn(self.dst, self.src, weight, self.loops)
        return torch.cat([id_rep] + contents, dim=1), ids

    def calculate_loss(self, interaction: torch.Tensor) -> torch.Tensor:
        users, pos, neg = interaction[0], interaction[1] + self.n_users, interaction[2] + self.n_users
        out, ids = self.forward()
        u = out[users]
        loss = -F.logsigmoid((u * out[pos]).sum(1) - (u * out[neg]).sum(1)).mean()
        reg = ids[users].pow(2).mean() + torch.cat([ids[pos], ids[neg]]).pow(2).mean()
        for gcn, _ in self.modalities:
            reg = reg + getattr(self, gcn).preference[users].pow(2).mean()
        if self.v_feat is not None:
            reg = reg + self.v_gcn.preference.pow(2).mean()
        return loss + self.reg_weight * reg

    def full_sort_predict(self, interaction) -> torch.Tensor:
        out, _ = self.forward()
        return out[interaction[0]] @ out[self.n_users:].T
