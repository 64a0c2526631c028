"""One command's pipeline: data, the grid of hyper-parameter combinations, results.

As MMRec's ``quick_start``: the data and the evaluators are built once; for every combination of the
grid (seed first) the seeds are reset, the model is built (and, with ``motor``, its item ID table is
replaced by MOTOR's before the optimizer exists), trained and evaluated. Unlike MMRec, the best
combination is the one with the best *validation* score (MMRec issue #64 picks it on test).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from mmrec_motor.config import Config, ConfigError, available_datasets, grid, grid_note
from mmrec_motor.data.cold import apply_cold_items
from mmrec_motor.data.dataset import RecData, load_dataset
from mmrec_motor.data.sampler import BPRSampler
from mmrec_motor.data.toy import ensure_toy
from mmrec_motor.evaluation import TopKEvaluator, format_metrics
from mmrec_motor.models import get_model
from mmrec_motor.preflight import check_writable_outputs, remove_stale_temporaries
from mmrec_motor.progress import ALWAYS, GridProgress, result_paths_line, setup_logger
from mmrec_motor.threads import apply_threads
from mmrec_motor.trainer import FitResult, Trainer, TrainingError, init_seed

# Keys that do not change what a run computes; left out of the checkpoint identity.
_VOLATILE_KEYS = {"resume", "grid", "result_file", "topk_file", "log_dir", "checkpoint_dir", "num_threads",
                  "device", "gpu_id", "use_gpu", "epochs", "motor_cache_dir", "graph_cache_dir",
                  "checkpoint_every", "data_path"}


def get_logger(config: Config) -> logging.Logger:
    """MMRec-style logger: stdout as ``verbose`` says, everything in ``<log_dir>/<model>-<dataset>-<time>.log``
    (:mod:`mmrec_motor.progress`)."""
    return setup_logger(config)


def count_parameters(model: torch.nn.Module) -> Dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


def _run_identity(config: Config) -> str:
    """A hash of every setting that shapes the run, so a checkpoint is only resumed by its own run."""
    relevant = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_KEYS}
    if not relevant.get("cold_item_ratio"):     # protocol off: the identity of runs from before the key
        relevant.pop("cold_item_ratio", None)
        relevant.pop("cold_item_seed", None)
    return hashlib.sha1(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:12]


def check_output_paths(config: Config) -> None:
    """Fail before any training when ``result_file`` / ``topk_file`` could not be written at the end:
    the nearest existing folder above each must be a writable directory."""
    for key in ("result_file", "topk_file"):
        if not config[key]:
            continue
        path = os.path.abspath(config[key])
        if os.path.isdir(path):
            raise ConfigError(f"config key {key!r} is {config[key]!r}, which is a directory; expected a "
                              f"file path")
        parent = os.path.dirname(path)
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(f"config key {key!r} is {config[key]!r}, but {parent} is not a writable "
                              f"directory; choose another path")


def _temporary(path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return f"{path}.tmp{os.getpid()}"


def _json_to_tmp(path: str, payload: Dict[str, Any]) -> str:
    tmp = _temporary(path)
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, default=str)
    return tmp


def _topk_to_tmp(path: str, users: np.ndarray, ranked: np.ndarray) -> str:
    tmp = _temporary(path)
    table = np.column_stack([users, ranked])
    np.savetxt(tmp, table, fmt="%d", delimiter="\t",
               header="userID\t" + "\t".join(f"top_{i + 1}" for i in range(ranked.shape[1])), comments="")
    return tmp


def write_outputs(outputs: List[Tuple[str, Any]]) -> None:
    """Write every output to a temporary file first, then rename them all: a failure while writing
    leaves none of them (and no temporary file) behind. ``outputs``: (path, writer) where
    ``writer(path)`` returns the temporary file it wrote."""
    done: List[Tuple[str, str]] = []
    try:
        for path, writer in outputs:
            done.append((writer(path), path))
    except BaseException:
        for tmp, _ in done:
            if os.path.exists(tmp):
                os.remove(tmp)
        for path, _ in outputs:
            leftover = f"{path}.tmp{os.getpid()}"
            if os.path.exists(leftover):
                os.remove(leftover)
        raise
    for tmp, path in done:
        os.replace(tmp, path)


def load_data(config: Config) -> RecData:
    """The dataset of ``config`` (generating ``toy`` on first use), with ``cold_item_ratio`` > 0 its
    held-out items moved to test (:mod:`mmrec_motor.data.cold`)."""
    if config["dataset"] == "toy":
        try:
            ensure_toy(config["data_path"])
        except OSError as exc:          # a read-only data_path without toy in it
            raise ConfigError(f"cannot generate the toy dataset in {os.path.abspath(config['data_path'])}: "
                              f"{exc.strerror or exc}; pass --data_path=<a writable folder>") from exc
    elif config["dataset"] not in available_datasets() and not config.dataset_dir.is_dir():
        raise ConfigError(f"unknown dataset {config['dataset']!r}: no configs/dataset/"
                          f"{config['dataset']}.yaml and no folder {config.dataset_dir.resolve()}; "
                          f"available: {', '.join(available_datasets())}, or any folder in MMRec layout "
                          f"under data_path")
    return apply_cold_items(config, load_dataset(config))


def build_model(config: Config, data: RecData):
    """Construct the backbone; with ``motor``, swap MOTOR in before any optimizer sees the model.

    Returns ``(model, item_report)``: the item representation's parameter counts (and MOTOR's
    tokenizer statistics when it is on).
    """
    from mmrec_motor.motor import item_id_param_count, motorize

    model = get_model(config["model"])(config, data).to(config["device"])
    if config["motor"]:
        report = motorize(model, config, data)
        item = {"kind": "motor", "params": int(report["item_repr_params_motor"]),
                "id_table_params": int(report["item_repr_params_id"]), "motor": report}
    else:
        params = item_id_param_count(model)
        item = {"kind": "id", "params": int(params), "id_table_params": int(params)}
    return model, item


def run_combination(config: Config, data: RecData, logger: logging.Logger, names, values,
                    valid: TopKEvaluator, test: TopKEvaluator,
                    cold: Optional[TopKEvaluator] = None) -> Dict[str, Any]:
    for name, value in zip(names, values):
        config[name] = value
    init_seed(config["seed"])
    model, item = build_model(config, data)
    params = count_parameters(model)
    params["item_representation"] = item["params"]
    logger.info(str(model))
    logger.info(f"Parameters: total {params['total']}, trainable {params['trainable']}, item "
                f"representation ({item['kind']}) {item['params']}"
                + (f" (the ID table it replaced had {item['id_table_params']})" if config["motor"] else ""),
                extra=ALWAYS)
    sampler = BPRSampler(data.train, data.n_items, config["train_batch_size"], seed=config["seed"],
                         device=config["device"], with_negatives=bool(config["use_neg_sampling"]))
    identity = _run_identity(config)
    checkpoint = os.path.join(config["checkpoint_dir"], f"{config['model']}-{config['dataset']}-"
                              f"{'motor' if config['motor'] else 'id'}-{identity}.pth") \
        if config["checkpoint_dir"] else None
    trainer = Trainer(config, model, logger, checkpoint_path=checkpoint, identity=identity)
    fit: FitResult = trainer.fit(sampler, valid, test, resume=bool(config["resume"]))
    logger.info("best valid result: \n" + format_metrics(fit.best_valid))
    logger.info("test result: \n" + format_metrics(fit.best_test))
    extra = {}
    if cold is not None:          # held-out items only, at the best-valid epoch (the model holds it now)
        extra["cold_test"] = cold.evaluate(model)
        extra["cold_test_mpr"] = cold.mean_percentile_rank(model)
        logger.info("cold test result (held-out items): \n" + format_metrics(extra["cold_test"])
                    + f"\nmean percentile rank of the held-out test items: {extra['cold_test_mpr']:.4f} "
                      f"(0 = first, 0.5 = random)")
    return {
        "parameters": dict(zip(names, values)),
        "best_epoch": fit.best_epoch,
        "epochs_run": fit.epochs_run,
        "stopped_early": fit.stopped_early,
        "valid": fit.best_valid,
        "test": fit.best_test,
        **extra,
        "params": params,
        "item_representation": item,
        "train_seconds_per_epoch": float(np.mean(fit.train_seconds)) if fit.train_seconds else None,
        "train_seconds": fit.train_seconds,
        "eval_seconds": float(np.mean(fit.eval_seconds)) if fit.eval_seconds else None,
        "checkpoint": checkpoint,
        "_model": model,
    }


def quick_start(config: Config) -> Dict[str, Any]:
    """Run every combination of the grid; returns the result dict that ``result_file`` receives."""
    check_output_paths(config)
    check_writable_outputs(config)
    remove_stale_temporaries(config)
    logger = get_logger(config)
    logger.info(apply_threads(config["num_threads"]), extra=ALWAYS)
    data = load_data(config)
    logger.info(str(data), extra=ALWAYS)
    metrics, topk, device = config["metrics"], config["topk"], config["device"]
    valid = TopKEvaluator(data, data.valid, metrics, topk, config["eval_batch_size"], device)
    test = TopKEvaluator(data, data.test, metrics, topk, config["eval_batch_size"], device)
    cold = None if data.cold_test is None else \
        TopKEvaluator(data, data.cold_test, metrics, topk, config["eval_batch_size"], device)
    valid_metric = str(config["valid_metric"]).lower()
    runs: List[Dict[str, Any]] = []
    chosen: Optional[int] = None
    chosen_topk: Optional[np.ndarray] = None
    combinations = grid(config)
    reduced = grid_note(config, len(combinations))
    if reduced:
        logger.info(reduced, extra=ALWAYS)
    progress = GridProgress(logger, len(combinations), valid_metric)
    for index, (names, values) in enumerate(combinations):
        progress.start(index, dict(zip(names, values)))
        try:
            run = run_combination(config, data, logger, names, values, valid, test, cold)
        except TrainingError as exc:
            if len(combinations) > 1:      # say which combination of the grid failed
                combination = ", ".join(f"{n}={v}" for n, v in zip(names, values))
                raise TrainingError(f"combination {combination}: {exc}") from exc
            raise
        model = run.pop("_model")
        runs.append(run)
        progress.finish(run)
        score = run["valid"].get(valid_metric, -np.inf)
        if chosen is None or score > runs[chosen]["valid"].get(valid_metric, -np.inf):
            chosen = len(runs) - 1
            if config["topk_file"]:
                chosen_topk = test.rank(model)     # the model holds its best-valid parameters here
        logger.info("████Current BEST████:\nParameters: "
                    f"{list(names)}={tuple(runs[chosen]['parameters'].values())},\n"
                    f"Valid: {format_metrics(runs[chosen]['valid'])},\nTest: {format_metrics(runs[chosen]['test'])}\n")
        del model
    logger.info("\n============All Over=====================")
    for run in runs:
        logger.info(f"Parameters: {list(run['parameters'])}={tuple(run['parameters'].values())},\n"
                    f" best valid: {format_metrics(run['valid'])},\n best test: {format_metrics(run['test'])}")
    best = runs[chosen]
    progress.summary(runs, chosen)
    logger.info("\n█████████████ BEST (chosen on validation) ████████████████")
    logger.info(f"\tParameters: {list(best['parameters'])}={tuple(best['parameters'].values())},\n"
                f"Valid: {format_metrics(best['valid'])},\nTest: {format_metrics(best['test'])}\n")
    result = {
        "model": config["model"],
        "dataset": config["dataset"],
        "motor": bool(config["motor"]),
        "device": str(device),
        "data": {"n_users": data.n_users, "n_items": data.n_items, "train": len(data.train),
                 "valid": len(data.valid), "test": len(data.test),
                 **({} if data.cold_items is None else
                    {"cold_items": len(data.cold_items), "cold_test": len(data.cold_test),
                     "cold_test_users": len(cold.users), "cold_dropped_users": data.cold_dropped_users})},
        "valid_metric": valid_metric,
        "combinations": runs,
        "chosen": chosen,
        "best": {"parameters": best["parameters"], "valid": best["valid"], "test": best["test"],
                 **({"cold_test": best["cold_test"], "cold_test_mpr": best["cold_test_mpr"]}
                    if "cold_test" in best else {}),
                 "best_epoch": best["best_epoch"]},
        "params": best["params"],
        "item_representation": best["item_representation"],
        "train_seconds_per_epoch": best["train_seconds_per_epoch"],
        "eval_seconds": best["eval_seconds"],
        "config": {k: v for k, v in config.to_dict().items()},
    }
    outputs = []
    if config["topk_file"] and chosen_topk is not None:
        outputs.append((config["topk_file"], lambda path: _topk_to_tmp(path, test.users, chosen_topk)))
    if config["result_file"]:
        outputs.append((config["result_file"], lambda path: _json_to_tmp(path, result)))
    write_outputs(outputs)      # only now, after every combination: a failed run leaves no output
    logger.info(result_paths_line(config, logger), extra=ALWAYS)
    return result
