"""MGCN (Yu et al., "Multi-View Graph Convolutional Network for Multimedia Recommendation",
ACM MM 2023).

Three views of the items, with E_u [U, d], E_i [I, d] (= ``item_id_embedding.weight``), raw
features X_v [I, D_v], X_t [I, D_t] (trainable tables, as in MMRec) and d = ``embedding_size``:

  * behaviour-guided purifier: the modality item embeddings are the ID embeddings gated by the
    projected features,  E_m = E_i * sigmoid(G_m (W_m X_m + b_m))                     [I, d]
  * user-item view (LightGCN): X_0 = [E_u; E_i], X_{l+1} = A X_l with A = D^{-1/2} B D^{-1/2}
    the normalised bipartite adjacency; C = mean_{l=0..L_ui} X_l   [U+I, d] (L_ui = ``n_ui_layers``)
  * item-item view per modality: H_m^i = S_m^{L} E_m (L = ``n_layers``), S_m the frozen cosine kNN
    graph of X_m (``knn_k`` neighbours, itself included, edges weighted by similarity, normalised
    D^{-1/2} W D^{-1/2} by row sums); users aggregate their items, H_m^u = R H_m^i with R the
    user-item block of A; H_m = [H_m^u; H_m^i]                                       [U+I, d]
  * behaviour-aware fuser: attention a = softmax_m(q^T tanh(W_q H_m + b_q)) [U+I, 2];
    common M = sum_m a_m H_m; specific parts P_m = sigmoid(G'_m C + b) * (H_m - M);
    side S = (P_v + P_t + M) / 3;  output [U_out; I_out] = C + S.
Loss: BPR on the outputs + reg_weight * (|u|^2 + |i+|^2 + |i-|^2) / (2 * train_batch_size)
      + cl_loss * (InfoNCE(S_i[i+], C_i[i+]) + InfoNCE(S_u[u], C_u[u])), InfoNCE over the batch
      with cosine similarity and temperature 0.2.
Evaluation ranks with the outputs of a forward on the current parameters (as MMRec does).
Both modalities are required (the fuser mixes exactly two views), as in MMRec.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmrec_motor.models.common import GeneralRecommender
from mmrec_motor.models.graphs import (cached_graph, fingerprint, graph_cache_dir, isolated_self_loops_on,
                                       normalized_interaction_graph, to_sparse_tensor, weighted_knn_graph)

CL_TEMPERATURE = 0.2


def info_nce(view1: torch.Tensor, view2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over rows of -log softmax_j(cos(v1_i, v2_j) / t)[i]: row i of each view is the positive
    pair, the other rows of view2 the negatives (log-sum-exp form of exp(pos) / sum exp)."""
    logits = F.normalize(view1, dim=1) @ F.normalize(view2, dim=1).T / temperature
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()


