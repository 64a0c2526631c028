"""The training loop of one hyper-parameter combination, MMRec's way.

Per epoch: ``model.pre_epoch_processing()``; BPR batches with ``zero_grad / calculate_loss / backward
/ (clip_grad_norm) / step``; ``lr_scheduler.step()`` (LambdaLR with factor a ** (epoch / b) for
``learning_rate_scheduler: [a, b]``); ``model.post_epoch_processing()``; every ``eval_step`` epochs,
valid and test evaluation with freshly computed embeddings. Early stopping as MMRec: the valid metric
must strictly improve; after ``stopping_step`` + 1 evaluations in a row without improvement the run
stops. The test metrics reported are those of the best-valid epoch.

:meth:`Trainer.fit` runs the named steps :meth:`~Trainer.resume`, :meth:`~Trainer.train_epoch`,
:meth:`~Trainer.evaluate` (evaluation, early stopping and the best checkpoint) and
:meth:`~Trainer.checkpoint` (the training state every ``checkpoint_every`` epochs).

Under torchrun (:mod:`mmrec_motor.distributed`) each rank trains its share of the batches through
DistributedDataParallel and evaluates its share of the users; only rank 0 writes checkpoints, and a
resume reads rank 0's training state on every rank.

Differences from MMRec, on purpose: a NaN loss raises :class:`TrainingError` naming the epoch and
batch (MMRec logs it and ends training, reporting the best-valid epoch so far; ``nan_loss: stop`` does
that here, with a warning and the place in the run's record); the best model is kept and restored at
the end and saved to ``checkpoint_dir`` together with the run's resolved config
(:func:`mmrec_motor.quick_start.load_run` rebuilds the run from it); with ``resume`` a run continues
from its last per-epoch checkpoint, whose checksum (:mod:`mmrec_motor.fileio`) is verified first.
Each epoch logs one short line (``BRIEF``: loss, valid score, times) beside MMRec's detail
(:mod:`mmrec_motor.logs`).
"""
from __future__ import annotations

import logging
import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import torch

from mmrec_motor.data.sampler import BPRSampler
from mmrec_motor.distributed import current, data_parallel, sum_over_ranks
from mmrec_motor.evaluation import JointRanking, TopKEvaluator, format_metrics
from mmrec_motor.fileio import checksum_problem, remove_stale_temporaries, save_torch
from mmrec_motor.keys import OPTIMIZERS
from mmrec_motor.logs import ALWAYS, BRIEF
from mmrec_motor.progress import epoch_line


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss); the message names the epoch."""


class _NanLossStop(Exception):
    """A non-finite loss under ``nan_loss: stop``; the message is where ("epoch E, batch B")."""


def init_seed(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA), as MMRec's ``init_seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def make_optimizer(config: Mapping[str, Any], groups: List[Dict[str, Any]]) -> torch.optim.Optimizer:
    """The ``learner`` (validated by the config) over parameter ``groups``; the fused kernel where
    torch has one for it and the device (docs/architecture.md, "Speed notes")."""
    optimizer = getattr(torch.optim, OPTIMIZERS[str(config["learner"]).lower()])
    lr = config["learning_rate"]
    try:
        return optimizer(groups, fused=True, lr=lr)
    except (TypeError, RuntimeError, ValueError):
        return optimizer(groups, lr=lr)


def build_scheduler(config: Mapping[str, Any], optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR with factor a ** (epoch / b) for ``learning_rate_scheduler: [a, b]`` (null: [1, 50])."""
    factor, step = (float(v) for v in (config["learning_rate_scheduler"] or [1.0, 50]))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: factor ** (epoch / step))


@dataclass
class FitResult:
    """What one combination's training produced."""

    best_epoch: int = -1
    best_valid_score: float = -math.inf
    best_valid: Dict[str, float] = field(default_factory=dict)
    best_test: Dict[str, float] = field(default_factory=dict)
    epochs_run: int = 0
    train_seconds: List[float] = field(default_factory=list)
    eval_seconds: List[float] = field(default_factory=list)
    losses: List[float] = field(default_factory=list)
    stopped_early: bool = False
    stopped_on_nan: str = ""         # "epoch E, batch B" when nan_loss: stop ended training there


