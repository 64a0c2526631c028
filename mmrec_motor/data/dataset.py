"""Interactions and item features in MMRec's layout, read with validation.

Layout: ``<data_path>/<dataset>/<inter_file_name>`` is a tab-separated file with a header row that has
at least ``userID``, ``itemID`` and ``x_label`` (0 train, 1 valid, 2 test); other columns are ignored.
IDs are 0-based; ``n_users = max userID + 1`` and ``n_items = max itemID + 1`` over all splits, as in
MMRec. With ``filter_out_cod_start_users`` the valid and test rows of users with no training row are
dropped. Feature files: :mod:`mmrec_motor.data.features`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mmrec_motor.data.checks import check_id_space, path_problem, report_duplicates


class DataError(ValueError):
    """Bad input data; the message names the file and what was expected."""


@dataclass
class Split:
    """The (user, item) pairs of one split, int64 arrays of equal length."""

    users: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def matrix(self, n_users: int, n_items: int) -> sp.csr_matrix:
        """Binary user x item CSR matrix (a repeated pair counts once)."""
        data = np.ones(len(self.users), dtype=np.float32)
        mat = sp.csr_matrix((data, (self.users, self.items)), shape=(n_users, n_items))
        mat.data[:] = 1.0
        return mat


@dataclass
class RecData:
    """One dataset: sizes, the three splits, and where it was read from."""

    name: str
    path: str
    n_users: int
    n_items: int
    train: Split
    valid: Split
    test: Split
    # The inductive cold-start protocol (mmrec_motor/data/cold.py, cold_item_ratio > 0): the held-out
    # item IDs, the test rows of those items, and how many users lost every training row (dropped from
    # valid/test); None when the protocol is off. cold_masked (cold_item_test: own): the held-out items'
    # removed train rows, masked at test as training rows are.
    cold_items: Optional[np.ndarray] = None
    cold_test: Optional[Split] = None
    cold_masked: Optional[Split] = None
    cold_dropped_users: Optional[int] = None

    def train_matrix(self) -> sp.csr_matrix:
        return self.train.matrix(self.n_users, self.n_items)

    def inter_matrix(self, form: str = "coo") -> sp.spmatrix:
        """MMRec's ``TrainDataLoader.inter_matrix``: the binary train matrix, ``coo`` or ``csr``."""
        mat = self.train_matrix()
        if form == "coo":
            return mat.tocoo()
        if form == "csr":
            return mat
        raise ValueError(f"inter_matrix form must be 'coo' or 'csr', got {form!r}")

    def __str__(self) -> str:
        n = len(self.train) + len(self.valid) + len(self.test)
        density = n / max(1, self.n_users * self.n_items)
        text = (f"{self.name}: {self.n_users} users, {self.n_items} items, {n} interactions "
                f"(train {len(self.train)}, valid {len(self.valid)}, test {len(self.test)}), "
                f"sparsity {100 * (1 - density):.4f}%")
        if self.cold_items is not None and self.cold_test is not None:
            text += (f"; {len(self.cold_items)} held-out (cold) items, {len(self.cold_test)} test "
                     f"interactions of theirs, {len(np.unique(self.cold_test.users))} users; "
                     f"{self.cold_dropped_users} users left without a training row")
        return text


class PairSet:
    """A set of (user, item) pairs with vectorised membership tests (sorted keys u * n_items + i)."""

    def __init__(self, users: np.ndarray, items: np.ndarray, n_items: int):
        self.n_items = int(n_items)
        self.keys = np.unique(np.asarray(users, np.int64) * self.n_items + np.asarray(items, np.int64))

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Boolean array of the broadcast shape of ``users`` and ``items``."""
        keys = np.asarray(users, np.int64) * self.n_items + np.asarray(items, np.int64)
        if len(self.keys) == 0:
            return np.zeros(keys.shape, dtype=bool)
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return self.keys[pos] == keys


REQUIRED_SPLITS = {0: "train", 1: "valid", 2: "test"}


def dataset_dir(config: Mapping[str, Any]) -> str:
    """``<data_path>/<dataset>``: the folder of a dataset's .inter and feature files."""
    return os.path.join(config["data_path"], config["dataset"])


