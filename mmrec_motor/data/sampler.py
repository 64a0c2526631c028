"""BPR training batches, vectorised: (user, positive item, one negative item).

As MMRec: each epoch visits every training interaction once in a fresh random order, in batches of
``train_batch_size``; the negative is drawn uniformly from the items that appear in the training
split and is never one of the user's training items. Unlike MMRec (a Python loop per sample), the
negatives of a batch are drawn together and the rejected ones redrawn together until none is left.

Data-parallel (``world_size`` W > 1, :mod:`mmrec_motor.distributed`): every rank draws the same epoch
(same seed), cuts it into W x S batches whose sizes differ by at most one, S = ceil(n / (W x
batch_size)), and yields batches rank, rank + W, ...: disjoint across ranks, together the epoch,
S batches on every rank (DDP needs the same number of steps everywhere), each at most ``batch_size``.
"""
from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import torch

from mmrec_motor.data.dataset import PairSet, Split


class BPRSampler:
    """Iterates over ``LongTensor[3, B]`` batches (users, positives, negatives) on ``device``.

    Args:
        train: the training interactions.
        n_items: number of items (the key space for membership tests).
        batch_size: interactions per batch (the last batch may be smaller).
        seed: seeds the numpy Generator that draws the order and the negatives.
        device: where the batches are put.
        with_negatives: False gives ``[2, B]`` batches (users, positives), for models that sample
            their own negatives or need none (MMRec's ``use_neg_sampling: False``).
        rank, world_size: this process's share of every epoch (module docstring); 0 of 1: all of it.
    """

    def __init__(self, train: Split, n_items: int, batch_size: int, seed: int,
                 device: str = "cpu", with_negatives: bool = True, rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} of world_size {world_size}: expected 0 <= rank < world_size")
        self.rank, self.world_size = int(rank), int(world_size)
        self.users = np.asarray(train.users, dtype=np.int64)
        self.items = np.asarray(train.items, dtype=np.int64)
        self.n_items = int(n_items)
        self.batch_size = int(batch_size)
        self.device = device
        self.with_negatives = with_negatives
        self.candidates = np.unique(self.items)
        self.positives = PairSet(self.users, self.items, self.n_items)
        self.rng = np.random.default_rng(seed)
        if len(self) * self.world_size > len(self.users):
            raise ValueError(f"{len(self.users)} training interactions cannot fill {len(self)} batch(es) on "
                             f"each of {self.world_size} ranks: start fewer processes or raise "
                             f"train_batch_size")
        if self.with_negatives:
            counts = np.bincount(self.positives.keys // self.n_items)   # distinct items: rows may repeat
            if (counts[counts > 0] >= len(self.candidates)).any():
                raise ValueError("a user has interacted with every training item: no negative exists")

    def __len__(self) -> int:
        return self.steps(len(self.users), self.batch_size, self.world_size)

    @staticmethod
    def steps(n_train: int, batch_size: int, world_size: int = 1) -> int:
        """Batches per epoch on each rank: ceil(n_train / (batch_size x world_size))."""
        return -(-int(n_train) // (int(batch_size) * int(world_size)))

    def sample_negatives(self, users: np.ndarray) -> np.ndarray:
        """One negative per user entry, uniform over training items, never a training positive."""
        negatives = self.candidates[self.rng.integers(0, len(self.candidates), size=len(users))]
        redraw = np.flatnonzero(self.positives.contains(users, negatives))
        while len(redraw):
            negatives[redraw] = self.candidates[self.rng.integers(0, len(self.candidates),
                                                                  size=len(redraw))]
            redraw = redraw[self.positives.contains(users[redraw], negatives[redraw])]
        return negatives

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = self.rng.permutation(len(self.users))
        users, items = self.users[order], self.items[order]
        negatives: Optional[np.ndarray] = self.sample_negatives(users) if self.with_negatives else None
        columns = [users, items] + ([negatives] if negatives is not None else [])
        epoch = torch.from_numpy(np.stack(columns)).to(self.device)
        if self.world_size == 1:
            for start in range(0, len(users), self.batch_size):
                yield epoch[:, start:start + self.batch_size]
            return
        bounds = np.linspace(0, len(users), len(self) * self.world_size + 1).round().astype(np.int64)
        for first in range(self.rank, len(bounds) - 1, self.world_size):
            yield epoch[:, bounds[first]:bounds[first + 1]]

    def get_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
