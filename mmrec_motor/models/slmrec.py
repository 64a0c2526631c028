"""SLMRec (Tao et al., "Self-supervised Learning for Multimedia Recommendation", IEEE TMM 2022).

Branches b in {id, v, t} share the user table E_u [U, d] (d = ``recdim``); their item inputs are
the ID table E_i [I, d] (= ``embedding_item.weight``) and the dense projections
F_m = W_m norm(X_m) + b_m [I, d] of the L2-row-normalised features X_m. Each branch runs LightGCN
over the user-item graph A (``adj_type``, 'pre' = D^{-1/2} B D^{-1/2}) for L = ``layer_num`` layers:
    Z_b = mean_{l=0..L} A^l [E_u; item input of b]                     [U+I, d]
(the branches share A, so they are propagated together as one [U+I, d (1 + M)] matrix). Fusion
(``mm_fusion_mode``): concat (or mean) of the branches, then one linear layer per side:
    u = W_u [Z_id^u, Z_v^u, Z_t^u] + b_u,   i = W_i [Z_id^i, Z_v^i, Z_t^i] + b_i     [*, d]
Main loss: in-batch InfoNCE between the batch's users and their positives,
    -mean_k log softmax_j(cos(u_k, i_j) / ``temp``)[k]   (the sampled negatives are not used)
Self-supervised loss (``ssl_task``), weighted by ``ssl_alpha``, temperature ``ssl_temp``:
  * FAC (fine and coarse, the yaml's choice): with the branch item outputs at the positives,
        a = g_i_iv(Z_id^i), InfoNCE(a, g_v_iv(Z_v^i)) with logits a b^T / ssl_temp (no cosine),
        c = g_iva_ivat(g_iv_iva(a)) [*, d/2], InfoNCE(c, g_t_ivat(Z_t^i))
    (first the ID view is aligned with the finer visual view, then its image with the coarser
    text view; the paper's audio stage between them is absent, as in MMRec);
  * FD: two views of every branch with independent dropout (``dropout_rate``) after each
    propagation layer; InfoNCE of the fused, normalised users (and items) of view 1 vs view 2;
  * FM: two views, each with one randomly chosen branch's item input zeroed (different branches);
  * FD+FM: both.
Ranking: u . i with u, i computed from the current parameters (MMRec ranks with the embeddings
cached by the last training batch and passes them through a sigmoid, which float32 saturates into
ties for scores above ~17; we rank by the raw scores, which orders items the same otherwise).

Differences from MMRec, all where its code cannot run or has no effect: one modality works (FAC
then has the single stage i -> m, heads g_i_iv and g_<m>_iv; FD/FM have two branches); FD/FM run
(MMRec's read a config key that does not exist and reach an audio branch that is never built);
``mm_fusion_mode: mean`` gets a d -> d fusion layer (MMRec keeps (1 + M) d inputs and fails);
``init: normal`` draws both tables from N(0, 0.1^2) (MMRec names a table that does not exist);
the audio head ``g_a_iva``, built but never used by MMRec, is not created. The yaml key ``reg`` is
never read (not by MMRec either); ``weight_decay`` is applied by the optimizer.
"""
import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmrec_motor.models.common import GeneralRecommender
from mmrec_motor.models.graphs import isolated_self_loops_on, sparse_from_scipy, with_isolated_self_loops


def _inverse(values: np.ndarray, power: float) -> np.ndarray:
    """values ** power with the infinities of zero entries set to 0."""
    with np.errstate(divide="ignore"):
        out = np.power(values, power)
    out[np.isinf(out)] = 0.0
    return out