class MGCN(GeneralRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if self.v_feat is None or self.t_feat is None:
            missing = "vision" if self.v_feat is None else "text"
            raise ValueError(f"MGCN needs both image and text features; the {missing} features "
                             f"({config[missing + '_feature_file']!r}) are missing")
        self.embedding_dim = d = config["embedding_size"]
        self.n_ui_layers = config["n_ui_layers"]
        self.n_layers = config["n_layers"]
        self.knn_k = config["knn_k"]
        self.reg_weight = config["reg_weight"]
        self.cl_weight = config["cl_loss"]

        inter = dataset.inter_matrix(form="coo")
        self.norm_adj = normalized_interaction_graph(inter, self.n_users, self.n_items, self.device,
                                                     isolated_self_loops=isolated_self_loops_on(config))
        self.R = self._user_item_block(self.norm_adj)

        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_id_embedding = nn.Embedding(self.n_items, d)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)

        self.image_embedding = nn.Embedding.from_pretrained(self.v_feat, freeze=False)
        self.text_embedding = nn.Embedding.from_pretrained(self.t_feat, freeze=False)
        self.image_trs = nn.Linear(self.v_feat.shape[1], d)
        self.text_trs = nn.Linear(self.t_feat.shape[1], d)
        self.query_common = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1, bias=False))
        self.gate_v = nn.Sequential(nn.Linear(d, d), nn.Sigmoid())
        self.gate_t = nn.Sequential(nn.Linear(d, d), nn.Sigmoid())
        self.gate_image_prefer = nn.Sequential(nn.Linear(d, d), nn.Sigmoid())
        self.gate_text_prefer = nn.Sequential(nn.Linear(d, d), nn.Sigmoid())

        cache_dir = graph_cache_dir(config)

        def modality_graph(name: str, feat: torch.Tensor) -> torch.Tensor:
            parts = ["wknn_sym", name, f"k{self.knn_k}", fingerprint(feat)]
            return cached_graph(cache_dir, parts, lambda: weighted_knn_graph(feat, self.knn_k), self.device)

        self.image_original_adj = modality_graph("v", self.v_feat)
        self.text_original_adj = modality_graph("t", self.t_feat)

    def _user_item_block(self, adj: torch.Tensor) -> torch.Tensor:
        """The [U, I] block A[:U, U:] of the normalised (U+I) x (U+I) adjacency."""
        rows, cols = adj.indices()
        keep = (rows < self.n_users) & (cols >= self.n_users)
        indices = torch.stack([rows[keep], cols[keep] - self.n_users])
        return to_sparse_tensor(indices, adj.values()[keep], (self.n_users, self.n_items))

    def _item_view(self, graph: torch.Tensor, item_embeds: torch.Tensor) -> torch.Tensor:
        for _ in range(self.n_layers):
            item_embeds = torch.sparse.mm(graph, item_embeds)
        return torch.cat([torch.sparse.mm(self.R, item_embeds), item_embeds], dim=0)

    def forward(self):
        """(user outputs [U, d], item outputs [I, d], side S [U+I, d], content C [U+I, d])."""
        item_ids = self.item_id_embedding.weight
        image_feats = self.image_trs(self.image_embedding.weight)
        text_feats = self.text_trs(self.text_embedding.weight)
        image_items = item_ids * self.gate_v(image_feats)
        text_items = item_ids * self.gate_t(text_feats)

        ego = torch.cat([self.user_embedding.weight, item_ids], dim=0)
        layers = [ego]
        for _ in range(self.n_ui_layers):
            ego = torch.sparse.mm(self.norm_adj, ego)
            layers.append(ego)
        content = torch.stack(layers, dim=1).mean(dim=1)

        image_embeds = self._item_view(self.image_original_adj, image_items)
        text_embeds = self._item_view(self.text_original_adj, text_items)

        attention = torch.softmax(torch.cat([self.query_common(image_embeds),
                                             self.query_common(text_embeds)], dim=-1), dim=-1)
        common = attention[:, :1] * image_embeds + attention[:, 1:] * text_embeds
        image_specific = self.gate_image_prefer(content) * (image_embeds - common)
        text_specific = self.gate_text_prefer(content) * (text_embeds - common)
        side = (image_specific + text_specific + common) / 3.0

        user_out, item_out = torch.split(content + side, [self.n_users, self.n_items], dim=0)
        return user_out, item_out, side, content

    def calculate_loss(self, interaction: torch.Tensor) -> torch.Tensor:
        users, pos_items, neg_items = interaction[0], interaction[1], interaction[2]
        user_out, item_out, side, content = self.forward()
        u, pos, neg = user_out[users], item_out[pos_items], item_out[neg_items]
        mf_loss = -F.logsigmoid((u * pos).sum(1) - (u * neg).sum(1)).mean()
        reg = 0.5 * (u.pow(2).sum() + pos.pow(2).sum() + neg.pow(2).sum()) / self.batch_size
        side_users, side_items = torch.split(side, [self.n_users, self.n_items], dim=0)
        content_users, content_items = torch.split(content, [self.n_users, self.n_items], dim=0)
        cl = (info_nce(side_items[pos_items], content_items[pos_items], CL_TEMPERATURE)
              + info_nce(side_users[users], content_users[users], CL_TEMPERATURE))
        return mf_loss + self.reg_weight * reg + self.cl_weight * cl

    def full_sort_predict(self, interaction) -> torch.Tensor:
        user_out, item_out, _, _ = self.forward()
        return user_out[interaction[0]] @ item_out.T
