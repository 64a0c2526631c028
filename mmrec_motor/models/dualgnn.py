"""DualGNN (Wang et al., "DualGNN: Dual Graph Neural Network for Multimedia Recommendation", IEEE
Transactions on Multimedia 2021).

Two graphs: the user-item graph A (N = U + I nodes) and a user-user co-occurrence graph G.
Per modality m (features v_m [I, D_m], d = ``embedding_size``):
    f_m = W2 leaky_relu(W1 v_m + b1) + b2          (I x d; W1: D_m -> 4d, W2: 4d -> d)
    x_m = normalize([P_m; f_m])                    (N x d; P_m [U, d] trainable user preferences)
    r_m = x_m + A x_m + A^2 x_m                    (``n_layers`` = 2 propagations; A = D^{-1/2} A D^{-1/2}
                                                    for ``aggr_mode: add``, D^{-1} A for ``mean``)
Fusion: items  i = sum_m r_m[U + i];
        users  u = sum_m w_{u,m} r_m[u]            (w = ``weight_u`` [U, 2, 1], softmax-initialised;
                                                    one modality: u = r_m[u]),
        then   u <- u + sum_v G[u, v] u_v          (the user graph: each user's ``user_knn_k`` = 40
                                                    top co-occurrence users, weights = softmax of the
                                                    co-occurrence counts).
Loss: -mean log2 sigmoid(s(u, i+) - s(u, i-)) + reg_weight * (sum_m mean P_m[u]^2 over the batch
users + mean w_u^2 + mean w_i^2), w_i = ``weight_i`` [I, 2, 1] entering only this regulariser (as in
MMRec). The model has no item ID table, so ``--motor`` is refused (MotorNotApplicableError).

Differences from MMRec's port:
  * G is built by the model from the training interactions (C = R R^T without the diagonal, top-k per
    user, vectorised with scipy) and cached in the graph cache; MMRec needs a separate script that
    writes ``user_graph_dict_file`` with a Python double loop over users.
  * a user with fewer than k co-occurring users keeps the ones it has (MMRec pads the list with
    random repeats each epoch, which re-weights them; with none it uses user 0 at weight 0).
  * MMRec's item-dropped edge lists, ``MLP_v``, ``MLP_t`` and ``MLP_user`` are built but never used by
    its forward or loss ('weighted_sum' construction); they are left out.
  * ``full_sort_predict`` recomputes the representations with the current parameters.
"""

from typing import List, Sequence, Tuple

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmrec_motor.models.common import GeneralRecommender
from mmrec_motor.models.graphs import (cached_graph, cooccurrence_topk_graph, fingerprint, graph_cache_dir,
                                       normalized_interaction_graph, to_sparse_tensor)

LN2 = float(np.log(2.0))


def interaction_graph(inter: sp.coo_matrix, n_users: int, n_items: int, aggr_mode: str, device):
    """The user-item adjacency for the modality GCNs: 'add' symmetric, 'mean' row-normalised."""
    if aggr_mode == "add":
        return normalized_interaction_graph(inter, n_users, n_items, device)
    if aggr_mode == "mean":
        rows = np.concatenate([inter.row, inter.col + n_users]).astype(np.int64)
        cols = np.concatenate([inter.col + n_users, inter.row]).astype(np.int64)
        n = n_users + n_items
        values = 1.0 / np.bincount(rows, minlength=n)[rows]
        return to_sparse_tensor(torch.from_numpy(np.vstack([rows, cols])),
                                torch.from_numpy(values.astype(np.float32)), (n, n)).to(device)
    raise ValueError(f"aggr_mode must be 'add' or 'mean', got {aggr_mode!r}")


def user_cooccurrence_graph(config, inter: sp.coo_matrix, n_users: int, k: int, device) -> torch.Tensor:
    """The user-user graph G [U, U] (top-k co-occurrence users, softmax weights), cached by k and by a
    fingerprint of the training interactions."""
    rows = torch.from_numpy(inter.row.astype(np.int64))
    cols = torch.from_numpy(inter.col.astype(np.int64))
    parts = ["user_cooc", f"u{n_users}", f"k{k}", "softmax", fingerprint(rows, cols)]
    build = lambda: cooccurrence_topk_graph(sp.csr_matrix(inter), k, "softmax")  # noqa: E731
    return cached_graph(graph_cache_dir(config), parts, build, device)


