"""BPR-MF (Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009).

score(u, i) = e_u . e_i with e_u = user_embedding[u] in R^d, e_i = item_embedding[i] in R^d.
loss = BPR(score(u, i+), score(u, i-)) + reg_weight * EmbLoss(e_u, e_i+, e_i-).

As in MMRec the item table is ``item_embedding`` (an ``nn.Embedding`` [n_items, d]). Training reads
only the batch's rows, by calling it with their indices (MMRec reads the positives through
``.weight``: the same values), so that MOTOR computes those rows alone
(:class:`~mmrec_motor.motor.item_embedding.MotorItemEmbedding`); ranking reads ``.weight``.
"""
import torch
import torch.nn as nn

from mmrec_motor.models.common import GeneralRecommender, bpr_loss, emb_loss, xavier_normal_init


class BPR(GeneralRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.reg_weight = config["reg_weight"]
        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        self.apply(xavier_normal_init)

    def calculate_loss(self, interaction: torch.Tensor) -> torch.Tensor:
        users, pos_items, neg_items = interaction[0], interaction[1], interaction[2]
        user_e = self.user_embedding(users)
        pos_e, neg_e = self.item_embedding(torch.stack([pos_items, neg_items])).unbind(0)
        pos_scores = (user_e * pos_e).sum(dim=1)
        neg_scores = (user_e * neg_e).sum(dim=1)
        return bpr_loss(pos_scores, neg_scores) + self.reg_weight * emb_loss(user_e, pos_e, neg_e)

    def ranking_factors(self, users: torch.Tensor):
        """(e_u [B, d], every e_i [n_items, d]): scores are their dot products."""
        return self.user_embedding(users), self.item_embedding.weight

    def full_sort_predict(self, interaction) -> torch.Tensor:
        user_e, item_e = self.ranking_factors(interaction[0])
        return user_e @ item_e.T
