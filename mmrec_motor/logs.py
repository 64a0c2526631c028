"""The run log, MMRec's way: plain lines to stdout (unless ``verbose: False``) and, with ``log_dir``,
to ``<log_dir>/<model>-<dataset>-<time>.log`` with a time stamp per line."""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Mapping


def get_logger(config: Mapping[str, Any]) -> logging.Logger:
    """The ``mmrec_motor`` logger, its handlers replaced by this run's."""
    logger = logging.getLogger("mmrec_motor")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    if config["verbose"] is not False:
        stream = logging.StreamHandler(sys.stdout)
        stream.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(stream)
    if config["log_dir"]:
        os.makedirs(config["log_dir"], exist_ok=True)
        stamp = time.strftime("%b-%d-%Y-%H-%M-%S")
        path = os.path.join(config["log_dir"], f"{config['model']}-{config['dataset']}-{stamp}.log")
        file_handler = logging.FileHandler(path, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%a %d %b %Y %H:%M:%S"))
        logger.addHandler(file_handler)
    return logger