def load_dataset(config: Mapping[str, Any]) -> RecData:
    """Read and validate ``<data_path>/<dataset>/<inter_file_name>``; see the module docstring."""
    folder = dataset_dir(config)
    if not os.path.isdir(folder):
        raise DataError(f"dataset folder not found: {os.path.abspath(folder)} (data_path="
                        f"{config['data_path']!r}, dataset={config['dataset']!r}); pass "
                        f"--data_path=<folder that contains {config['dataset']}/>")
    path = os.path.join(folder, config["inter_file_name"])
    problem = path_problem(path)
    if problem:
        raise DataError(f"interaction file {os.path.abspath(path)} {problem}; expected a tab-separated "
                        f".inter file")
    if not os.path.isfile(path):
        present = sorted(f for f in os.listdir(folder) if f.endswith(".inter"))
        raise DataError(f"interaction file not found: {os.path.abspath(path)}; .inter files in that "
                        f"folder: {present or 'none'}")
    uid, iid, label = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["inter_splitting_label"]
    sep = config["field_separator"] or "\t"
    try:
        header = pd.read_csv(path, sep=sep, nrows=0).columns.tolist()
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read a header row: {exc}") from exc
    missing = [c for c in (uid, iid, label) if c not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found columns {header} "
                        f"(separator {sep!r}); expected {uid}, {iid}, {label}")
    try:
        df = pd.read_csv(path, sep=sep, usecols=[uid, iid, label])
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse: {exc}") from exc
    if len(df) == 0:
        raise DataError(f"{path}: no interactions")
    if df.isna().any().any():
        bad = df[df.isna().any(axis=1)].index[:5].tolist()
        raise DataError(f"{path}: empty or non-numeric values in {uid}/{iid}/{label}, "
                        f"first data rows {[b + 2 for b in bad]} (line numbers)")
    for column in (uid, iid, label):
        if not pd.api.types.is_integer_dtype(df[column]):
            numeric = pd.to_numeric(df[column], errors="coerce")
            bad = numeric.isna() | (numeric % 1 != 0)
            row = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else 0
            raise DataError(f"{path}: column {column} must hold integers, found {df[column].dtype} "
                            f"(value {str(df[column].iloc[row])!r} at line {row + 2})")
    users = df[uid].to_numpy(np.int64)
    items = df[iid].to_numpy(np.int64)
    labels = df[label].to_numpy(np.int64)
    for name, values in ((uid, users), (iid, items)):
        if len(values) and values.min() < 0:
            row = int(np.argmin(values))
            raise DataError(f"{path}: negative {name} {values[row]} at line {row + 2}; IDs must be "
                            f"0-based non-negative integers")
    bad_labels = sorted(set(np.unique(labels).tolist()) - set(REQUIRED_SPLITS))
    if bad_labels:
        raise DataError(f"{path}: column {label} has values {bad_labels}; expected only 0 (train), "
                        f"1 (valid) and 2 (test)")
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    column, ids, rows, other = (uid, users, n_users, n_items) if n_users >= n_items else \
        (iid, items, n_items, n_users)
    check_id_space(path, column, ids, rows, config.get("embedding_size"), other, config.get("device"),
                   DataError)      # before anything of n_users or n_items rows is allocated
    splits = {}
    train_users = np.unique(users[labels == 0])
    for code, name in REQUIRED_SPLITS.items():
        keep = labels == code
        if code > 0 and config["filter_out_cod_start_users"]:
            keep &= np.isin(users, train_users)
        splits[name] = Split(users[keep], items[keep])
        if not keep.any():
            raise DataError(f"{path}: the {name} split (x_label={code}) is empty"
                            + (" after dropping cold-start users" if code > 0 else ""))
    report_duplicates(path, label, splits, n_items)
    return RecData(str(config["dataset"]), path, n_users, n_items, **splits)
