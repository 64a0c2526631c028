"""One command's pipeline: data, the grid of hyper-parameter combinations, results; and
:func:`load_run`, which rebuilds a finished run from its best checkpoint.

As MMRec's ``quick_start``: the data and the evaluators are built once; for every combination of the
grid (seed first) the seeds are reset, the model is built (and, with ``motor``, its item ID table is
replaced by MOTOR's before the optimizer exists), trained and evaluated. Unlike MMRec, the best
combination is the one with the best *validation* score (MMRec issue #64 picks it on test).

Under ``torchrun`` (:mod:`mmrec_motor.distributed`) every rank runs this pipeline: rank 0 loads the
data and builds each model first (the files written on first use are written once), every rank trains
its share of the batches and ranks its share of the users, and rank 0 alone logs and writes.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Mapping, NamedTuple, Optional

import numpy as np
import torch

from mmrec_motor.config import Config, grid, grid_note, volatile_defaults
from mmrec_motor.data.dataset import RecData, Split
from mmrec_motor.data.features import load_named, modality_list
from mmrec_motor.data.loader import load_data
from mmrec_motor.data.sampler import BPRSampler
from mmrec_motor.distributed import Ranks, backend_for, current, main_first, setup
from mmrec_motor.evaluation import JointRanking, TopKEvaluator, format_metrics
from mmrec_motor.fileio import UserMetrics, checksum_problem, json_writer, topk_writer, user_metrics_writer, write_all
from mmrec_motor.keys import BEFORE_THE_KEY, run_identity
from mmrec_motor.logs import ALWAYS, get_logger, silent_logger
from mmrec_motor.models import get_model
from mmrec_motor.motor.adapters import item_id_param_count
from mmrec_motor.motor.hook import modality_file_key, motor_setting, motorize, optimizer_param_groups
from mmrec_motor.preflight import check_writable_outputs
from mmrec_motor.progress import GridProgress, result_paths_line
from mmrec_motor.threads import apply_threads
from mmrec_motor.trainer import FitResult, Trainer, TrainingError, init_seed, make_optimizer


def count_parameters(model: torch.nn.Module) -> Dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


def build_model(config: Mapping[str, Any], data: RecData):
    """Construct the backbone; with ``motor``, swap MOTOR in before any optimizer sees the model,
    handing it the modalities' features read by :mod:`mmrec_motor.data.features`.

    Returns ``(model, item_report)``: the item representation's parameter counts (and MOTOR's
    tokenizer statistics when it is on).
    """
    model = get_model(config["model"])(config, data).to(config["device"])
    if config["motor"]:
        names = modality_list(motor_setting(config, "motor_modalities"))
        features = load_named(config, {m: modality_file_key(m) for m in names}, data.n_items)
        report = motorize(model, config, data, features=features)
        item = {"kind": "motor", "params": int(report["item_repr_params_motor"]),
                "id_table_params": int(report["item_repr_params_id"]), "motor": report}
    else:
        params = item_id_param_count(model)
        item = {"kind": "id", "params": int(params), "id_table_params": int(params)}
    return model, item


def build_optimizer(config: Mapping[str, Any], model: torch.nn.Module) -> torch.optim.Optimizer:
    """The ``learner`` over one parameter group, or two with MOTOR's ``motor_learning_rate`` /
    ``motor_weight_decay`` (:func:`mmrec_motor.motor.hook.optimizer_param_groups`)."""
    groups = optimizer_param_groups(model, config, config["learning_rate"], config["weight_decay"] or 0.0)
    return make_optimizer(config, groups)


def evaluator(config: Mapping[str, Any], data: RecData, split: Split,
              excluded_items=None) -> TopKEvaluator:
    """The evaluator of ``split`` with the config's metrics, cut-offs, batch size and device;
    ``excluded_items`` are ranked for no user (:class:`TopKEvaluator`)."""
    return TopKEvaluator(data, split, config["metrics"], config["topk"], config["eval_batch_size"],
                         config["device"], item_chunk=config["eval_item_chunk"], excluded_items=excluded_items)


def split_evaluators(config: Mapping[str, Any], data: RecData):
    """(valid, test, cold test or None) evaluators of a run. The held-out items of the cold-start
    protocol enter the catalogue after validation: the validation evaluator ranks them for no user."""
    valid = evaluator(config, data, data.valid, excluded_items=data.cold_items)
    cold = None if data.cold_test is None else evaluator(config, data, data.cold_test)
    return valid, evaluator(config, data, data.test), cold


def among_held_out_evaluator(config: Mapping[str, Any], data: RecData) -> TopKEvaluator:
    """The evaluator of the held-out items' test rows with only the held-out items ranked (every
    trained item excluded): how well a model orders the held-out items among themselves."""
    trained = np.setdiff1d(np.arange(data.n_items), data.cold_items)
    return evaluator(config, data, data.cold_test, excluded_items=trained)


def cold_metrics(config: Mapping[str, Any], data: RecData, cold: TopKEvaluator,
                 model: torch.nn.Module) -> Dict[str, Any]:
    """The cold-start protocol's scores of ``model`` on the held-out items' test interactions:

    * ``cold_test``: the metrics with every item ranked (training items masked), and
      ``cold_test_mpr``, the held-out items' mean percentile rank;
    * ``cold_test_share``: ``held_out_share@K``, the share of the cold users' top-K slots that
      held-out items take. With ``cold_item_test: all`` (mmrec_motor/data/cold.py) all of a
      held-out item's interactions are test ones, so it has several times a trained item's test
      interactions (4.1 against 0.49 on sports20, seed 999): a model that prefers items without a
      training edge as a group gains ``cold_test`` whatever it knows about them (``own`` keeps
      each item's own test rows, the same on average). Content-kNN's share is near the catalogue share;
    * ``cold_test_among``: the metrics with only the held-out items ranked (every trained item
      excluded), where no group preference helps: how well the model orders the held-out items.
    """
    ranked = cold.rank(model)
    held_out = np.isin(ranked, data.cold_items)
    among = among_held_out_evaluator(config, data)
    return {"cold_test": cold.metrics_of(ranked),
            "cold_test_mpr": cold.mean_percentile_rank(model),
            "cold_test_among": among.evaluate(model),
            "cold_test_share": {f"held_out_share@{k}": round(float(held_out[:, :k].mean()), 4)
                                for k in config["topk"]}}


def checkpoint_path(config: Mapping[str, Any], identity: str) -> Optional[str]:
    """``<checkpoint_dir>/<model>-<dataset>-<id|motor>-<identity>.pth`` (None without a folder)."""
    if not config["checkpoint_dir"]:
        return None
    name = f"{config['model']}-{config['dataset']}-{'motor' if config['motor'] else 'id'}-{identity}.pth"
    return os.path.join(config["checkpoint_dir"], name)


def sampler_of(config: Mapping[str, Any], data: RecData, ranks: Optional[Ranks] = None) -> BPRSampler:
    """The BPR batches of a run, seeded with its ``seed``; under torchrun, this rank's share."""
    ranks = ranks or current()
    return BPRSampler(data.train, data.n_items, config["train_batch_size"], seed=config["seed"],
                      device=config["device"], with_negatives=bool(config["use_neg_sampling"]),
                      rank=ranks.rank, world_size=ranks.world_size)


def run_combination(config: Config, data: RecData, logger: logging.Logger, names, values,
                    valid: TopKEvaluator, test: TopKEvaluator,
                    cold: Optional[TopKEvaluator] = None) -> Dict[str, Any]:
    for name, value in zip(names, values):
        config[name] = value
    init_seed(config["seed"])
    with main_first(current()):       # the token and graph caches: written by rank 0, read by the others
        model, item = build_model(config, data)
    params = count_parameters(model)
    params["item_representation"] = item["params"]
    logger.info(str(model))
    logger.info(f"Parameters: total {params['total']}, trainable {params['trainable']}, item "
                f"representation ({item['kind']}) {item['params']}"
                + (f" (the ID table it replaced had {item['id_table_params']})" if config["motor"] else ""),
                extra=ALWAYS)
    sampler = sampler_of(config, data)
    identity = run_identity(config)
    checkpoint = checkpoint_path(config, identity)
    trainer = Trainer(config, model, logger, build_optimizer(config, model), checkpoint, identity)
    fit: FitResult = trainer.fit(sampler, valid, test, resume=bool(config["resume"]))
    logger.info("best valid result: \n" + format_metrics(fit.best_valid))
    logger.info("test result: \n" + format_metrics(fit.best_test))
    extra = {}
    if cold is not None:          # held-out items only, at the best-valid epoch (the model holds it now)
        extra = cold_metrics(config, data, cold, model)
        logger.info("cold test result (held-out items): \n" + format_metrics(extra["cold_test"])
                    + f"\nmean percentile rank of the held-out test items: {extra['cold_test_mpr']:.4f} "
                      f"(0 = first, 0.5 = random)\nheld-out items ranked among themselves (every trained "
                      f"item excluded): \n" + format_metrics(extra["cold_test_among"])
                    + "\nshare of the cold users' top K taken by held-out items: "
                    + format_metrics(extra["cold_test_share"]))
    return {
        "parameters": dict(zip(names, values)),
        "best_epoch": fit.best_epoch,
        "epochs_run": fit.epochs_run,
        "stopped_early": fit.stopped_early,
        "stopped_on_nan": fit.stopped_on_nan,
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
    ranks = setup(config)
    if ranks.main:
        check_writable_outputs(config)
    logger = get_logger(config) if ranks.main else silent_logger()
    logger.info(apply_threads(config["num_threads"]), extra=ALWAYS)
    if ranks.distributed:
        logger.info(f"torchrun: {ranks.world_size} processes ({distributed_note(config, ranks)})", extra=ALWAYS)
    with main_first(ranks):           # toy is generated on first use: once, by rank 0
        data = load_data(config)
    logger.info(str(data), extra=ALWAYS)
    device = config["device"]
    valid, test, cold = split_evaluators(config, data)
    valid_metric = str(config["valid_metric"]).lower()
    runs: List[Dict[str, Any]] = []
    chosen: Optional[int] = None
    chosen_topk: Optional[np.ndarray] = None
    chosen_users: Optional[UserMetrics] = None
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
            # the model holds its best-valid parameters here
            if config["user_metrics_file"]:
                valid_ranked, test_ranked = JointRanking.rank_both(valid, test, model)
                chosen_users = {"valid": (valid.users, valid.per_user_metrics(valid_ranked)),
                                "test": (test.users, test.per_user_metrics(test_ranked))}
            elif config["topk_file"]:
                test_ranked = test.rank(model)
            if config["topk_file"]:
                chosen_topk = test_ranked
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
                 **({k: best[k] for k in ("cold_test", "cold_test_mpr", "cold_test_among", "cold_test_share")}
                    if "cold_test" in best else {}),
                 "best_epoch": best["best_epoch"]},
        "params": best["params"],
        "item_representation": best["item_representation"],
        "train_seconds_per_epoch": best["train_seconds_per_epoch"],
        "eval_seconds": best["eval_seconds"],
        **({"distributed": {"world_size": ranks.world_size, "backend": backend_for(device),
                            "batches_per_rank": BPRSampler.steps(len(data.train), config["train_batch_size"],
                                                                 ranks.world_size)}}
           if ranks.distributed else {}),
        "config": {k: v for k, v in config.to_dict().items()},
    }
    outputs = []
    if config["topk_file"] and chosen_topk is not None:
        outputs.append((config["topk_file"], topk_writer(test.users, chosen_topk)))
    if config["user_metrics_file"] and chosen_users is not None:
        outputs.append((config["user_metrics_file"], user_metrics_writer(chosen_users)))
    if config["result_file"]:
        outputs.append((config["result_file"], json_writer(result, trailing_newline=False)))
    if ranks.main:
        write_all(outputs)      # only now, after every combination: a failed run leaves no output
        logger.info(result_paths_line(config, logger), extra=ALWAYS)
    return result


