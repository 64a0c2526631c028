"""LATTICE (Zhang et al., "Mining Latent Structures for Multimedia Recommendation", ACM MM 2021).

Item-item structure learning on top of a collaborative-filtering backbone. With E_u [U, d],
E_i [I, d] (= ``item_id_embedding.weight``), raw features X_m [I, D_m] (trainable tables, as in
MMRec) and f = ``feat_embed_dim``:

  * frozen graphs (built once): per modality m, the cosine kNN graph of the raw features X_m,
    each edge weighted by its similarity, symmetrically normalised by its row sums:
        O_m = D^{-1/2} kNN_k(cos(X_m)) D^{-1/2}                         [I, I], I k non-zeros
  * learned graphs (rebuilt from the current parameters at the first batch of every epoch and at
    evaluation): the same construction on the projected features P_m = W_m X_m + b_m [I, f]; with
    a = softmax(``modal_weight``) [2],
        S = D^{-1/2} (a_v kNN_k(cos(P_v)) + a_t kNN_k(cos(P_t))) D^{-1/2}
        A = (1 - lambda) S + lambda (a_v O_v + a_t O_t)                 (lambda = ``lambda_coeff``)
    The gradient reaches W_m, X_m and ``modal_weight`` only through the batch that rebuilt A; the
    other batches of the epoch use A detached (as MMRec does).
  * h = A^L E_i                                                       (L = ``n_layers``)
  * the CF backbone (``cf_model``) on the user-item graph G = D^{-1}(B + Id), B the bipartite
    adjacency (random-walk normalisation with self-loops, as in MMRec):
        lightgcn: X_0 = [E_u; E_i], X_{l+1} = G X_l, [U_out; I_out] = mean_{l=0..n_ui} X_l
        ngcf:     X_{l+1} = dropout(lrelu(W1_l G X_l) + lrelu(W2_l (X_l * G X_l))), mean of
                  [X_0, normalize(X_1), ...]
        mf:       U_out = E_u, I_out = E_i
    item output = I_out + normalize(h);  n_ui = len(``weight_size``).
Loss: BPR on the outputs + reg_weight * (|u|^2 + |i+|^2 + |i-|^2) / (2 * train_batch_size).
Evaluation ranks with a graph rebuilt from the current parameters.

One modality works too (then A = (1 - lambda) S_m + lambda O_m, no mixing weight; ``modal_weight``
is still created, as in MMRec, and stays unused).

Memory. MMRec builds every graph densely: cosine matrix, top-k scatter, Laplacian by two dense
products with diag matrices (4 I^3 flops), per modality, plus the mix and the autograd copies, so
about ten I x I float32 matrices live at once. At Baby size (I = 7,050) one such matrix is 199 MB
(about 2 GB in all; each Laplacian costs 1.4 TFLOP); at Clothing size (I = 23,033) one is 2.12 GB
(over 20 GB in all; 49 TFLOP per Laplacian). Here no I x I matrix is ever formed: neighbours are
found ``chunk`` = 2048 rows at a time (a 2048 x I block: 58 MB on Baby, 189 MB on Clothing, freed
before the next), and every graph is sparse with k non-zeros per row and modality. The graph A has
at most 4 I k non-zeros (282,000 on Baby, 921,320 on Clothing at k = 10: a few MB), the
similarities with gradient keep two gathered [I k, f] blocks per modality for backward (36 MB on
Baby, 118 MB on Clothing per modality at k = 10, f = 64), and A E_i is a sparse product of
O(I k d) work instead of I^2 d.
"""

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmrec_motor.models.common import GeneralRecommender
from mmrec_motor.models.graphs import (cached_graph, cosine_knn_edges, fingerprint, graph_cache_dir,
                                       sparse_from_scipy, sym_normalize_edges, to_sparse_tensor,
                                       weighted_knn_graph)

MODALITIES = ("v", "t")


def random_walk_interaction_graph(inter: sp.coo_matrix, n_users: int, n_items: int,
                                  device) -> torch.Tensor:
    """D^{-1} (B + Id) for the (U+I) x (U+I) bipartite adjacency B of the binary interactions,
    D = diag(row sums of B + Id): each row averages a node and its neighbours."""
    n = n_users + n_items
    rows = np.concatenate([inter.row, inter.col + n_users, np.arange(n)])
    cols = np.concatenate([inter.col + n_users, inter.row, np.arange(n)])
    adj = sp.coo_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, n)).tocsr()
    adj.data[:] = 1.0                                      # repeated interactions count once
    return sparse_from_scipy(sp.diags(1.0 / np.asarray(adj.sum(axis=1)).ravel()) @ adj, device)


