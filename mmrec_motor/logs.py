"""The run log, MMRec's way: plain lines to stdout and, with ``log_dir``, to
``<log_dir>/<model>-<dataset>-<time>.log`` with a time stamp per line.

Every log record of a run has an *audience*:

* ``detail`` (the default for a plain ``logger.info``): MMRec's full output, every metric of every
  epoch, the model's structure;
* ``brief`` (``extra=BRIEF``): the short lines that stand in for the detail on the console (one line
  per epoch);
* ``always`` (``extra=ALWAYS``): lines for everyone (the data, the thread count, "combination k/N"
  with its ETA, the metric table of each combination's best epoch, the summary table of the grid).

``verbose`` chooses what stdout shows: unset (``null``, the default) ``brief`` + ``always``; ``True``
``detail`` + ``always`` (MMRec's output); ``False`` nothing (bench and the analyses print their own
progress). The log file always gets ``detail`` + ``always``: everything, whatever ``verbose`` says.
The lines themselves are written by :mod:`mmrec_motor.progress`.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, List, Mapping, Sequence

AUDIENCE = "mmrec_audience"
BRIEF = {AUDIENCE: "brief"}
ALWAYS = {AUDIENCE: "always"}


class _Audience(logging.Filter):
    """Passes the records whose audience is in ``allowed`` (records without one are ``detail``)."""

    def __init__(self, allowed: Sequence[str]):
        super().__init__()
        self.allowed = set(allowed)

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, AUDIENCE, "detail") in self.allowed


def console_audience(verbose: Any) -> List[str]:
    """What stdout shows for a value of ``verbose`` (checked by :mod:`mmrec_motor.keys`)."""
    return {None: ["brief", "always"], True: ["detail", "always"], False: []}[verbose]


def get_logger(config: Mapping[str, Any]) -> logging.Logger:
    """The ``mmrec_motor`` logger, its handlers replaced by this run's: stdout as ``verbose`` says,
    the full log in ``log_dir`` (its path in ``logger.log_path``)."""
    logger = logging.getLogger("mmrec_motor")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.log_path = None              # type: ignore[attr-defined]
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    audience = console_audience(config["verbose"])
    if audience:
        stream = logging.StreamHandler(sys.stdout)
        stream.setFormatter(logging.Formatter("%(message)s"))
        stream.addFilter(_Audience(audience))
        logger.addHandler(stream)
    if config["log_dir"]:
        os.makedirs(config["log_dir"], exist_ok=True)
        stamp = time.strftime("%b-%d-%Y-%H-%M-%S")
        path = os.path.join(config["log_dir"], f"{config['model']}-{config['dataset']}-{stamp}.log")
        file_handler = logging.FileHandler(path, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%a %d %b %Y %H:%M:%S"))
        file_handler.addFilter(_Audience(["detail", "always"]))
        logger.addHandler(file_handler)
        logger.log_path = path          # type: ignore[attr-defined]  (the outputs line says where)
    return logger


def silent_logger() -> logging.Logger:
    """A logger that writes nothing: the runs of torchrun's ranks other than 0
    (:mod:`mmrec_motor.distributed`)."""
    logger = logging.getLogger("mmrec_motor.silent")
    logger.propagate = False
    logger.log_path = None              # type: ignore[attr-defined]
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger
