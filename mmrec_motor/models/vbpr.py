"""VBPR (He & McAuley, "VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback", AAAI 2016),
in MMRec's variant: the content part takes every available modality (text and image features
concatenated) and users have one vector for both parts.

With f_i = [t_i ; v_i] the raw item features [I, D] (D = D_t + D_v; one modality alone works too),
  item vector  q_i = [ i_embedding[i] ; W f_i + b ]      in R^{2d}  (ID part d, content part d)
  user vector  p_u = u_embedding[u]                       in R^{2d}
  score(u, i) = p_u . q_i
Loss on a batch (u, i+, i-): BPR(score(u, i+), score(u, i-)) + reg_weight * EmbLoss(p_u, q_i+, q_i-).

As in MMRec, ``u_embedding`` [U, 2d] and ``i_embedding`` [I, d] are ``nn.Parameter``s with
xavier-uniform init (MOTOR replaces ``i_embedding``); the linear map W [d, D], b [d] is
xavier-normal with a zero bias. The raw features are fixed inputs, not parameters.
Training computes q_i only for the batch's distinct items (same values and gradients as the full
table; with MOTOR, its rows of ``i_embedding`` alone, :meth:`GeneralRecommender.item_rows`); ranking
computes the full [I, 2d] item table from the current parameters.
"""
import torch
import torch.nn as nn

from mmrec_motor.models.common import GeneralRecommender, bpr_loss, emb_loss, xavier_normal_init


class VBPR(GeneralRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.u_embedding_size = self.i_embedding_size = config["embedding_size"]
        self.reg_weight = config["reg_weight"]
        self.u_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, 2 * self.u_embedding_size)))
        self.i_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, self.i_embedding_size)))
        present = [f for f in (self.t_feat, self.v_feat) if f is not None]
        self.item_raw_features = torch.cat(present, dim=1) if len(present) > 1 else present[0]
        self.item_linear = nn.Linear(self.item_raw_features.shape[1], self.i_embedding_size)
        self.apply(xavier_normal_init)  # the Linear only: the two tables are Parameters, not Embeddings

    def _item_vectors(self, items=None) -> torch.Tensor:
        """q_i for ``items`` (all items when None), [n, 2d]."""
        if items is None:
            return torch.cat([self.i_embedding, self.item_linear(self.item_raw_features)], dim=1)
        return torch.cat([self.item_rows("i_embedding", items), self.item_linear(self.item_raw_features[items])],
                         dim=1)

    def forward(self):
        return self.u_embedding, self._item_vectors()

    def calculate_loss(self, interaction: torch.Tensor) -> torch.Tensor:
        users, pos_items, neg_items = interaction[0], interaction[1], interaction[2]
        unique, inverse = torch.unique(torch.cat([pos_items, neg_items]), return_inverse=True)
        items = self._item_vectors(unique)[inverse]
        pos_e, neg_e = items[:len(pos_items)], items[len(pos_items):]
        user_e = self.u_embedding[users]
        pos_scores = (user_e * pos_e).sum(dim=1)
        neg_scores = (user_e * neg_e).sum(dim=1)
        return bpr_loss(pos_scores, neg_scores) + self.reg_weight * emb_loss(user_e, pos_e, neg_e)

    def ranking_factors(self, users: torch.Tensor):
        """(p_u [B, 2d], every q_i [n_items, 2d]): scores are their dot products."""
        user_e, item_e = self.forward()
        return user_e[users], item_e

    def full_sort_predict(self, interaction) -> torch.Tensor:
        user_e, item_e = self.ranking_factors(interaction[0])
        return user_e @ item_e.T
