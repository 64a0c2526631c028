"""LGMRec (Guo et al., "LGMRec: Local and Global Graph Learning for Multimodal Recommendation",
AAAI 2024). Needs both modalities (image and text).

Notation: R [U, I] the binary training interactions, A the normalised (U+I) x (U+I) user-item graph,
E_u [U, d], E_i [I, d] = ``item_id_embedding.weight``, X_v [I, D_v], X_t [I, D_t] the frozen raw
features, deg_u the number of training items of user u.

Local graph embedding
  * collaborative (CGE, ``cf_model``): 'lightgcn': C = mean_{l=0..L} A^l [E_u; E_i] (L = ``n_ui_layers``);
    'mf': C = [E_u; E_i].
  * modality m (MGE): items F_m = X_m W_m (W_m [D_m, d]), users the mean of their items'
    (R F_m / deg_u), then K = ``n_mm_layers`` propagations: M_m = A^K [R F_m / deg_u; F_m].
  * local: Z_loc = C + normalize(M_v) + normalize(M_t)   (row-wise L2 normalisation)
Global hypergraph embedding (GHE), ``hyper_num`` = H learnable hyperedges per modality:
  * item-hyperedge affinity H_i^m = gumbel_softmax(X_m V_m, tau) (V_m [D_m, H], rows sum to 1),
    user-hyperedge H_u^m = gumbel_softmax(R X_m V_m, tau), tau = 0.2 (soft samples, drawn every
    forward); both go through dropout with keep probability ``keep_rate`` (training only);
  * ``n_hyper_layer`` rounds from G = C_items: hyperedge states S = (H_i^m)^T G, then
    G <- H_i^m S (items) and users U_m = H_u^m S (last round);
  * Z_glob = [U_v; G_v] + [U_t; G_t].
Final: Z = Z_loc + alpha * normalize(Z_glob); score(u, i) = Z_u . Z_i.
Loss on (u, i+, i-): BPR (-mean log sigmoid, no epsilon) + cl_weight * (InfoNCE(U_v[u] -> U_t[u] among all users U_t)
  + InfoNCE(G_v[i+] -> G_t[i+] among all items G_t))   (cosine / tau, summed over the batch)
  + reg_weight * EmbLoss(Z_u[u], Z_i[i+], Z_i[i-]).
As in MMRec, the Gumbel noise is also drawn when ranking (evaluation is stochastic; seed the
global RNG for reproducible scores); only the hyperedge dropout is off in eval mode.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmrec_motor.models.common import GeneralRecommender, emb_loss
from mmrec_motor.models.graphs import isolated_self_loops_on, normalized_interaction_graph, to_sparse_tensor


def _hypergraph_pass(item_hyper: torch.Tensor, user_hyper: torch.Tensor, items: torch.Tensor,
                     n_layers: int):
    """``n_layers`` item -> hyperedge -> item rounds; returns (user output, item output)."""
    for _ in range(n_layers):
        hyperedges = item_hyper.T @ items          # [H, d]
        items = item_hyper @ hyperedges            # [I, d]
        users = user_hyper @ hyperedges            # [U, d]
    return users, items


def _info_nce(anchor: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor, tau: float) -> torch.Tensor:
    """sum_b -log softmax_j(cos(anchor_b, candidates_j) / tau)[targets_b].

    anchor [B, d], candidates [N, d]. The 1/tau goes on the normalised anchor before the product: a
    [B, d] scale instead of a [B, N] one (N is every user or item); the same value, up to float
    rounding (what it saves: docs/architecture.md, "Speed notes")."""
    logits = (F.normalize(anchor, dim=1) / tau) @ F.normalize(candidates, dim=1).T
    return F.cross_entropy(logits, targets, reduction="sum")


class LGMRec(GeneralRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if self.v_feat is None or self.t_feat is None:
            missing = "image (vision_feature_file)" if self.v_feat is None else "text (text_feature_file)"
            raise ValueError(f"LGMRec needs both image and text features; the {missing} features are "
                             f"missing")
        self.embedding_dim = config["embedding_size"]
        self.feat_embed_dim = config["feat_embed_dim"]
        self.cf_model = config["cf_model"]
        self.n_mm_layer = config["n_mm_layers"]
        self.n_ui_layers = config["n_ui_layers"]
        self.n_hyper_layer = config["n_hyper_layer"]
        self.hyper_num = config["hyper_num"]
        self.keep_rate = config["keep_rate"]
        self.alpha = config["alpha"]
        self.cl_weight = config["cl_weight"]
        self.reg_weight = config["reg_weight"]
        self.tau = 0.2
        if self.cf_model not in ("lightgcn", "mf"):
            raise ValueError(f"LGMRec: cf_model must be 'lightgcn' or 'mf', got {self.cf_model!r}")
        if self.n_hyper_layer is None or self.n_hyper_layer < 1:
            raise ValueError(f"LGMRec: n_hyper_layer must be >= 1, got {self.n_hyper_layer}")
        if self.feat_embed_dim != self.embedding_dim:
            raise ValueError(f"LGMRec adds modality and ID embeddings: feat_embed_dim ({self.feat_embed_dim}) "
                             f"must equal embedding_size ({self.embedding_dim})")

        inter = dataset.inter_matrix(form="coo")
        indices = torch.from_numpy(np.vstack([inter.row, inter.col]).astype(np.int64))
        self.adj = to_sparse_tensor(indices, torch.ones(indices.shape[1]),
                                    (self.n_users, self.n_items)).to(self.device)
        user_deg = torch.bincount(indices[0], minlength=self.n_users).float()
        self.user_inv_deg = (1.0 / (user_deg + 1e-7)).unsqueeze(1).to(self.device)       # [U, 1]
        self.norm_adj = normalized_interaction_graph(inter, self.n_users, self.n_items, self.device,
                                                     isolated_self_loops=isolated_self_loops_on(config))

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_dim)
        self.item_id_embedding = nn.Embedding(self.n_items, self.embedding_dim)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)
        self.drop = nn.Dropout(p=1.0 - self.keep_rate)

        def matrix(rows, cols):
            return nn.Parameter(nn.init.xavier_uniform_(torch.empty(rows, cols)))

        self.image_embedding = nn.Embedding.from_pretrained(self.v_feat, freeze=True)
        self.item_image_trs = matrix(self.v_feat.shape[1], self.feat_embed_dim)
        self.v_hyper = matrix(self.v_feat.shape[1], self.hyper_num)
        self.text_embedding = nn.Embedding.from_pretrained(self.t_feat, freeze=True)
        self.item_text_trs = matrix(self.t_feat.shape[1], self.feat_embed_dim)
        self.t_hyper = matrix(self.t_feat.shape[1], self.hyper_num)

    def cge(self) -> torch.Tensor:
        """Collaborative graph embedding C, [U+I, d]."""
        x = torch.cat([self.user_embedding.weight, self.item_id_embedding.weight], dim=0)
        if self.cf_model == "mf":
            return x
        total = x
        for _ in range(self.n_ui_layers):
            x = torch.sparse.mm(self.norm_adj, x)
            total = total + x
        return total / (self.n_ui_layers + 1)

    def mge(self, features: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
        """Modality graph embedding M_m, [U+I, d]."""
        item_feats = features @ projection
        user_feats = torch.sparse.mm(self.adj, item_feats) * self.user_inv_deg
        x = torch.cat([user_feats, item_feats], dim=0)
        for _ in range(self.n_mm_layer):
            x = torch.sparse.mm(self.norm_adj, x)
        return x

    def _hyperedges(self, features: torch.Tensor, hyper: torch.Tensor):
        """(item, user) soft hyperedge memberships of one modality, [I, H] and [U, H]."""
        item_logits = features @ hyper
        user_logits = torch.sparse.mm(self.adj, item_logits)
        return (F.gumbel_softmax(item_logits, self.tau, hard=False, dim=1),
                F.gumbel_softmax(user_logits, self.tau, hard=False, dim=1))

    def forward(self):
        image, text = self.image_embedding.weight, self.text_embedding.weight
        iv_hyper, uv_hyper = self._hyperedges(image, self.v_hyper)
        it_hyper, ut_hyper = self._hyperedges(text, self.t_hyper)

        cge_embs = self.cge()
        local = (cge_embs + F.normalize(self.mge(image, self.item_image_trs))
                 + F.normalize(self.mge(text, self.item_text_trs)))
        cge_items = cge_embs[self.n_users:]
        uv, iv = _hypergraph_pass(self.drop(iv_hyper), self.drop(uv_hyper), cge_items, self.n_hyper_layer)
        ut, it = _hypergraph_pass(self.drop(it_hyper), self.drop(ut_hyper), cge_items, self.n_hyper_layer)
        global_embs = torch.cat([uv, iv], dim=0) + torch.cat([ut, it], dim=0)
        all_embs = local + self.alpha * F.normalize(global_embs)
        user_embs, item_embs = torch.split(all_embs, [self.n_users, self.n_items], dim=0)
        return user_embs, item_embs, (uv, iv, ut, it)

    def calculate_loss(self, interaction: torch.Tensor) -> torch.Tensor:
        users, pos_items, neg_items = interaction[0], interaction[1], interaction[2]
        user_embs, item_embs, (uv, iv, ut, it) = self.forward()
        u, pos, neg = user_embs[users], item_embs[pos_items], item_embs[neg_items]
        rec = -F.logsigmoid((u * pos).sum(dim=1) - (u * neg).sum(dim=1)).mean()
        hcl = (_info_nce(uv[users], ut, users, self.tau)
               + _info_nce(iv[pos_items], it, pos_items, self.tau))
        return rec + self.cl_weight * hcl + self.reg_weight * emb_loss(u, pos, neg)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        user_embs, item_embs, _ = self.forward()
        return user_embs[interaction[0]] @ item_embs.T
