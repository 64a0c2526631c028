"""FREEDOM (Zhou & Shen, "A Tale of Two Graphs: Freezing and Denoising Graph Structures for
Multimodal Recommendation", ACM MM 2023).

Two graphs:
  * a *frozen* item-item graph S = w * S_v + (1 - w) * S_t (w = ``mm_image_weight``), S_m the
    normalised kNN graph (``knn_k``) of modality m's raw features, built once;
  * the user-item graph, *denoised* each epoch by degree-sensitive edge pruning: keep a share
    (1 - ``dropout``) of the edges, sampled without replacement with probability proportional to
    1 / sqrt(deg(u) deg(i)), and renormalise the kept edges symmetrically.
Forward, with E_u [U, d] and E_i [I, d] (= ``item_id_embedding.weight``):
    h = S^L E_i                                    (L = ``n_mm_layers``)
    X_0 = [E_u; E_i],  X_{l+1} = A X_l             (``n_ui_layers`` LightGCN layers, A normalised)
    [U_out; I_out] = mean_l X_l,   item output = I_out + h
Loss: BPR(u, i+, i-) on the outputs + reg_weight * (BPR with the projected features
W_v v_i and W_t t_i as item vectors), the raw feature tables being trainable as in the paper's code.
Evaluation ranks with the unpruned graph.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmrec_motor.models.common import GeneralRecommender
from mmrec_motor.models.graphs import (bipartite_edge_norm, isolated_self_loops_on, mixed_knn_graph,
                                       normalized_interaction_graph, to_sparse_tensor)


def _bpr(users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """-mean log sigmoid(u.pos - u.neg), rows aligned."""
    return -F.logsigmoid((users * pos).sum(1) - (users * neg).sum(1)).mean()


class FREEDOM(GeneralRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_dim = config["embedding_size"]
        self.feat_embed_dim = config["feat_embed_dim"]
        self.knn_k = config["knn_k"]
        self.n_mm_layers = config["n_mm_layers"]
        self.n_ui_layers = config["n_ui_layers"]
        self.reg_weight = config["reg_weight"]
        self.mm_image_weight = config["mm_image_weight"]
        self.dropout = config["dropout"]

        inter = dataset.inter_matrix(form="coo")
        self.norm_adj = normalized_interaction_graph(inter, self.n_users, self.n_items, self.device,
                                                     isolated_self_loops=isolated_self_loops_on(config))
        self.masked_adj = self.norm_adj
        self.edge_users = torch.from_numpy(inter.row.astype("int64")).to(self.device)
        self.edge_items = torch.from_numpy(inter.col.astype("int64")).to(self.device)
        self.edge_weights = bipartite_edge_norm(self.edge_users, self.edge_items, self.n_users, self.n_items)

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_dim)
        self.item_id_embedding = nn.Embedding(self.n_items, self.embedding_dim)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)

        if self.v_feat is not None:
            self.image_embedding = nn.Embedding.from_pretrained(self.v_feat, freeze=False)
            self.image_trs = nn.Linear(self.v_feat.shape[1], self.feat_embed_dim)
        if self.t_feat is not None:
            self.text_embedding = nn.Embedding.from_pretrained(self.t_feat, freeze=False)
            self.text_trs = nn.Linear(self.t_feat.shape[1], self.feat_embed_dim)
        self.mm_adj = mixed_knn_graph(config, "freedom_mm_adj", self.v_feat, self.t_feat, self.knn_k,
                                      self.mm_image_weight, self.device)

    def pre_epoch_processing(self) -> None:
        """Degree-sensitive edge pruning of the user-item graph for this epoch."""
        if self.dropout <= 0.0:
            self.masked_adj = self.norm_adj
            return
        n_keep = int(len(self.edge_weights) * (1.0 - self.dropout))
        keep = torch.multinomial(self.edge_weights, n_keep)
        users, items = self.edge_users[keep], self.edge_items[keep]
        values = bipartite_edge_norm(users, items, self.n_users, self.n_items)
        rows = torch.cat([users, items + self.n_users])
        cols = torch.cat([items + self.n_users, users])
        n = self.n_users + self.n_items
        self.masked_adj = to_sparse_tensor(torch.stack([rows, cols]), torch.cat([values, values]), (n, n))

    def forward(self, adj: torch.Tensor):
        item_ids = self.item_id_embedding.weight
        h = item_ids
        for _ in range(self.n_mm_layers):
            h = torch.sparse.mm(self.mm_adj, h)
        ego = torch.cat([self.user_embedding.weight, item_ids], dim=0)
        layers = [ego]
        for _ in range(self.n_ui_layers):
            ego = torch.sparse.mm(adj, ego)
            layers.append(ego)
        mean = torch.stack(layers, dim=1).mean(dim=1)
        user_out, item_out = torch.split(mean, [self.n_users, self.n_items], dim=0)
        return user_out, item_out + h

    def _projected(self, table: nn.Embedding, projection: nn.Linear, items: torch.Tensor) -> torch.Tensor:
        """projection(table[items]) computed on the distinct items only (same values and gradients
        as projecting the whole table, without the [I, D] x [D, d] product)."""
        unique, inverse = torch.unique(items, return_inverse=True)
        return projection(table(unique))[inverse]

    def calculate_loss(self, interaction: torch.Tensor) -> torch.Tensor:
        users, pos_items, neg_items = interaction[0], interaction[1], interaction[2]
        user_out, item_out = self.forward(self.masked_adj)
        u = user_out[users]
        loss = _bpr(u, item_out[pos_items], item_out[neg_items])
        both = torch.cat([pos_items, neg_items])
        modal_loss = 0.0
        for name in ("text", "image"):
            if hasattr(self, f"{name}_trs"):
                feats = self._projected(getattr(self, f"{name}_embedding"), getattr(self, f"{name}_trs"), both)
                modal_loss = modal_loss + _bpr(u, feats[:len(pos_items)], feats[len(pos_items):])
        return loss + self.reg_weight * modal_loss

    def ranking_factors(self, users: torch.Tensor):
        """(the users' final vectors [B, d], every item's [n_items, d]): scores are their dot products."""
        user_out, item_out = self.forward(self.norm_adj)
        return user_out[users], item_out

    def full_sort_predict(self, interaction) -> torch.Tensor:
        user_e, item_e = self.ranking_factors(interaction[0])
        return user_e @ item_e.T
