"""Paired bootstrap over users: how much of a gap between two models is the sampling noise of the
split's users, which seeds do not show.

A bench's paired t-test (:func:`mmrec_motor.experiments.report.paired_p_value`) varies the training
seed on one fixed split, so it says nothing of how the evaluated users were drawn. Here each model's
per-user metric values (``m_a[u]``, ``m_b[u]``, e.g. Recall@20 averaged over the seeds of a side) are
resampled by user, the same users for both models:

    rel        = mean_u m_b[u] / mean_u m_a[u] - 1
    rel^(r)    = sum_u c_r[u] m_b[u] / sum_u c_r[u] m_a[u] - 1,   c_r ~ Multinomial(n, 1/n), r = 1..R

and the report gives rel, the 2.5% and 97.5% quantiles of rel^(r) and the share of rel^(r) <= 0, over
the rounds where rel^(r) is defined (a round that draws only users where A scores 0 is left out).

Two splits (valid and test) with overlapping users: :func:`split_gap` resamples the union's users
once per round and computes each split's rel^(r) on the drawn users that the split has, so the gap
``rel_valid - rel_test`` keeps the correlation of a user's two scores.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A relative change with its bootstrap interval: ``value``, ``low`` / ``high`` (2.5% / 97.5%
    quantiles) and ``share_le0`` (the share of rounds where the change is <= 0)."""

    value: float
    low: float
    high: float
    share_le0: float

    def text(self) -> str:
        return (f"{100 * self.value:+.1f}% [{100 * self.low:+.1f}%, {100 * self.high:+.1f}%], "
                f"P(<=0) {self.share_le0:.2f}")


def _interval(value: float, rounds: np.ndarray) -> Interval:
    """The interval of the rounds where the change is defined (NaN: model A's drawn sum was 0)."""
    rounds = rounds[~np.isnan(rounds)]
    low, high = np.quantile(rounds, [0.025, 0.975])
    return Interval(float(value), float(low), float(high), float(np.mean(rounds <= 0)))


def _changes(counts: np.ndarray, m_a: np.ndarray, m_b: np.ndarray) -> np.ndarray:
    """rel^(r) per round, float [resamples]; NaN where model A's drawn sum is 0."""
    num, den = counts @ m_b, counts @ m_a
    return np.divide(num, den, out=np.full(len(den), np.nan), where=den > 0) - 1


def _check_pair(m_a: np.ndarray, m_b: np.ndarray, what: str) -> None:
    if m_a.ndim != 1 or m_a.shape != m_b.shape or m_a.size == 0:
        raise ValueError(f"{what}: expected two non-empty per-user arrays of one shape [n_users], got "
                         f"{m_a.shape} and {m_b.shape}")
    if m_a.sum() <= 0:
        raise ValueError(f"{what}: model A's mean is 0, so a relative change is undefined")


def seed_mean(runs: Sequence[Tuple[np.ndarray, np.ndarray]], what: str = "runs") -> Tuple[np.ndarray, np.ndarray]:
    """(users, each user's value averaged over the runs) from ``[(users int [n], values float [n]), ...]``
    (e.g. one side's seeds); the runs must evaluate the same users in the same order."""
    if not runs:
        raise ValueError(f"{what}: no runs to average")
    users = np.asarray(runs[0][0])
    if any(not np.array_equal(users, u) for u, _ in runs):
        raise ValueError(f"{what}: the runs evaluate different users (a seed-drawn split?)")
    return users, np.mean([np.asarray(v, np.float64) for _, v in runs], axis=0)


#: rounds drawn at once: a block of counts is int64 [250, n_users] (71 MB at full Sports' 35,598 users)
BLOCK = 250


def draw_blocks(n_users: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The bootstrap's counts c_r[u] in blocks of at most :data:`BLOCK` rounds, int64 [rounds, n_users],
    each row summing to n_users; the blocks, stacked, are :func:`draws` (one generator, drawn in order)."""
    if resamples < 1 or n_users < 1:
        raise ValueError(f"resamples and n_users must be >= 1, got {resamples} and {n_users}")
    rng = np.random.default_rng(seed)
    shares = np.full(n_users, 1.0 / n_users)
    for start in range(0, resamples, BLOCK):
        yield rng.multinomial(n_users, shares, size=min(BLOCK, resamples - start))


def draws(n_users: int, resamples: int, seed: int) -> np.ndarray:
    """The bootstrap's counts c_r[u]: int64 [resamples, n_users], each row summing to n_users."""
    return np.concatenate(list(draw_blocks(n_users, resamples, seed)))


def change_interval(m_a: Sequence[float], m_b: Sequence[float], resamples: int = 2000,
                    seed: int = 0) -> Interval:
    """rel of B over A with its paired bootstrap interval (module docstring).

    Args:
        m_a, m_b: float [n_users], the two models' per-user values on the same users, same order.
    """
    m_a, m_b = np.asarray(m_a, np.float64), np.asarray(m_b, np.float64)
    _check_pair(m_a, m_b, "change_interval")
    rounds = [_changes(block, m_a, m_b) for block in draw_blocks(len(m_a), resamples, seed)]
    return _interval(m_b.mean() / m_a.mean() - 1, np.concatenate(rounds))


def split_gap(valid_a: Sequence[float], valid_b: Sequence[float], valid_users: Sequence[int],
              test_a: Sequence[float], test_b: Sequence[float], test_users: Sequence[int],
              resamples: int = 2000, seed: int = 0):
    """(rel on valid, rel on test, rel_valid - rel_test), each an :class:`Interval`, from one
    bootstrap over the union of the two splits' users.

    Args:
        valid_a, valid_b: float [n_valid], per-user values of models A and B on valid;
        valid_users: int [n_valid], the users those values belong to (distinct); test alike.
    """
    arrays = {}
    for name, a, b, users in (("valid", valid_a, valid_b, valid_users), ("test", test_a, test_b, test_users)):
        a, b, users = np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(users, np.int64)
        _check_pair(a, b, f"split_gap ({name})")
        if users.shape != a.shape or len(np.unique(users)) != len(users):
            raise ValueError(f"split_gap ({name}): expected {len(a)} distinct users, got shape {users.shape} "
                             f"with {len(np.unique(users))} distinct")
        arrays[name] = (a, b, users)
    union = np.union1d(arrays["valid"][2], arrays["test"][2])
    rels = {name: b.mean() / a.mean() - 1 for name, (a, b, _) in arrays.items()}
    rounds = {name: [] for name in arrays}
    for block in draw_blocks(len(union), resamples, seed):
        for name, (a, b, users) in arrays.items():
            drawn = block[:, np.searchsorted(union, users)]         # [rounds, n_split_users]
            rounds[name].append(_changes(drawn, a, b))
    rounds = {name: np.concatenate(parts) for name, parts in rounds.items()}
    return (_interval(rels["valid"], rounds["valid"]), _interval(rels["test"], rounds["test"]),
            _interval(rels["valid"] - rels["test"], rounds["valid"] - rounds["test"]))
