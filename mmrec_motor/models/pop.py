"""Most-popular: the floor every trained backbone must clear.

score(u, i) = c(i), the number of training interactions of item i, the same for every user
(training items are masked by the evaluator, as for every model). Not trained (``req_training:
False``): the runtime evaluates it once. No item ID table, so ``--motor`` is refused.
"""
import numpy as np
import torch
import torch.nn as nn

from mmrec_motor.models.common import GeneralRecommender


class POP(GeneralRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        counts = np.bincount(dataset.train.items, minlength=self.n_items).astype(np.float32)
        self.register_buffer("item_counts", torch.from_numpy(counts).to(self.device))   # (n_items,)
        self.dummy = nn.Parameter(torch.zeros(1))   # an optimizer needs one parameter; never trained

    def calculate_loss(self, interaction: torch.Tensor) -> torch.Tensor:
        return self.dummy.sum() * 0.0

    def full_sort_predict(self, interaction) -> torch.Tensor:
        users = interaction[0]
        return self.item_counts.unsqueeze(0).repeat(len(users), 1)   # the evaluator masks in place
