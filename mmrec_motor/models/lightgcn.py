"""LightGCN (He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for
Recommendation", SIGIR 2020). ID only: no item features.

With E_u [U, d] = ``embedding_dict['user_emb']`` and E_i [I, d] = ``embedding_dict['item_emb']``
(an ``nn.ParameterDict``, MMRec's layout, so that MOTOR can replace the item entry), and
A = D^{-1/2} [[0, R], [R^T, 0]] D^{-1/2} the normalised (U+I) x (U+I) user-item graph:
    X_0 = [E_u; E_i],   X_{k+1} = A X_k                (k < K = ``n_layers``, no weights, no activation)
    [U_out; I_out] = (1 / (K+1)) sum_{k=0..K} X_k      (uniform layer combination)
    score(u, i) = U_out[u] . I_out[i]
Loss on a batch (u, i+, i-): BPR(score(u, i+), score(u, i-))
    + reg_weight * EmbLoss(E_u[u], E_i[i+], E_i[i-])    (norms of the layer-0 rows, / batch size).
"""
import torch
import torch.nn as nn

from mmrec_motor.models.common import GeneralRecommender, bpr_loss, emb_loss
from mmrec_motor.models.graphs import isolated_self_loops_on, normalized_interaction_graph


class LightGCN(GeneralRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.latent_dim = config["embedding_size"]
        self.n_layers = config["n_layers"]
        self.reg_weight = config["reg_weight"]
        self.norm_adj_matrix = normalized_interaction_graph(dataset.inter_matrix(form="coo"), self.n_users,
                                                            self.n_items, self.device,
                                                            isolated_self_loops=isolated_self_loops_on(config))
        self.embedding_dict = nn.ParameterDict({
            "user_emb": nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, self.latent_dim))),
            "item_emb": nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, self.latent_dim))),
        })

    def get_ego_embeddings(self) -> torch.Tensor:
        """X_0 = [E_u; E_i], [U+I, d]; the item rows are read from the dict on every call."""
        return torch.cat([self.embedding_dict["user_emb"], self.embedding_dict["item_emb"]], dim=0)

    def forward(self):
        x = self.get_ego_embeddings()
        total = x
        for _ in range(self.n_layers):
            x = torch.sparse.mm(self.norm_adj_matrix, x)
            total = total + x
        mean = total / (self.n_layers + 1)
        return torch.split(mean, [self.n_users, self.n_items], dim=0)

    def calculate_loss(self, interaction: torch.Tensor) -> torch.Tensor:
        users, pos_items, neg_items = interaction[0], interaction[1], interaction[2]
        user_out, item_out = self.forward()
        u = user_out[users]
        pos_scores = (u * item_out[pos_items]).sum(dim=1)
        neg_scores = (u * item_out[neg_items]).sum(dim=1)
        item_ego = self.embedding_dict["item_emb"]
        reg = emb_loss(self.embedding_dict["user_emb"][users], item_ego[pos_items], item_ego[neg_items])
        return bpr_loss(pos_scores, neg_scores) + self.reg_weight * reg

    def ranking_factors(self, users: torch.Tensor):
        """(the users' final vectors [B, d], every item's [n_items, d]): scores are their dot products."""
        user_out, item_out = self.forward()
        return user_out[users], item_out

    def full_sort_predict(self, interaction) -> torch.Tensor:
        user_e, item_e = self.ranking_factors(interaction[0])
        return user_e @ item_e.T
