"""The inductive cold-start protocol: held-out items that training never sees.

With ``cold_item_ratio`` = r > 0 (config key, default 0 = off), :func:`hold_out_items` draws
``round(r * n)`` items (at least one) uniformly at random, without replacement, from the n items that
have at least one interaction in any split, with ``numpy.random.default_rng(cold_item_seed)``
(``cold_item_seed: null`` = the run's first ``seed``). Train and valid keep no row of a held-out item.
What test holds of them is ``cold_item_test``:

* ``all`` (the default): every interaction of a held-out item, in any split, is a test interaction:
  test keeps its own rows of them and gains their train and valid rows (a pair already in test is not
  added twice). A held-out item then has several times a trained item's test interactions (4.1
  against 0.49 on sports20, seed 999), so a model that ranks items without a training edge high as a
  group gains in every test score whatever it knows about them.
* ``own``: test is the dataset's own test split, unchanged. A held-out item's train rows are removed
  from training but still masked at test, as a trained item's are (``cold_masked``, read by
  :class:`~mmrec_motor.evaluation.TopKEvaluator`); its valid rows leave validation and, like a trained
  item's valid rows in MMRec, are not masked at test. Every item then has its own test interactions:
  test is scored exactly as without the protocol, and only training is deprived of the held-out items.

Users left with no training row are then cold-start users: with ``filter_out_cod_start_users`` (the
default) their valid and test rows are dropped, as the loader does for users that never had one.

``n_items`` and the feature rows are unchanged, so a held-out item keeps its row in every table: MOTOR
represents it from its tokens, an ID backbone from an embedding row that no interaction has trained
(the BPR sampler draws negatives only from training items, so it is never a negative either; graph
backbones may still move the row through an item-item feature graph). MOTOR's quantizer is fitted on
the features of all items, held-out ones included (features, not interactions).

The returned :class:`RecData` carries ``cold_items`` (the held-out item IDs, sorted), ``cold_test``
(the test rows of held-out items), ``cold_masked`` (``own`` only: their removed train rows) and
``cold_dropped_users`` (users left without a training row, dropped or not). The held-out items
enter the catalogue after validation: the validation evaluator ranks them for no user
(:func:`~mmrec_motor.quick_start.split_evaluators`), so a model that ranks them high is not charged
for it in the validation score that picks its epoch and combination; test ranks every item.
``quick_start`` evaluates ``cold_test`` with its own
:class:`~mmrec_motor.evaluation.TopKEvaluator` (users with >= 1 held-out test item, every item ranked,
training items masked) and reports it as ``cold_test`` next to ``test``.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Optional

import numpy as np

from mmrec_motor.data.dataset import DataError, RecData, Split
from mmrec_motor.keys import COLD_ITEM_TEST


def _pairs(split: Split, keep: np.ndarray) -> Split:
    return Split(split.users[keep], split.items[keep])


#: the values of ``cold_item_test`` (module docstring); the first is the default
TEST_ROWS = COLD_ITEM_TEST


def hold_out_items(data: RecData, ratio: float, seed: int, drop_cold_users: bool = True,
                   test_rows: str = "all") -> RecData:
    """``data`` with a seeded share ``ratio`` of its interacted items held out (module docstring);
    ``test_rows`` is ``cold_item_test``.

    Raises :class:`DataError` when ``ratio`` is not in [0, 1), ``test_rows`` is not one of
    :data:`TEST_ROWS`, or a split ends up empty.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise DataError(f"config key 'cold_item_ratio' must be a number in [0, 1) (0 = off), got {ratio!r}")
    if test_rows not in TEST_ROWS:
        raise DataError(f"config key 'cold_item_test' is {test_rows!r}; expected 'all' (every interaction "
                        f"of a held-out item is a test one) or 'own' (test keeps its own rows only)")
    if ratio == 0:
        return data
    candidates = np.unique(np.concatenate([data.train.items, data.valid.items, data.test.items]))
    n_cold = max(1, int(round(ratio * len(candidates))))
    if n_cold >= len(candidates):
        raise DataError(f"config key 'cold_item_ratio' = {ratio} holds out {n_cold} of the "
                        f"{len(candidates)} interacted items: nothing is left to train on")
    rng = np.random.default_rng(int(seed))
    cold = np.sort(rng.choice(candidates, size=n_cold, replace=False)).astype(np.int64)

    in_train, in_valid = np.isin(data.train.items, cold), np.isin(data.valid.items, cold)
    train, valid = _pairs(data.train, ~in_train), _pairs(data.valid, ~in_valid)
    if test_rows == "own":
        test, masked = data.test, _pairs(data.train, in_train)
    else:
        test, masked = _moved_to_test(data, in_train, in_valid), None
    has_train = np.zeros(data.n_users, dtype=bool)
    has_train[train.users] = True
    dropped = int(len(np.unique(data.train.users)) - has_train.sum())
    if drop_cold_users:
        valid = _pairs(valid, has_train[valid.users])
        test = _pairs(test, has_train[test.users])
    cold_test = _pairs(test, np.isin(test.items, cold))
    for name, split in (("train", train), ("valid", valid), ("test", test), ("cold test", cold_test)):
        if len(split) == 0:
            raise DataError(f"{data.path}: with cold_item_ratio={ratio} (seed {seed}) the {name} split "
                            f"is empty; lower the ratio or use a larger dataset")
    return replace(data, train=train, valid=valid, test=test, cold_items=cold, cold_test=cold_test,
                   cold_masked=masked, cold_dropped_users=dropped)


