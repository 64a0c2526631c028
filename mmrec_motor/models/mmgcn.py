"""MMGCN (Wei et al., "MMGCN: Multi-modal Graph Convolution Network for Personalized Recommendation
of Micro-video", ACM MM 2019).

One graph network per modality m over the user-item graph (N = U + I nodes, edges both ways):
    f_m = W_f v_m + b              (I x L_m; image: a Linear to L_v = 256; text: the raw features)
    x^0 = normalize([P_m; f_m])    (N x L_m; P_m [U, L_m] the users' modality preferences)
for each layer l = 1..``gcn_layers`` (3, as MMRec, whose GCN always stacks three layers):
    h^l     = leaky_relu(mean_{j in N(n)} x^{l-1}_j W^l)                       (aggregation, eq. 1)
    x_hat^l = leaky_relu(x^{l-1} W_lin^l + b) + E                              (ID combination, eq. 5)
    x^l     = leaky_relu([h^l || x_hat^l] W_g^l + b)                           (concatenation mode)
with E [N, d] = ``id_embedding``, the joint user + item ID table (users rows [0, U), items [U, N)).
The layers map L_m -> d, then d -> d (d = ``embedding_size``). The output is the mean over the
modalities of x^L; score(u, i) = <out_u, out_{U+i}>.
Loss: BPR -mean log sigmoid(s(u, i+) - s(u, i-)) + reg_weight * (mean E[u]^2 + mean E[U+i]^2 over the
batch rows + sum_m mean P_m^2).

Differences from MMRec's port:
  * ``id_embedding`` is a trainable ``nn.Parameter`` [U+I, d]. In MMRec it is a plain tensor that is
    never registered, so the optimizer never updates it (a frozen random residual). The users'
    modality preferences P_m are likewise trainable here (unregistered and frozen there), as in the
    paper, and each modality's P_m enters the regulariser (MMRec adds only the image one).
  * MMRec sets ``concate = 'False'``, a non-empty string, so its concatenation branch is the one that
    runs; that is the combination implemented here.
  * MMRec reads ``n_layers`` but ignores it; the layer count is ``gcn_layers`` (3 by default).
  * ``full_sort_predict`` recomputes the representations with the current parameters (MMRec ranks
    with the ones cached in the last training forward).
MOTOR replaces the item rows of ``id_embedding`` (JointTableAdapter); it is read once per forward.
"""
import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmrec_motor.models.common import GeneralRecommender
from mmrec_motor.models.graphs import to_sparse_tensor

IMAGE_LATENT_DIM = 256  # MMRec projects the image features to 256 dims and uses text as given


def mean_aggregation_graph(inter: sp.coo_matrix, n_users: int, n_items: int, device) -> torch.Tensor:
    """The row-normalised adjacency D^{-1} A of the user-item graph, (U+I) x (U+I).

    Row n averages node n's neighbours (a node without neighbours gets a zero row).
    """
    rows = np.concatenate([inter.row, inter.col + n_users]).astype(np.int64)
    cols = np.concatenate([inter.col + n_users, inter.row]).astype(np.int64)
    n = n_users + n_items
    degree = np.bincount(rows, minlength=n).astype(np.float32)
    values = 1.0 / degree[rows]
    indices = torch.from_numpy(np.vstack([rows, cols]))
    return to_sparse_tensor(indices, torch.from_numpy(values.astype(np.float32)), (n, n)).to(device)


class _ModalityGCN(nn.Module):
    """MMGCN's graph network of one modality (see the module docstring)."""

    def __init__(self, n_users: int, feat_dim: int, dim: int, latent_dim, n_layers: int):
        super().__init__()
        self.latent_dim = latent_dim
        in_dim = latent_dim if latent_dim else feat_dim
        self.preference = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_users, in_dim)))
        self.project = nn.Linear(feat_dim, latent_dim) if latent_dim else None
        self.conv = nn.ParameterList()
        self.linear = nn.ModuleList()
        self.gate = nn.ModuleList()
        for layer in range(n_layers):
            width = in_dim if layer == 0 else dim
            self.conv.append(nn.Parameter(nn.init.xavier_normal_(torch.empty(width, width))))
            self.linear.append(nn.Linear(width, dim))
            self.gate.append(nn.Linear(width + dim, dim))
            nn.init.xavier_normal_(self.linear[-1].weight)
        nn.init.xavier_normal_(self.gate[0].weight)  # MMRec re-initialises only the first gate

    def forward(self, features: torch.Tensor, adj: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        items = self.project(features) if self.project is not None else features
        x = F.normalize(torch.cat([self.preference, items], dim=0))
        for conv, linear, gate in zip(self.conv, self.linear, self.gate):
            h = F.leaky_relu(torch.sparse.mm(adj, x @ conv))
            x_hat = F.leaky_relu(linear(x)) + ids
            x = F.leaky_relu(gate(torch.cat([h, x_hat], dim=1)))
        return x


class MMGCN(GeneralRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_dim = config["embedding_size"]
        self.reg_weight = config["reg_weight"]
        n_layers = config["gcn_layers"] or 3
        self.adj = mean_aggregation_graph(dataset.inter_matrix(form="coo"), self.n_users, self.n_items,
                                          self.device)
        self.id_embedding = nn.Parameter(
            nn.init.xavier_normal_(torch.empty(self.n_users + self.n_items, self.embedding_dim)))
        self.modalities = []
        if self.v_feat is not None:
            self.v_gcn = _ModalityGCN(self.n_users, self.v_feat.shape[1], self.embedding_dim,
                                      IMAGE_LATENT_DIM, n_layers)
            self.modalities.append(("v_gcn", "v_feat"))
        if self.t_feat is not None:
            self.t_gcn = _ModalityGCN(self.n_users, self.t_feat.shape[1], self.embedding_dim, None, n_layers)
            self.modalities.append(("t_gcn", "t_feat"))

    def forward(self):
        """(representations [U+I, d], the ID table read for this forward)."""
        ids = self.id_embedding
        out = [getattr(self, gcn)(getattr(self, feat), self.adj, ids) for gcn, feat in self.modalities]
        return torch.stack(out).mean(dim=0), ids

    def calculate_loss(self, interaction: torch.Tensor) -> torch.Tensor:
        users, pos, neg = interaction[0], interaction[1] + self.n_users, interaction[2] + self.n_users
        out, ids = self.forward()
        u = out[users]
        diff = (u * out[pos]).sum(1) - (u * out[neg]).sum(1)
        loss = -F.logsigmoid(diff).mean()
        reg = ids[users].pow(2).mean() + torch.cat([ids[pos], ids[neg]]).pow(2).mean()
        for gcn, _ in self.modalities:
            reg = reg + getattr(self, gcn).preference.pow(2).mean()
        return loss + self.reg_weight * reg

    def full_sort_predict(self, interaction) -> torch.Tensor:
        out, _ = self.forward()
        return out[interaction[0]] @ out[self.n_users:].T
