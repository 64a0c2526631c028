"""The ``fm`` variant's pairwise term: the mean elementwise product of an item's tokens over ordered
pairs, from two pooled means (factorization-machine style, no (n, L, d) tensor).

For item i with token embeddings T_i[1..L] (rows in R^d) and pooled mean m_i = mean_j T_i[j]:

    q_i = 1 / (L (L - 1)) sum_{j != k} T_i[j] * T_i[k] = (L m_i^2 - mean_j T_i[j]^2) / (L - 1)

because sum_{j != k} T_i[j] * T_i[k] = (L m_i)^2 - L mean_j T_i[j]^2 (squares elementwise). The
network (:mod:`.tcn`) returns e_i = m_i + W q_i + w: a crossing symmetric in the tokens, without
per-position weights, so it cannot single out an exact token combination. With token dropout L is
each item's count of kept tokens; L - 1 is clamped at 1 (one token: q_i = m_i^2 - m_i^2 = 0).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn


def mean_and_pairs(embedding: nn.Module, table: torch.Tensor, idx: Optional[torch.Tensor] = None,
                   mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(m, q), each (n or len(idx), d): the pooled token mean and the pairwise term of the module
    docstring.

    Args:
        embedding: the :class:`~.token_embedding.TokenEmbedding` whose ``pooled`` reads ``table``.
        table: E_all, (R, d).
        idx: items to compute (None = all).
        mask: token dropout, (n or len(idx), L) of 0/1, or None.
    """
    mean = embedding.pooled(table, idx=idx, mask=mask)
    sq = embedding.pooled(table * table, idx=idx, mask=mask)
    L = (torch.full((1, 1), float(embedding.num_tokens), dtype=table.dtype, device=table.device)
         if mask is None else mask.sum(dim=1, keepdim=True))
    pair = (L * mean * mean - sq) / (L - 1.0).clamp(min=1.0)
    return mean, pair
