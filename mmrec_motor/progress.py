"""What a run prints about its progress: one line per epoch, "combination k/N" with its parameters and
the time left, the metric table of each combination's best epoch, the grid's summary table and where
the outputs went. Which of these lines reach stdout is the log's business (:mod:`mmrec_motor.logs`:
the short lines are ``BRIEF``, the lines for everyone ``ALWAYS``).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

from mmrec_motor.logs import ALWAYS


def duration(seconds: float) -> str:
    """``4.2s``, ``3m 05s``, ``2h 01m``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def epoch_line(epoch: int, loss: float, train_seconds: float, valid_metric: str,
               score: Optional[float] = None, eval_seconds: Optional[float] = None,
               improved: bool = False) -> str:
    """One epoch in one line: ``epoch 3 training [time: 0.10s, train loss: 0.8595] | valid
    recall@20 0.5600 * | eval 0.01s`` (``*``: the best valid score so far)."""
    line = f"epoch {epoch} training [time: {train_seconds:.2f}s, train loss: {loss:.4f}]"
    if score is not None:
        line += f" | valid {valid_metric} {score:.4f}{' *' if improved else ''}"
        if eval_seconds is not None:
            line += f" | eval {eval_seconds:.2f}s"
    return line


def metric_table(columns: Mapping[str, Mapping[str, float]]) -> str:
    """The metrics of several result dicts as one table: a row per metric, for each dict (valid,
    test, ...) a column per cut-off. ``columns``: ``{'valid': {'recall@5': ...}, 'test': {...}}``."""
    columns = {name: result for name, result in columns.items() if result}
    if not columns:
        return "(no metrics)"
    metrics = list(dict.fromkeys(key.split("@")[0] for result in columns.values() for key in result))
    cutoffs = list(dict.fromkeys(key.split("@")[1] for result in columns.values() for key in result))
    width = 8
    group = width * len(cutoffs)
    head = " " * 10 + "  ".join(f"{name:<{group}}" for name in columns)
    sub = " " * 10 + "  ".join("".join(f"{'@' + k:<{width}}" for k in cutoffs) for _ in columns)
    lines = [head.rstrip(), sub.rstrip()]
    for metric in metrics:
        cells = []
        for result in columns.values():
            cells.append("".join(f"{result[f'{metric}@{k}']:<{width}.4f}" if f"{metric}@{k}" in result
                                 else " " * width for k in cutoffs))
        lines.append((f"{metric:<10}" + "  ".join(cells)).rstrip())
    return "\n".join(lines)


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def parameters_text(parameters: Mapping[str, Any]) -> str:
    """``seed=999, dropout=0.8, reg_weight=1e-05``."""
    return ", ".join(f"{name}={_value(value)}" for name, value in parameters.items()) or "defaults"


class GridProgress:
    """Announces each combination of a grid with an ETA and prints the grid's summary at the end.

    The ETA is the mean wall time of the finished combinations times the number left (unknown before
    the first has finished)."""

    def __init__(self, logger: logging.Logger, total: int, valid_metric: str):
        self.logger, self.total, self.valid_metric = logger, total, valid_metric
        self.began = time.perf_counter()
        self.done: List[float] = []
        self._started = self.began

    def start(self, index: int, parameters: Mapping[str, Any]) -> None:
        """Before combination ``index`` (0-based) trains."""
        self._started = time.perf_counter()
        elapsed = self._started - self.began
        if self.done:
            left = sum(self.done) / len(self.done) * (self.total - index)
            eta = f"elapsed {duration(elapsed)}, about {duration(left)} left"
        else:
            eta = "time left known after the first" if self.total > 1 else ""
        self.logger.info(f"combination {index + 1}/{self.total}: {parameters_text(parameters)}"
                         + (f" ({eta})" if eta else ""), extra=ALWAYS)

    def finish(self, run: Mapping[str, Any]) -> None:
        """After a combination: its best epoch and the full metric table of that epoch (with the
        held-out items' ``cold test`` columns under the cold-start protocol)."""
        seconds = time.perf_counter() - self._started
        self.done.append(seconds)
        run_epochs = run.get("epochs_run")
        stopped = " (stopped early)" if run.get("stopped_early") else ""
        if run.get("stopped_on_nan"):
            stopped = f" (stopped by a NaN loss at {run['stopped_on_nan']})"
        self.logger.info(f"best epoch {run.get('best_epoch')} of {run_epochs}{stopped}, "
                         f"{duration(seconds)}; metrics at the best epoch:\n"
                         + metric_table({"valid": run.get("valid") or {}, "test": run.get("test") or {},
                                         "cold test": run.get("cold_test") or {}}), extra=ALWAYS)

    def summary(self, runs: Sequence[Mapping[str, Any]], chosen: int) -> None:
        """The grid's table (one row per combination, ``*`` = chosen on validation) and the chosen
        combination's full metric table."""
        metric = self.valid_metric
        names = list(dict.fromkeys(name for run in runs for name in run["parameters"]))
        varying = [n for n in names if len({repr(run["parameters"].get(n)) for run in runs}) > 1] or names
        header = ["", "#"] + varying + ["best epoch", "epochs", f"valid {metric}", f"test {metric}",
                                        "s/epoch"]
        rows = []
        for i, run in enumerate(runs):
            per_epoch = run.get("train_seconds_per_epoch")
            rows.append(["*" if i == chosen else "", str(i + 1)]
                        + [_value(run["parameters"].get(n)) for n in varying]
                        + [str(run.get("best_epoch")), str(run.get("epochs_run")),
                           f"{run['valid'].get(metric, float('nan')):.4f}",
                           f"{run['test'].get(metric, float('nan')):.4f}",
                           f"{per_epoch:.2f}" if per_epoch is not None else "-"])
        widths = [max(len(row[c]) for row in [header] + rows) for c in range(len(header))]
        table = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                          for row in [header] + rows)
        best = runs[chosen]
        text = (f"grid: {len(runs)} combination(s) in {duration(time.perf_counter() - self.began)}, "
                f"chosen on valid {metric} (*):\n{table}")
        if len(runs) > 1:        # one combination: its table is just above
            text += (f"\nchosen: {parameters_text(best['parameters'])}, best epoch {best['best_epoch']}:\n"
                     + metric_table({"valid": best["valid"], "test": best["test"]}))
        self.logger.info(text, extra=ALWAYS)


def result_paths_line(config: Mapping[str, Any], logger: logging.Logger) -> str:
    """Where this run's outputs went (log file, result, top-K and per-user metrics files, checkpoints)."""
    parts: Dict[str, Any] = {"log": getattr(logger, "log_path", None), "result": config["result_file"],
                             "top-k": config["topk_file"], "per-user metrics": config["user_metrics_file"],
                             "checkpoints": config["checkpoint_dir"]}
    return "outputs: " + ", ".join(f"{name} {path}" for name, path in parts.items() if path)