class LATTICE(GeneralRecommender):
    has_unused_parameters = True     # the feature maps and modal weights reach the loss only at a graph build

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_dim = config["embedding_size"]
        self.feat_embed_dim = config["feat_embed_dim"]
        self.knn_k = config["knn_k"]
        self.lambda_coeff = config["lambda_coeff"]
        self.cf_model = config["cf_model"]
        self.n_layers = config["n_layers"]
        self.reg_weight = config["reg_weight"]
        weight_size = list(config["weight_size"])
        self.n_ui_layers = len(weight_size)
        if self.cf_model not in ("lightgcn", "ngcf", "mf"):
            raise ValueError(f"LATTICE: cf_model must be lightgcn, ngcf or mf, got {self.cf_model!r}")

        inter = dataset.inter_matrix(form="coo")
        self.norm_adj = random_walk_interaction_graph(inter, self.n_users, self.n_items, self.device)

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_dim)
        self.item_id_embedding = nn.Embedding(self.n_items, self.embedding_dim)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)

        if self.cf_model == "ngcf":
            sizes = [self.embedding_dim] + weight_size
            self.GC_Linear_list = nn.ModuleList(nn.Linear(sizes[i], sizes[i + 1])
                                                for i in range(self.n_ui_layers))
            self.Bi_Linear_list = nn.ModuleList(nn.Linear(sizes[i], sizes[i + 1])
                                                for i in range(self.n_ui_layers))
            self.dropout_list = nn.ModuleList(nn.Dropout(p) for p in config["mess_dropout"])

        self.modalities = [m for m, f in zip(MODALITIES, (self.v_feat, self.t_feat)) if f is not None]
        if self.v_feat is not None:
            self.image_embedding = nn.Embedding.from_pretrained(self.v_feat, freeze=False)
            self.image_trs = nn.Linear(self.v_feat.shape[1], self.feat_embed_dim)
        if self.t_feat is not None:
            self.text_embedding = nn.Embedding.from_pretrained(self.t_feat, freeze=False)
            self.text_trs = nn.Linear(self.t_feat.shape[1], self.feat_embed_dim)
        self.modal_weight = nn.Parameter(torch.tensor([0.5, 0.5]))

        cache_dir = graph_cache_dir(config)
        self.original_adj = {}
        for m in self.modalities:
            feat = self.v_feat if m == "v" else self.t_feat
            parts = ["wknn_sym", m, f"k{self.knn_k}", fingerprint(feat)]
            self.original_adj[m] = cached_graph(cache_dir, parts,
                                                lambda f=feat: weighted_knn_graph(f, self.knn_k),
                                                self.device)
        self.build_item_graph = True
        self.item_adj = None                                   # the detached graph of this epoch

    def pre_epoch_processing(self) -> None:
        self.build_item_graph = True

    def _projected(self, m: str) -> torch.Tensor:
        if m == "v":
            return self.image_trs(self.image_embedding.weight)
        return self.text_trs(self.text_embedding.weight)

    def build_graph(self) -> torch.Tensor:
        """A = (1 - lambda) S + lambda O from the current parameters (sparse [I, I], with gradient
        to the feature tables, the projections and ``modal_weight`` when grad is enabled)."""
        n = self.n_items
        mix = torch.softmax(self.modal_weight, dim=0)
        weights = ({m: mix[i] for i, m in enumerate(MODALITIES)} if len(self.modalities) == 2
                   else {self.modalities[0]: None})
        rows, cols, learned = [], [], []
        for m in self.modalities:
            r, c, s = cosine_knn_edges(self._projected(m), self.knn_k)
            rows.append(r)
            cols.append(c)
            learned.append(s if weights[m] is None else weights[m] * s)
        r, c = torch.cat(rows), torch.cat(cols)
        values = [(1.0 - self.lambda_coeff) * sym_normalize_edges(r, c, torch.cat(learned), n)]
        indices = [torch.stack([r, c])]
        for m in self.modalities:
            graph = self.original_adj[m]
            scale = self.lambda_coeff if weights[m] is None else self.lambda_coeff * weights[m]
            indices.append(graph.indices())
            values.append(scale * graph.values())
        return to_sparse_tensor(torch.cat(indices, dim=1), torch.cat(values), (n, n))

    def forward(self, item_adj: torch.Tensor):
        item_ids = self.item_id_embedding.weight
        h = item_ids
        for _ in range(self.n_layers):
            h = torch.sparse.mm(item_adj, h)
        h = F.normalize(h, p=2, dim=1)
        if self.cf_model == "mf":
            return self.user_embedding.weight, item_ids + h
        ego = torch.cat([self.user_embedding.weight, item_ids], dim=0)
        layers = [ego]
        for i in range(self.n_ui_layers):
            side = torch.sparse.mm(self.norm_adj, ego)
            if self.cf_model == "lightgcn":
                ego = side
                layers.append(ego)
            else:                                                  # ngcf
                summed = F.leaky_relu(self.GC_Linear_list[i](side))
                bi = F.leaky_relu(self.Bi_Linear_list[i](ego * side))
                ego = self.dropout_list[i](summed + bi)
                layers.append(F.normalize(ego, p=2, dim=1))
        mean = torch.stack(layers, dim=1).mean(dim=1)
        user_out, item_out = torch.split(mean, [self.n_users, self.n_items], dim=0)
        return user_out, item_out + h

    def calculate_loss(self, interaction: torch.Tensor) -> torch.Tensor:
        users, pos_items, neg_items = interaction[0], interaction[1], interaction[2]
        if self.build_item_graph or self.item_adj is None:
            item_adj = self.build_graph()
            self.item_adj = item_adj.detach()
            self.build_item_graph = False
        else:
            item_adj = self.item_adj
        user_out, item_out = self.forward(item_adj)
        u, pos, neg = user_out[users], item_out[pos_items], item_out[neg_items]
        mf_loss = -F.logsigmoid((u * pos).sum(1) - (u * neg).sum(1)).mean()
        reg = 0.5 * (u.pow(2).sum() + pos.pow(2).sum() + neg.pow(2).sum()) / self.batch_size
        return mf_loss + self.reg_weight * reg

    def full_sort_predict(self, interaction) -> torch.Tensor:
        user_out, item_out = self.forward(self.build_graph())
        return user_out[interaction[0]] @ item_out.T
