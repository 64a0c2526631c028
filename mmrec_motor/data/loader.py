"""``load_data(config)``: a run's dataset, from its config.

``toy`` is generated on first use (:mod:`mmrec_motor.data.toy`); another dataset needs a yaml in
``configs/dataset`` or a folder ``<data_path>/<dataset>`` in MMRec's layout
(:func:`mmrec_motor.data.dataset.load_dataset` reads and checks it); with ``cold_item_ratio`` > 0 its
held-out items are moved to test (:mod:`mmrec_motor.data.cold`). The feature files the run will read
are checked to be readable files here (:func:`mmrec_motor.data.features.check_feature_paths`), before
any model is built.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from mmrec_motor.config import ConfigError, available_datasets
from mmrec_motor.data.cold import apply_cold_items
from mmrec_motor.data.dataset import RecData, dataset_dir, load_dataset
from mmrec_motor.data.features import check_feature_paths
from mmrec_motor.data.toy import ensure_toy


def load_data(config: Mapping[str, Any]) -> RecData:
    """The dataset of ``config`` (module docstring)."""
    folder = dataset_dir(config)
    if config["dataset"] == "toy":
        try:
            ensure_toy(config["data_path"])
        except OSError as exc:          # a read-only data_path without toy in it
            raise ConfigError(f"cannot generate the toy dataset in {os.path.abspath(config['data_path'])}: "
                              f"{exc.strerror or exc}; pass --data_path=<a writable folder>") from exc
    elif config["dataset"] not in available_datasets() and not os.path.isdir(folder):
        raise ConfigError(f"unknown dataset {config['dataset']!r}: no configs/dataset/"
                          f"{config['dataset']}.yaml and no folder {os.path.abspath(folder)}; "
                          f"available: {', '.join(available_datasets())}, or any folder in MMRec layout "
                          f"under data_path")
    data = load_dataset(config)
    check_feature_paths(config)
    return apply_cold_items(config, data)