def distributed_note(config: Mapping[str, Any], ranks: Ranks) -> str:
    """How the batches are shared, for the log line of a torchrun job."""
    return (f"backend {backend_for(config['device'])}; each trains 1/{ranks.world_size} of every epoch in "
            f"batches of at most {config['train_batch_size']} (train_batch_size), so one step sees up to "
            f"{ranks.world_size * config['train_batch_size']}; only rank 0 logs and writes")


class LoadedRun(NamedTuple):
    """A finished run rebuilt by :func:`load_run`."""

    config: Config
    data: RecData
    model: torch.nn.Module
    checkpoint: Dict[str, Any]      # epoch, valid and test metrics of the best model


def load_run(checkpoint: str, config: Optional[Mapping[str, Any]] = None,
             overrides: Optional[Mapping[str, Any]] = None) -> LoadedRun:
    """Rebuild a finished run from its best checkpoint (as RecBole's ``load_data_and_model``): the
    config the checkpoint stores (``config``, a run's resolved config, e.g. its result file's, for a
    checkpoint written before they stored it), then its data and model as the run built them, the
    model holding the checkpoint's weights. The device is this machine's (``use_gpu`` / ``gpu_id``).
    ``overrides``: keys that replace the stored ones (an evaluation rule such as ``isolated_self_loops``;
    a key that shapes the parameters makes ``load_state_dict`` fail). An evaluation rule that the
    stored config lacks (the run predates it) takes its value from before the rule,
    :data:`~mmrec_motor.keys.BEFORE_THE_KEY`, not today's default; a missing volatile key (one that
    does not change what the run computed) takes overall.yaml's."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{checkpoint} is not a best-model checkpoint")
    problem = checksum_problem(state)
    if problem:
        raise ValueError(f"{checkpoint}: {problem}")
    values = state.get("config") or config
    if values is None:
        raise ValueError(f"{checkpoint} stores no config (written before checkpoints held one); pass the "
                         f"run's config (its result file's 'config')")
    # a run made before a key: an evaluation rule takes its value from before the rule; a key that
    # does not change what a run computes (volatile: test_every_epoch, nan_loss, ...) today's default
    before = {**volatile_defaults(), **BEFORE_THE_KEY}
    missing = {k: v for k, v in before.items() if k not in values}
    run_config = Config.from_dict({**missing, **values, **(overrides or {})})
    apply_threads(run_config["num_threads"])
    data = load_data(run_config)
    init_seed(run_config["seed"])
    model, _ = build_model(run_config, data)
    model.load_state_dict(state["model"])
    return LoadedRun(run_config, data, model, state)