class ModalityGCN(nn.Module):
    """One modality's tower: the feature MLP, the user preferences, parameter-free propagation."""

    def __init__(self, n_users: int, feat_dim: int, dim: int):
        super().__init__()
        self.preference = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_users, dim)))
        self.MLP = nn.Linear(feat_dim, 4 * dim)
        self.MLP_1 = nn.Linear(4 * dim, dim)

    def forward(self, features: torch.Tensor, adj: torch.Tensor, n_layers: int) -> torch.Tensor:
        items = self.MLP_1(F.leaky_relu(self.MLP(features)))
        x = F.normalize(torch.cat([self.preference, items], dim=0))
        out, h = x, x
        for _ in range(n_layers):
            h = torch.sparse.mm(adj, h)
            out = out + h
        return out


def modality_weights(rows: int) -> nn.Parameter:
    """[rows, 2, 1] xavier-normal, then softmax over the modality axis (MMRec's weight_u/weight_i)."""
    return nn.Parameter(torch.softmax(nn.init.xavier_normal_(torch.empty(rows, 2, 1)), dim=1))


def user_item_and_user_graphs(config, dataset, n_users: int, n_items: int, k: int, device
                              ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(A, G): the modality GCNs' user-item adjacency [U + I, U + I] (:func:`interaction_graph`,
    ``aggr_mode`` 'add' when unset) and the user co-occurrence graph [U, U] of each user's k top
    users (:func:`user_cooccurrence_graph`)."""
    inter = dataset.inter_matrix(form="coo")
    adj = interaction_graph(inter, n_users, n_items, config["aggr_mode"] or "add", device)
    return adj, user_cooccurrence_graph(config, inter, n_users, k, device)


def add_modality_towers(model: GeneralRecommender, dim: int) -> List[Tuple[str, str]]:
    """One :class:`ModalityGCN` (d = ``dim``) per modality the model has: ``model.v_gcn`` on
    ``v_feat``, then ``model.t_gcn`` on ``t_feat``. Returns [(tower attribute, feature attribute)]."""
    modalities = []
    for m in ("v", "t"):
        feat = getattr(model, f"{m}_feat")
        if feat is not None:
            setattr(model, f"{m}_gcn", ModalityGCN(model.n_users, feat.shape[1], dim))
            modalities.append((f"{m}_gcn", f"{m}_feat"))
    return modalities


def log2_bpr(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """-mean log2 sigmoid(pos - neg), computed stably."""
    return -F.logsigmoid(pos - neg).mean() / LN2


def towers_loss(model: GeneralRecommender, interaction: torch.Tensor, weights: Sequence[torch.Tensor]
                ) -> torch.Tensor:
    """DualGNN's and DRAGON's loss on ``model.forward()``'s (users, items), batch (u, i+, i-) of B rows:

        -mean log2 sigmoid(s(u, i+) - s(u, i-)) + reg_weight (sum_w mean w^2 + sum_m mean P_m[u]^2)

    w over ``weights`` (the modality weights), P_m the towers' user preferences (``model.modalities``).
    """
    users, pos, neg = interaction[0], interaction[1], interaction[2]
    user_out, item_out = model.forward()
    u = user_out[users]
    loss = log2_bpr((u * item_out[pos]).sum(1), (u * item_out[neg]).sum(1))
    reg = sum(w.pow(2).mean() for w in weights)
    for gcn, _ in model.modalities:
        reg = reg + getattr(model, gcn).preference[users].pow(2).mean()
    return loss + model.reg_weight * reg


class DualGNN(GeneralRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_dim = config["embedding_size"]
        self.n_layers = config["n_layers"]
        self.reg_weight = config["reg_weight"]
        self.user_knn_k = config["user_knn_k"] or 40
        self.adj, self.user_graph = user_item_and_user_graphs(config, dataset, self.n_users, self.n_items,
                                                              self.user_knn_k, self.device)
        self.modalities = add_modality_towers(self, self.embedding_dim)
        self.weight_u = modality_weights(self.n_users)
        self.weight_i = modality_weights(self.n_items)

    def forward(self):
        """(users [U, d], items [I, d])."""
        reps = [getattr(self, gcn)(getattr(self, feat), self.adj, self.n_layers) for gcn, feat in self.modalities]
        items = torch.stack(reps).sum(dim=0)[self.n_users:]
        if len(reps) == 2:
            users = (torch.stack([r[:self.n_users] for r in reps], dim=2) @ self.weight_u).squeeze(2)
        else:
            users = reps[0][:self.n_users]
        users = users + torch.sparse.mm(self.user_graph, users)
        return users, items

    def calculate_loss(self, interaction: torch.Tensor) -> torch.Tensor:
        return towers_loss(self, interaction, [self.weight_u, self.weight_i])

    def full_sort_predict(self, interaction) -> torch.Tensor:
        user_out, item_out = self.forward()
        return user_out[interaction[0]] @ item_out.T
