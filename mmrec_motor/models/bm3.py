"""BM3 (Zhou et al., "Bootstrap Latent Representations for Multi-modal Recommendation", WWW 2023).

Self-supervised: no negative items. Training batches are [2, B] (users, positive items), because the
yaml sets ``use_neg_sampling: False`` (a [3, B] batch works too; its third row is ignored).

Online encoder, with E_u [U, d], E_i [I, d] = ``item_id_embedding.weight`` and A the normalised
(U+I) x (U+I) user-item graph:
    X_0 = [E_u; E_i],  X_{l+1} = A X_l  (L = ``n_layers``),  [H_u; H_i'] = mean_{l=0..L} X_l
    H_i = H_i' + E_i                              (the ID embedding as a residual)
    F_m = W_m X_m + b_m   for each modality m in {t, v}, X_m the raw features [I, D_m] (trainable,
                          as in the paper's code), W_m: D_m -> d
Target views: dropout (rate p = ``dropout``) of a stop-gradient copy, H~ = drop(sg(H)), F~_m = drop(sg(F_m)).
A shared predictor g(x) = W_p x + b_p (d -> d). With c(a, b) = 1 - mean cos(a, b) over the batch
rows (u, i):
    L_rec   = c(g(H_u[u]), H~_i[i]) + c(g(H_i[i]), H~_u[u])
    L_align = sum_m c(g(F_m[i]), H~_i[i])          (modality -> ID view)
    L_mask  = sum_m c(g(F_m[i]), F~_m[i])          (modality -> its own dropped view)
    loss = L_rec + reg_weight * (||H_u||_F + ||H_i||_F) / I + cl_weight * (L_align + L_mask)
(the regulariser is MMRec's EmbLoss over the full online tables). Ranking: g(H_u)[u] . g(H_i)^T.

Modalities: one or both. The modality projections map to ``embedding_size`` (MMRec ignores
``feat_embed_dim`` here: the shared predictor needs both widths equal).
Only the batch's distinct users/items go through the predictor, the projections and the dropout
(one dropout mask per distinct row, as when masking the full table and indexing it); values and
gradients are those of the full-table computation.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmrec_motor.models.common import GeneralRecommender, emb_loss
from mmrec_motor.models.graphs import isolated_self_loops_on, normalized_interaction_graph


def _cos_loss(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean cosine similarity of aligned rows; the target carries no gradient."""
    return 1.0 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


class BM3(GeneralRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_dim = config["embedding_size"]
        self.feat_embed_dim = config["embedding_size"]
        self.n_layers = config["n_layers"]
        self.reg_weight = config["reg_weight"]
        self.cl_weight = config["cl_weight"]
        self.dropout = config["dropout"]

        self.norm_adj = normalized_interaction_graph(dataset.inter_matrix(form="coo"), self.n_users,
                                                     self.n_items, self.device,
                                                     isolated_self_loops=isolated_self_loops_on(config))
        self.user_embedding = nn.Embedding(self.n_users, self.embedding_dim)
        self.item_id_embedding = nn.Embedding(self.n_items, self.embedding_dim)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)
        self.predictor = nn.Linear(self.embedding_dim, self.embedding_dim)
        nn.init.xavier_normal_(self.predictor.weight)

        if self.v_feat is not None:
            self.image_embedding = nn.Embedding.from_pretrained(self.v_feat, freeze=False)
            self.image_trs = nn.Linear(self.v_feat.shape[1], self.feat_embed_dim)
            nn.init.xavier_normal_(self.image_trs.weight)
        if self.t_feat is not None:
            self.text_embedding = nn.Embedding.from_pretrained(self.t_feat, freeze=False)
            self.text_trs = nn.Linear(self.t_feat.shape[1], self.feat_embed_dim)
            nn.init.xavier_normal_(self.text_trs.weight)

    def forward(self):
        """Online (H_u [U, d], H_i [I, d])."""
        item_ids = self.item_id_embedding.weight
        x = torch.cat([self.user_embedding.weight, item_ids], dim=0)
        total = x
        for _ in range(self.n_layers):
            x = torch.sparse.mm(self.norm_adj, x)
            total = total + x
        user_out, item_out = torch.split(total / (self.n_layers + 1), [self.n_users, self.n_items], dim=0)
        return user_out, item_out + item_ids

    def _modalities(self):
        """(feature table, projection) of each present modality, text first as in MMRec."""
        return [(getattr(self, f"{m}_embedding"), getattr(self, f"{m}_trs"))
                for m in ("text", "image") if hasattr(self, f"{m}_trs")]

    def calculate_loss(self, interaction: torch.Tensor) -> torch.Tensor:
        users, items = interaction[0], interaction[1]
        user_out, item_out = self.forward()
        u_rows, u_inv = torch.unique(users, return_inverse=True)
        i_rows, i_inv = torch.unique(items, return_inverse=True)
        u_sel, i_sel = user_out[u_rows], item_out[i_rows]
        with torch.no_grad():
            u_target = F.dropout(u_sel, self.dropout)[u_inv]
            i_target = F.dropout(i_sel, self.dropout)[i_inv]
        u_online = self.predictor(u_sel)[u_inv]
        i_online = self.predictor(i_sel)[i_inv]
        loss = _cos_loss(u_online, i_target) + _cos_loss(i_online, u_target)

        modal_loss = 0.0
        for table, projection in self._modalities():
            feats = projection(table(i_rows))
            with torch.no_grad():
                feats_target = F.dropout(feats, self.dropout)[i_inv]
            feats_online = self.predictor(feats)[i_inv]
            modal_loss = modal_loss + _cos_loss(feats_online, i_target) + _cos_loss(feats_online, feats_target)

        return loss + self.reg_weight * emb_loss(user_out, item_out) + self.cl_weight * modal_loss

    def full_sort_predict(self, interaction) -> torch.Tensor:
        user_out, item_out = self.forward()
        return self.predictor(user_out[interaction[0]]) @ self.predictor(item_out).T