def slmrec_adjacency(inter: sp.coo_matrix, n_users: int, n_items: int, adj_type: str,
                     device, isolated_self_loops: bool = False) -> torch.Tensor:
    """The (U+I) x (U+I) propagation matrix of SLMRec's ``adj_type``, with B the binary bipartite
    adjacency and D its row sums: plain B; norm D'^{-1}(B + Id) (D' the row sums of B + Id);
    gcmc D^{-1} B; pre D^{-1/2} B D^{-1/2} (row sums + 1e-8); anything else ("mean") D^{-1} B + Id;
    ``isolated_self_loops``: plus 1 on the diagonal of nodes whose row is still empty (graphs.py)."""
    n = n_users + n_items
    rows = np.concatenate([inter.row, inter.col + n_users])
    cols = np.concatenate([inter.col + n_users, inter.row])
    adj = sp.coo_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, n)).tocsr()
    adj.data[:] = 1.0
    eye = sp.eye(n, dtype=np.float32, format="csr")
    if adj_type == "plain":
        out = adj
    elif adj_type == "norm":
        loops = adj + eye
        out = sp.diags(_inverse(np.asarray(loops.sum(1)).ravel(), -1.0)) @ loops
    elif adj_type == "gcmc":
        out = sp.diags(_inverse(np.asarray(adj.sum(1)).ravel(), -1.0)) @ adj
    elif adj_type == "pre":
        inv_sqrt = sp.diags(_inverse(np.asarray(adj.sum(1)).ravel() + 1e-8, -0.5))
        out = inv_sqrt @ adj @ inv_sqrt
    else:
        out = sp.diags(_inverse(np.asarray(adj.sum(1)).ravel(), -1.0)) @ adj + eye
    if isolated_self_loops:
        out = with_isolated_self_loops(out)
    return sparse_from_scipy(out, device)


