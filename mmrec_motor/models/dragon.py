"""DRAGON (Zhou et al., "Enhancing Dyadic Relations with Homogeneous Graphs for Multimodal
Recommendation", ECAI 2023).

Three graphs: the user-item graph A (N = U + I nodes), a frozen item-item graph S and a user-user
co-occurrence graph G (the homogeneous graphs).
Per modality m (features v_m [I, D_m], d = ``embedding_size``), as DualGNN's towers:
    f_m = W2 leaky_relu(W1 v_m + b1) + b2,   x_m = normalize([P_m; f_m]),
    r_m = x_m + A x_m + A^2 x_m              (``n_layers`` = 2 propagations, A from ``aggr_mode``)
Fusion by concatenation (two modalities; one modality uses r_m alone):
    items  h_i = [r_v[U+i] || r_t[U+i]]                          (I x 2d)
    users  h_u = [w_{u,v} r_v[u] || w_{u,t} r_t[u]]              (U x 2d, w = ``weight_u`` [U, 2, 1])
Homogeneous graphs:
    items  h_i <- h_i + (S^L h)_i       S = w S_v + (1 - w) S_t (w = ``mm_image_weight``), S_m the
                                        normalised kNN graph (``knn_k``) of modality m's raw features;
                                        L = ``n_mm_layers``
    users  h_u <- h_u + (G h)_u         G: each user's ``user_knn_k`` = 40 top co-occurrence users,
                                        weights = softmax of the co-occurrence counts
Loss: -mean log2 sigmoid(s(u, i+) - s(u, i-)) + reg_weight * (sum_m mean P_m[u]^2 over the batch
users + mean w_u^2). The model has no item ID table, so ``--motor`` is refused
(MotorNotApplicableError).

Differences from MMRec's port:
  * G and S are built by the model and cached under names that encode k, the modalities, the weight
    and a fingerprint of the data (MMRec reads G from a file written by a separate script and caches
    S as ``mm_adj_<k>.pt`` whatever the modalities or weight); users with fewer than k co-occurring
    users keep the ones they have (MMRec pads with random repeats each epoch).
  * MMRec's trainable copies of the raw features (``image_embedding``/``text_embedding``), their
    projections ``image_trs``/``text_trs``, ``weight_i``, ``MLP_v``, ``MLP_t``, ``MLP_user`` and the
    item-dropped edge lists are never used by its forward or loss ('cat' construction; the raw
    features build S); they are left out.
  * ``full_sort_predict`` recomputes the representations with the current parameters.
"""
import torch

from mmrec_motor.models.common import GeneralRecommender
from mmrec_motor.models.dualgnn import (add_modality_towers, modality_weights, towers_loss,
                                        user_item_and_user_graphs)
from mmrec_motor.models.graphs import mixed_knn_graph


class DRAGON(GeneralRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_dim = config["embedding_size"]
        self.n_layers = config["n_layers"]
        self.n_mm_layers = config["n_mm_layers"]
        self.knn_k = config["knn_k"]
        self.mm_image_weight = config["mm_image_weight"]
        self.reg_weight = config["reg_weight"]
        self.user_knn_k = config["user_knn_k"] or 40
        self.adj, self.user_graph = user_item_and_user_graphs(config, dataset, self.n_users, self.n_items,
                                                              self.user_knn_k, self.device)
        self.mm_adj = mixed_knn_graph(config, "dragon_mm_adj", self.v_feat, self.t_feat, self.knn_k,
                                      self.mm_image_weight, self.device)
        self.modalities = add_modality_towers(self, self.embedding_dim)
        self.weight_u = modality_weights(self.n_users)

    def forward(self):
        """(users [U, M d], items [I, M d]), M the number of modalities."""
        reps = [getattr(self, gcn)(getattr(self, feat), self.adj, self.n_layers) for gcn, feat in self.modalities]
        items = torch.cat([r[self.n_users:] for r in reps], dim=1)
        if len(reps) == 2:
            users = torch.cat([r[:self.n_users] * self.weight_u[:, m] for m, r in enumerate(reps)], dim=1)
        else:
            users = reps[0][:self.n_users]
        h = items
        for _ in range(self.n_mm_layers):
            h = torch.sparse.mm(self.mm_adj, h)
        users = users + torch.sparse.mm(self.user_graph, users)
        return users, items + h

    def calculate_loss(self, interaction: torch.Tensor) -> torch.Tensor:
        return towers_loss(self, interaction, [self.weight_u])

    def full_sort_predict(self, interaction) -> torch.Tensor:
        user_out, item_out = self.forward()
        return user_out[interaction[0]] @ item_out.T