@dataclass
class Progress:
    """Where a fit stands: its result so far, the best model's weights, the evaluations without
    improvement (``cur_step``) and the first epoch still to run."""

    result: FitResult = field(default_factory=FitResult)
    best_state: Optional[Dict[str, torch.Tensor]] = None
    cur_step: int = 0
    start: int = 0


class Trainer:
    """Trains one model with ``optimizer``; ``fit`` returns a :class:`FitResult` and leaves the best
    model loaded. ``identity`` (:func:`mmrec_motor.keys.run_identity`) is stored in the training state,
    so that a resume never continues another run's state."""

    def __init__(self, config: Mapping[str, Any], model: torch.nn.Module, logger: logging.Logger,
                 optimizer: torch.optim.Optimizer, checkpoint_path: Optional[str] = None,
                 identity: Optional[str] = None):
        self.config, self.model, self.logger = config, model, logger
        self.identity = identity
        self.optimizer = optimizer
        self.scheduler = build_scheduler(config, self.optimizer)
        self.clip = config["clip_grad_norm"]
        self.stop_on_nan = str(config["nan_loss"]).lower() == "stop"
        self.valid_metric = str(config["valid_metric"]).lower()
        self.checkpoint_path = checkpoint_path
        self.last_path = checkpoint_path + ".last" if checkpoint_path else None
        self.ranks = current()
        # the training step: the model's loss, or DDP around it (gradients averaged over the ranks)
        self.step_loss = data_parallel(model, config) if self.ranks.distributed else model.calculate_loss

    # ------------------------------------------------------------------------------ the steps

    def fit(self, sampler: BPRSampler, valid: TopKEvaluator, test: TopKEvaluator,
            resume: bool = False) -> FitResult:
        if self.checkpoint_path and self.ranks.main:     # temporaries of killed writers (module fileio)
            remove_stale_temporaries(self.checkpoint_path)
            remove_stale_temporaries(self.last_path)
        progress = self.resume(sampler) if resume else Progress()
        if not self.config["req_training"]:
            return self._evaluate_untrained(valid, test)
        result = progress.result
        joint = JointRanking.of(valid, test)          # valid and test ranked once, where they may be
        for epoch in range(progress.start, self.config["epochs"]):
            if not self.train_epoch(sampler, epoch, result):       # a NaN loss under nan_loss: stop
                break
            if (epoch + 1) % self.config["eval_step"] == 0:
                stop = self.evaluate(epoch, valid, test, progress, joint)
            else:
                stop = False
                line = epoch_line(epoch, result.losses[-1], result.train_seconds[-1], self.valid_metric)
                self.logger.info(line, extra=BRIEF)
            self.checkpoint(epoch, progress, sampler, stop)
            if stop:
                result.stopped_early = True
                self.logger.info(f"+++++Finished training, best eval result in epoch {result.best_epoch}")
                break
        if progress.best_state is not None:
            self.model.load_state_dict(progress.best_state)
        return progress.result

    def resume(self, sampler: BPRSampler) -> Progress:
        """The progress stored in the last training state of this run (model, optimizer, scheduler
        and every random generator restored), or a fresh one when there is none for this run."""
        last = self.last_path
        if not (last and os.path.isfile(last)):
            self.logger.info(f"resume: no checkpoint {last} for this run's settings; starting at epoch 0",
                             extra=ALWAYS)
            return Progress()
        state = self._load_last(last)
        if state is None:
            return Progress()
        try:
            self._restore(state, sampler)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise TrainingError(f"cannot resume from {last}: it does not fit this model ({exc}); delete it "
                                f"to start this run over, or run without --resume") from exc
        self.logger.info(f"resumed from {last} after epoch {state['epoch']}", extra=ALWAYS)
        return Progress(state["result"], state["best_state"], state["cur_step"], state["epoch"] + 1)

    def train_epoch(self, sampler: BPRSampler, epoch: int, result: FitResult) -> bool:
        """One epoch: pre-epoch processing, the batches, the scheduler step, post-epoch processing;
        its seconds and loss go to ``result``. False when a NaN loss ended training (``nan_loss: stop``;
        the epoch is neither evaluated nor counted, as in MMRec)."""
        began = time.perf_counter()
        self.model.pre_epoch_processing()
        try:
            loss = self._train_epoch(sampler, epoch)
        except _NanLossStop as where:
            if not result.best_valid:
                raise TrainingError(f"loss is not finite at {where}, before any evaluation: no model to "
                                    f"keep under nan_loss: stop; lower learning_rate or set clip_grad_norm")
            result.stopped_on_nan = str(where)
            self.logger.warning(f"loss is not finite at {where}: training stops here (nan_loss: stop, MMRec's "
                                f"rule); the best-valid model, epoch {result.best_epoch}, is kept",
                                extra=ALWAYS)
            return False
        self.scheduler.step()
        post_info = self.model.post_epoch_processing()
        seconds = time.perf_counter() - began
        result.train_seconds.append(seconds)
        result.losses.append(loss)
        result.epochs_run = epoch + 1
        self.logger.info(f"epoch {epoch} training [time: {seconds:.2f}s, train loss: {loss:.4f}]")
        if post_info:
            self.logger.info(post_info)
        return True

    def evaluate(self, epoch: int, valid: TopKEvaluator, test: TopKEvaluator, progress: Progress,
                 joint: Optional[JointRanking] = None) -> bool:
        """Valid and test evaluation; a better valid score keeps the model (and saves the best
        checkpoint). True when early stopping ends the run here. The epoch's short line (training and
        valid score) is logged here. Test is evaluated every epoch (MMRec's log), or with
        ``test_every_epoch`` False only when valid improves: the reported test metrics are the same.
        With ``joint`` (:meth:`JointRanking.of` the two, for splits whose lists are the same), valid and
        test come from one ranking of their users."""
        result, log = progress.result, self.logger
        began = time.perf_counter()
        ranked = joint.rank(self.model) if joint else None
        valid_result = joint.valid_metrics(ranked) if joint else valid.evaluate(self.model)
        result.eval_seconds.append(time.perf_counter() - began)
        score = valid_result[self.valid_metric]
        better = score > result.best_valid_score
        test_result = None
        if better or self.config["test_every_epoch"]:
            test_result = joint.test_metrics(ranked) if joint else test.evaluate(self.model)
        log.info(f"epoch {epoch} evaluating [time: {result.eval_seconds[-1]:.2f}s, valid_score: {score:f}]")
        log.info("valid result: \n" + format_metrics(valid_result))
        log.info("test result: \n" + format_metrics(test_result) if test_result is not None else
                 "test result: not evaluated (test_every_epoch False: only at a new best valid score)")
        log.info(epoch_line(epoch, result.losses[-1], result.train_seconds[-1], self.valid_metric, score,
                            result.eval_seconds[-1], better), extra=BRIEF)
        if better:
            progress.cur_step = 0
            result.best_valid_score, result.best_epoch = score, epoch
            result.best_valid, result.best_test = valid_result, test_result
            progress.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self._save_best(progress.best_state, epoch, valid_result, test_result)
            log.info(f"██ {self.config['model']}--Best validation results updated!!!")
            return False
        progress.cur_step += 1
        return progress.cur_step > self.config["stopping_step"]

    def checkpoint(self, epoch: int, progress: Progress, sampler: BPRSampler, stop: bool) -> None:
        """The training state after ``epoch``, every ``checkpoint_every`` epochs and when stopping."""
        every = self.config["checkpoint_every"] or 0
        if self.last_path and self.ranks.main and every and ((epoch + 1) % every == 0 or stop):
            save_torch(self._state(epoch, progress, sampler), self.last_path)

    # ----------------------------------------------------------------------------- the parts

    def _train_epoch(self, sampler: BPRSampler, epoch: int) -> float:
        """The batches of one epoch (this rank's share under torchrun); returns the summed loss of all
        the epoch's batches."""
        self.model.train()
        total = 0.0
        for batch_idx, batch in enumerate(sampler):
            self.optimizer.zero_grad()
            loss = self.step_loss(batch)
            if isinstance(loss, tuple):
                loss = sum(loss)
            if self._not_finite(loss):
                if self.stop_on_nan:
                    raise _NanLossStop(f"epoch {epoch}, batch {batch_idx}")
                raise TrainingError(f"loss is {loss.item()} at epoch {epoch}, batch {batch_idx}; "
                                    f"lower learning_rate or set clip_grad_norm (or nan_loss: stop)")
            loss.backward()
            if self.clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), **self.clip)
            self.optimizer.step()
            total += loss.item()
        return sum_over_ranks(total, self.ranks)       # the epoch's loss, every rank's batches

    def _not_finite(self, loss: torch.Tensor) -> bool:
        """Whether ``loss`` is NaN or infinite; under torchrun with ``nan_loss: stop``, on any rank, so
        that every rank stops at the same batch (one scalar all-reduce a batch, only then)."""
        bad = not bool(torch.isfinite(loss))
        if self.stop_on_nan and self.ranks.distributed:
            return sum_over_ranks(float(bad), self.ranks) > 0
        return bad

    def _evaluate_untrained(self, valid: TopKEvaluator, test: TopKEvaluator) -> FitResult:
        """A model with ``req_training: False`` (POP, ContentKNN): one evaluation, reported as the
        best epoch 0 (no training epoch runs); its checkpoint is saved as a trained model's is."""
        result = FitResult()
        began = time.perf_counter()
        result.best_valid = valid.evaluate(self.model)
        result.eval_seconds.append(time.perf_counter() - began)
        result.best_test = test.evaluate(self.model)
        result.best_valid_score, result.best_epoch = result.best_valid[self.valid_metric], 0
        self.logger.info(f"not trained (req_training: False); valid_score: {result.best_valid_score:f}",
                         extra=ALWAYS)
        self._save_best(self.model.state_dict(), 0, result.best_valid, result.best_test)
        return result

    def _save_best(self, weights, epoch: int, valid: Dict[str, float], test: Dict[str, float]) -> None:
        """The best checkpoint (rank 0): weights, epoch, metrics and the run's resolved config."""
        if self.checkpoint_path and self.ranks.main:
            config = self.config.to_dict() if hasattr(self.config, "to_dict") else dict(self.config)
            save_torch({"model": weights, "epoch": epoch, "valid": valid, "test": test, "config": config},
                       self.checkpoint_path)

    def _state(self, epoch: int, progress: Progress, sampler: BPRSampler) -> dict:
        return {"epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "result": progress.result,
                "best_state": progress.best_state, "cur_step": progress.cur_step,
                "sampler_rng": sampler.get_state(), "torch_rng": torch.get_rng_state(),
                "numpy_rng": np.random.get_state(), "python_rng": random.getstate(), "identity": self.identity,
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}

    def _restore(self, state: dict, sampler: BPRSampler) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        sampler.set_state(state["sampler_rng"])
        # torch.load's map_location moved the generator states to the run's device; the setters
        # take CPU byte tensors.
        torch.set_rng_state(state["torch_rng"].cpu())
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])

    def _load_last(self, last_path: str) -> Optional[dict]:
        """The training state in ``last_path``; None (warning: start over) when it belongs to another
        run; TrainingError when it cannot be read."""
        try:
            state = torch.load(last_path, map_location=self.config["device"], weights_only=False)
        except Exception as exc:
            raise TrainingError(f"cannot resume from {last_path}: the checkpoint is unreadable "
                                f"({type(exc).__name__}: {exc}); delete it to start this run over, or "
                                f"run without --resume") from exc
        if not isinstance(state, dict) or not {"epoch", "model", "optimizer", "result"} <= set(state):
            raise TrainingError(f"cannot resume from {last_path}: not a training-state checkpoint; "
                                f"delete it to start this run over, or run without --resume")
        problem = checksum_problem(state)
        if problem:
            raise TrainingError(f"cannot resume from {last_path}: {problem}; delete it to start this run "
                                f"over, or run without --resume")
        if self.identity is not None and state.get("identity") not in (None, self.identity):
            warnings.warn(f"{last_path} was written by a run with other settings (identity "
                          f"{state.get('identity')!r}, this run {self.identity!r}): not resumed, "
                          f"starting at epoch 0")
            return None
        return state