def _xavier_linear(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.xavier_uniform_(layer.weight)
    return layer


def _in_batch_nce(view1: torch.Tensor, view2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy of logits view1 view2^T / t with row k's target k (the paired row)."""
    logits = view1 @ view2.T / temperature
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


class SLMRec(GeneralRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.latent_dim = d = config["recdim"]
        self.n_layers = config["layer_num"]
        self.mm_fusion_mode = config["mm_fusion_mode"]
        self.temp = config["temp"]
        self.ssl_task = config["ssl_task"]
        self.ssl_alpha = config["ssl_alpha"]
        self.ssl_temp = config["ssl_temp"]
        if self.mm_fusion_mode not in ("concat", "mean"):
            raise ValueError(f"SLMRec: mm_fusion_mode must be concat or mean, got {self.mm_fusion_mode!r}")
        if self.ssl_task not in ("FAC", "FD", "FM", "FD+FM"):
            raise ValueError(f"SLMRec: ssl_task must be FAC, FD, FM or FD+FM, got {self.ssl_task!r}")

        self.embedding_user = nn.Embedding(self.n_users, d)
        self.embedding_item = nn.Embedding(self.n_items, d)
        if config["init"] == "normal":
            nn.init.normal_(self.embedding_user.weight, std=0.1)
            nn.init.normal_(self.embedding_item.weight, std=0.1)
        else:
            nn.init.xavier_uniform_(self.embedding_user.weight)
            nn.init.xavier_uniform_(self.embedding_item.weight)

        self.modalities = []
        if self.v_feat is not None:
            self.v_feat = F.normalize(self.v_feat, dim=1)
            self.v_dense = _xavier_linear(self.v_feat.shape[1], d)
            self.modalities.append("v")
        if self.t_feat is not None:
            self.t_feat = F.normalize(self.t_feat, dim=1)
            self.t_dense = _xavier_linear(self.t_feat.shape[1], d)
            self.modalities.append("t")
        n_branches = 1 + len(self.modalities)
        fused = d * n_branches if self.mm_fusion_mode == "concat" else d
        self.embedding_item_after_GCN = _xavier_linear(fused, d)
        self.embedding_user_after_GCN = _xavier_linear(fused, d)

        if self.ssl_task == "FAC":
            first = self.modalities[0]
            self.g_i_iv = _xavier_linear(d, d)
            if len(self.modalities) == 2:
                self.g_v_iv = _xavier_linear(d, d)
                self.g_iv_iva = _xavier_linear(d, d)
                self.g_iva_ivat = _xavier_linear(d, d // 2)
                self.g_t_ivat = _xavier_linear(d, d // 2)
            else:
                setattr(self, f"g_{first}_iv", _xavier_linear(d, d))
        else:
            self.dropout = nn.Dropout(p=config["dropout_rate"])

        inter = dataset.inter_matrix(form="coo")
        self.norm_adj = slmrec_adjacency(inter, self.n_users, self.n_items, config["adj_type"],
                                         self.device, isolated_self_loops_on(config))

    # --- propagation -------------------------------------------------------------------------
    def _item_inputs(self):
        """[E_i, F_v, F_t] for the available modalities, each [I, d]."""
        inputs = [self.embedding_item.weight]
        if self.v_feat is not None:
            inputs.append(self.v_dense(self.v_feat))
        if self.t_feat is not None:
            inputs.append(self.t_dense(self.t_feat))
        return inputs

    def _propagate(self, item_inputs, dropout: bool = False) -> torch.Tensor:
        """LightGCN of every branch at once: [U+I, d * n_branches], branch b in columns b*d:(b+1)*d.
        ``dropout`` applies ``self.dropout`` after each propagation layer (FD views)."""
        users = self.embedding_user.weight
        ego = torch.cat([torch.cat([users] * len(item_inputs), dim=1), torch.cat(item_inputs, dim=1)])
        total = ego
        for _ in range(self.n_layers):
            ego = torch.sparse.mm(self.norm_adj, ego)
            if dropout:
                ego = self.dropout(ego)
            total = total + ego
        return total / (self.n_layers + 1)

    def _fuse(self, branches: torch.Tensor, rows: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
        picked = branches[rows]
        if self.mm_fusion_mode == "mean":
            picked = picked.reshape(len(picked), -1, self.latent_dim).mean(dim=1)
        return layer(picked)

    def compute(self):
        """(users [U, d], items [I, d], branch outputs [U+I, d * n_branches])."""
        branches = self._propagate(self._item_inputs())
        all_users = torch.arange(self.n_users, device=branches.device)
        all_items = torch.arange(self.n_users, self.n_users + self.n_items, device=branches.device)
        return (self._fuse(branches, all_users, self.embedding_user_after_GCN),
                self._fuse(branches, all_items, self.embedding_item_after_GCN), branches)

    # --- losses --------------------------------------------------------------------------------
    def _fac(self, branches: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        d = self.latent_dim
        rows = branches[items + self.n_users]
        id_view = self.g_i_iv(rows[:, :d])
        first = self.modalities[0]
        loss = _in_batch_nce(id_view, getattr(self, f"g_{first}_iv")(rows[:, d:2 * d]), self.ssl_temp)
        if len(self.modalities) == 2:
            coarse = self.g_iva_ivat(self.g_iv_iva(id_view))
            loss = loss + _in_batch_nce(coarse, self.g_t_ivat(rows[:, 2 * d:3 * d]), self.ssl_temp)
        return loss

    def _two_view_loss(self, users: torch.Tensor, items: torch.Tensor, mask: bool,
                       dropout: bool) -> torch.Tensor:
        """FD / FM / FD+FM: InfoNCE between two perturbed views of the fused users and items."""
        inputs = self._item_inputs()
        views = []
        if mask:
            masked = torch.randperm(len(inputs), device=self.embedding_user.weight.device)[:2].tolist()
        for v in range(2):
            view_inputs = list(inputs)
            if mask:
                view_inputs[masked[v]] = torch.zeros_like(view_inputs[masked[v]])
            views.append(self._propagate(view_inputs, dropout=dropout))
        item_rows = items + self.n_users
        loss = 0.0
        sides = ((users, self.embedding_user_after_GCN), (item_rows, self.embedding_item_after_GCN))
        for rows, layer in sides:
            a, b = (F.normalize(self._fuse(view, rows, layer), dim=1) for view in views)
            loss = loss + _in_batch_nce(a, b, self.ssl_temp)
        return loss

    def calculate_loss(self, interaction: torch.Tensor) -> torch.Tensor:
        users, pos_items = interaction[0], interaction[1]
        branches = self._propagate(self._item_inputs())
        u = F.normalize(self._fuse(branches, users, self.embedding_user_after_GCN), dim=1)
        i = F.normalize(self._fuse(branches, pos_items + self.n_users, self.embedding_item_after_GCN), dim=1)
        main_loss = _in_batch_nce(u, i, self.temp)
        if self.ssl_task == "FAC":
            ssl = self._fac(branches, pos_items)
        else:
            ssl = self._two_view_loss(users, pos_items, mask="FM" in self.ssl_task,
                                      dropout="FD" in self.ssl_task)
        return main_loss + self.ssl_alpha * ssl

    def full_sort_predict(self, interaction) -> torch.Tensor:
        users, items, _ = self.compute()
        return users[interaction[0]] @ items.T