def _moved_to_test(data: RecData, in_train: np.ndarray, in_valid: np.ndarray) -> Split:
    """The test split with the flagged train and valid rows added (each pair once, none twice)."""
    moved_users = np.concatenate([data.train.users[in_train], data.valid.users[in_valid]])
    moved_items = np.concatenate([data.train.items[in_train], data.valid.items[in_valid]])
    n = data.n_items
    keys = moved_users * n + moved_items
    keys, first = np.unique(keys, return_index=True)               # each moved pair once
    new = ~np.isin(keys, data.test.users * n + data.test.items)    # and not if test has it already
    return Split(np.concatenate([data.test.users, moved_users[first][new]]),
                 np.concatenate([data.test.items, moved_items[first][new]]))


def cold_item_seed(config: Mapping[str, Any]) -> int:
    """``cold_item_seed``, or the first value of ``seed`` when it is null."""
    seed: Optional[Any] = config["cold_item_seed"] if "cold_item_seed" in config else None
    if seed is None:
        seed = config["seed"]
        if isinstance(seed, (list, tuple)):
            seed = seed[0] if seed else 0
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DataError(f"config key 'cold_item_seed' must be null or an integer, got {seed!r}")
    return int(seed)


def apply_cold_items(config: Mapping[str, Any], data: RecData) -> RecData:
    """:func:`hold_out_items` with the config's ``cold_item_ratio`` / ``cold_item_seed`` /
    ``cold_item_test`` (a no-op at ratio 0 or when the key is absent; ``cold_item_test`` absent or
    null = ``all``, the rule before the key)."""
    ratio = config["cold_item_ratio"] if "cold_item_ratio" in config else None
    if ratio is None or (not isinstance(ratio, bool) and isinstance(ratio, (int, float)) and ratio == 0):
        return data
    if isinstance(ratio, list):
        raise DataError(f"config key 'cold_item_ratio' must be one number (the data are split once per "
                        f"command), got the list {ratio!r}")
    drop = bool(config["filter_out_cod_start_users"]) if "filter_out_cod_start_users" in config else True
    test_rows = config["cold_item_test"] if "cold_item_test" in config else None
    return hold_out_items(data, ratio, cold_item_seed(config), drop_cold_users=drop,
                          test_rows=TEST_ROWS[0] if test_rows is None else test_rows)
