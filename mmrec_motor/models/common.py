"""What every backbone shares: the base class (MMRec's ``GeneralRecommender`` interface), the
losses, and the initialisations, written from their definitions."""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn

from mmrec_motor.data.features import load_features
from mmrec_motor.motor.adapters import MOTOR_ATTR


class GeneralRecommender(nn.Module):
    """Base class with MMRec's interface.

    Sets ``n_users``, ``n_items``, ``device``, ``batch_size`` and, for multimodal models
    (``is_multimodal_model``), ``v_feat`` / ``t_feat``: float tensors [n_items, D] on the device, or
    None for a modality whose file is absent. Subclasses implement ``calculate_loss(interaction)``
    (interaction: LongTensor [3, B] of users, positives, negatives) and
    ``full_sort_predict(interaction)`` (interaction[0]: user IDs [B]; returns scores [B, n_items]).
    A backbone whose scores are dot products may also define ``ranking_factors(users)`` -> (user
    vectors [B, d], item vectors [n_items, d]); the evaluator then scores items in chunks
    (:mod:`mmrec_motor.evaluation`, key ``eval_item_chunk``).
    ``has_unused_parameters``: True for a backbone that leaves some parameters out of some steps'
    losses (DistributedDataParallel must then look for them, :mod:`mmrec_motor.distributed`).
    """

    has_unused_parameters = False

    def __init__(self, config: Mapping[str, Any], dataset):
        super().__init__()
        self.n_users, self.n_items = dataset.n_users, dataset.n_items
        self.device = config["device"]
        self.batch_size = config["train_batch_size"]
        self.v_feat = self.t_feat = None
        if config["is_multimodal_model"]:
            features = load_features(config, self.n_items)
            if features["v"] is None and features["t"] is None:
                raise ValueError(
                    f"{type(self).__name__} needs item features, but neither "
                    f"vision_feature_file={config['vision_feature_file']!r} nor text_feature_file="
                    f"{config['text_feature_file']!r} exists in {config['data_path']}/{config['dataset']}")
            if features["v"] is not None:
                self.v_feat = torch.from_numpy(features["v"]).to(self.device)
            if features["t"] is not None:
                self.t_feat = torch.from_numpy(features["t"]).to(self.device)

    def item_rows(self, table: str, items: torch.Tensor) -> torch.Tensor:
        """Rows ``items`` of the item table attribute ``table`` ([len(items), d]). When MOTOR replaced
        that table (the adapter registered its module as ``motor_items`` and made ``table`` a property
        of the model's class, :mod:`mmrec_motor.motor.adapters`), only these rows are computed from
        their tokens, not the whole table."""
        motor = getattr(self, MOTOR_ATTR, None)
        replaced = motor is not None and isinstance(getattr(type(self), table, None), property)
        return motor(items) if replaced else getattr(self, table)[items]

    def pre_epoch_processing(self) -> None:
        """Called before every training epoch (edge dropout, graph resampling, ...)."""

    def post_epoch_processing(self):
        """Called after every training epoch; may return a line to log."""
        return None

    def calculate_loss(self, interaction: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def full_sort_predict(self, interaction) -> torch.Tensor:
        raise NotImplementedError


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor, gamma: float = 1e-10) -> torch.Tensor:
    """-mean log(gamma + sigmoid(pos - neg)), MMRec's ``BPRLoss``."""
    return -torch.log(gamma + torch.sigmoid(pos_scores - neg_scores)).mean()


def emb_loss(*embeddings: torch.Tensor) -> torch.Tensor:
    """MMRec's ``EmbLoss``: the sum of the Frobenius norms (not squared) divided by the batch rows."""
    return sum(torch.linalg.norm(e) for e in embeddings) / embeddings[-1].shape[0]


def xavier_normal_init(module: nn.Module) -> None:
    """For ``model.apply``: xavier-normal Embedding and Linear weights, zero Linear biases."""
    if isinstance(module, (nn.Embedding, nn.Linear)):
        nn.init.xavier_normal_(module.weight)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
