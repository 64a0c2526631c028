"""Data-parallel training under ``torchrun`` (torch.distributed, DistributedDataParallel).

``torchrun --nproc_per_node=N main.py -m MODEL -d DATASET [--motor]`` starts N processes and gives
each ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. A process whose
``WORLD_SIZE`` is above 1 joins the process group (:func:`setup`): backend ``nccl`` when the run's
device is CUDA (rank r then uses ``cuda:LOCAL_RANK``), ``gloo`` on the CPU. Without torchrun nothing
here changes a run.

What each rank does in a run of world size W (the modules that do it in brackets):

* every rank loads the data and builds the model; rank 0 first, so that the files written on first
  use (the toy dataset, the token and graph caches) are written once and read by the others
  (:func:`main_first`);
* each rank trains on its share of every epoch: the single-process epoch (its order and negatives,
  the same on every rank because the sampler's seed is) is cut into W x S nearly equal batches, S =
  ceil(n_train / (W x train_batch_size)), and rank r takes batches r, r + W, ...: disjoint, together
  the whole epoch, S steps on every rank (:class:`~mmrec_motor.data.sampler.BPRSampler`). A rank's
  batch holds at most ``train_batch_size`` rows, so one optimizer step sees up to W x
  ``train_batch_size`` (PyTorch's convention; ``--train_batch_size`` divided by W keeps the single
  process's step size);
* DDP all-reduces (averages) the gradients; full-graph backbones propagate their whole graph on every
  rank, as in one process (:class:`LossModule`);
* evaluation: rank r scores the evaluator's user batches r, r + W, ... and the top-K lists are
  gathered on every rank, so every rank computes the same metrics (and the same early-stopping
  decision), equal to a single-process evaluation of the same model
  (:class:`~mmrec_motor.evaluation.TopKEvaluator`);
* only rank 0 logs, writes the result and top-K files and the checkpoints; under ``--resume`` every
  rank reads rank 0's training state (the sampler and random generators are the same on all ranks).
"""
from __future__ import annotations

import atexit
import contextlib
import gc
import inspect
import os
from dataclasses import dataclass
from typing import Any, Iterator, List, Mapping

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: ``rank`` of ``world_size`` (``local_rank`` on its machine)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that logs and writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = Ranks()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r}: expected an integer (torchrun sets it)") \
            from None


def ranks_from_env() -> Ranks:
    """The ranks torchrun put in the environment (a single process without them)."""
    ranks = Ranks(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))
    if ranks.world_size < 1 or not 0 <= ranks.rank < ranks.world_size:
        raise ValueError(f"environment: RANK={ranks.rank}, WORLD_SIZE={ranks.world_size}: expected "
                         f"0 <= RANK < WORLD_SIZE")
    return ranks


def current() -> Ranks:
    """The ranks of the initialised process group, else a single process."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    return SINGLE


def backend_for(device: str) -> str:
    """``nccl`` for a CUDA device, ``gloo`` otherwise."""
    return "nccl" if str(device).startswith("cuda") else "gloo"


def setup(config: Any) -> Ranks:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 (once per process) and put a CUDA run
    on ``cuda:LOCAL_RANK`` (``config['device']`` is updated); returns this process's ranks."""
    ranks = ranks_from_env()
    if not ranks.distributed:
        return ranks
    device = str(config["device"])
    if device.startswith("cuda"):
        if ranks.local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={ranks.local_rank} but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s): start at most that many "
                             f"processes per node (--nproc_per_node)")
        device = f"cuda:{ranks.local_rank}"
        config["device"] = device
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device), rank=ranks.rank, world_size=ranks.world_size)
        # leave the group before the interpreter tears down: gloo's threads left running at exit
        # abort a finished rank now and then ("terminate called without an active exception")
        atexit.register(_leave_group)
    return ranks


def _leave_group() -> None:
    """At exit: wait for every rank (rank 0 may still be writing), free what still holds the group
    (the DDP wrapper and its reducer can sit in reference cycles until a collection), then leave it.
    Without the collection and the barrier, 7 of 52 two-process toy jobs on a loaded 2-core machine
    aborted rank 1 at interpreter teardown; with them, 0 of 60."""
    if dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
        gc.collect()


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


@contextlib.contextmanager
def main_first(ranks: Ranks) -> Iterator[None]:
    """Rank 0 runs the block first, the other ranks after it (they read what it wrote)."""
    if not ranks.main:
        barrier(ranks)
    yield
    if ranks.main:
        barrier(ranks)


def gather_objects(obj: Any, ranks: Ranks) -> List[Any]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` in a single process)."""
    if not ranks.distributed:
        return [obj]
    out: List[Any] = [None] * ranks.world_size
    dist.all_gather_object(out, obj)
    return out


def sum_over_ranks(value: float, ranks: Ranks) -> float:
    """The sum of every rank's ``value`` (``value`` itself in a single process)."""
    if not ranks.distributed:
        return value
    on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    total = torch.tensor([value], dtype=torch.float64, device=on)
    dist.all_reduce(total)
    return float(total.item())


class LossModule(torch.nn.Module):
    """``forward(batch)`` = ``model.calculate_loss(batch)``: what DDP wraps, because DDP synchronises
    the gradients of its module's ``forward`` and the backbones' training entry point is
    ``calculate_loss`` (a tuple of losses is summed by the trainer, as in one process)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: torch.Tensor):
        return self.model.calculate_loss(batch)


def data_parallel(model: torch.nn.Module, config: Mapping[str, Any]) -> torch.nn.Module:
    """DDP around :class:`LossModule`. Buffers are not broadcast (every rank built the same ones);
    DDP looks for parameters left out of a step's loss only for a backbone that says it has some
    (``has_unused_parameters``, e.g. LATTICE's feature maps, used when its item graph is built)."""
    device = str(config["device"])
    ids = [torch.device(device).index] if device.startswith("cuda") else None
    ddp = torch.nn.parallel.DistributedDataParallel
    # torch >= 2.13 names it forward_sync_buffers (broadcast_buffers is deprecated there)
    no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters
               else {"broadcast_buffers": False})
    return ddp(LossModule(model), device_ids=ids, **no_sync,
               find_unused_parameters=bool(getattr(model, "has_unused_parameters", False)))
