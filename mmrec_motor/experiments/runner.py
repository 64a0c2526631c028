"""The one runner of bench and the analyses: trains every run of a plan that has no result yet.

:func:`run_all` goes through the runs in order. A run whose result JSON exists is skipped (so an
interrupted command resumes where it stopped, and adding models or seeds trains only what is new);
``reuse`` may still send a finished run back to training (cold-items: a run without a top-K file that
its checkpoint cannot give; it returns None to train the run again, else a note for the progress
line). Each run trains with ``train(config)`` (the runtime's
:func:`~mmrec_motor.quick_start.quick_start`) on :func:`~mmrec_motor.experiments.plan.run_config`; its
result JSON is written atomically, a failure is written to its error file and the other runs go on.

A progress line per run goes to stderr: ``[3/8] FREEDOM-toy-id-999 ok (2.1s); ~10.5s left``, where the
time left is the mean time of the runs trained so far times the runs still to train.
"""
from __future__ import annotations

import sys
import time
import traceback
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, TextIO

import numpy as np

from mmrec_motor.experiments.plan import run_config, staged_second_stage
from mmrec_motor.experiments.store import RunSpec, load_result, write_error, write_result
from mmrec_motor.progress import duration

Train = Callable[[Any], Dict[str, Any]]
Reuse = Callable[[RunSpec, Dict[str, Any], Callable[[str], None]], Optional[str]]


def progress_line(done: int, total: int, spec: RunSpec, status: str, durations: Sequence[float],
                  remaining: int) -> str:
    """``[3/8] FREEDOM-toy-id-999 ok (2.1s); ~10.5s left`` (time left = mean trained run x runs left)."""
    left = f"~{duration(float(np.mean(durations)) * remaining)} left" if durations else "time left: ?"
    return f"[{done}/{total}] {spec.name} {status}; {left if remaining else 'all done'}"


def run_all(specs: Sequence[RunSpec], out: str, overrides: Mapping[str, Any], train: Train,
            with_topk: bool = False, reuse: Optional[Reuse] = None,
            stream: Optional[TextIO] = None) -> Dict[str, Any]:
    """Train every spec of ``specs`` that has no result in ``out`` (module docstring); ``with_topk``
    also writes each trained run's top-K file. Returns ``{"ran": [names], "skipped": [names],
    "failed": {name: message}}``."""
    stream = sys.stderr if stream is None else stream

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    total = len(specs)
    remaining = sum(load_result(out, s) is None for s in specs)
    ran: List[str] = []
    skipped: List[str] = []
    failed: Dict[str, str] = {}
    durations: List[float] = []
    for done, spec in enumerate(specs, 1):
        result, note = load_result(out, spec), ""
        if result is not None and reuse is not None:
            note = reuse(spec, result, lambda text: say(f"[{done}/{total}] {text}"))
        if result is not None and note is not None:
            skipped.append(spec.name)
            say(f"[{done}/{total}] {spec.name} skipped (result exists{note})")
            continue
        remaining -= result is None
        start = time.perf_counter()
        try:
            write_result(out, spec, train(run_config(out, spec, overrides, with_topk)))
        except Exception as exc:  # noqa: BLE001 - any failure of one run is recorded, the rest go on
            message = f"{type(exc).__name__}: {exc}"
            failed[spec.name] = message
            write_error(out, spec, message + "\n\n" + traceback.format_exc())
            status = f"FAILED ({message.splitlines()[0][:200]})"
        else:
            ran.append(spec.name)
            durations.append(time.perf_counter() - start)
            status = f"ok ({duration(durations[-1])})"
        say(progress_line(done, total, spec, status, durations, remaining))
    return {"ran": ran, "skipped": skipped, "failed": failed}


def finish(outcome: Mapping[str, Any], written: Sequence[str], prefix: str = "wrote") -> int:
    """The closing lines on stderr; the exit status (1 when a run failed)."""
    print(f"{len(outcome['ran'])} run(s) done, {len(outcome['skipped'])} skipped (already done), "
          f"{len(outcome['failed'])} failed; {prefix} {', '.join(written)}", file=sys.stderr)
    for name, message in outcome["failed"].items():
        print(f"FAILED {name}: {message.splitlines()[0]}", file=sys.stderr)
    return 1 if outcome["failed"] else 0


def run_protocol(args: argparse.Namespace, specs: List[RunSpec], overrides: Mapping[str, Any],
                 train, **run_kwargs) -> tuple:
    """``run_all`` over ``specs``, then, for the staged MOTOR search, over its stage 2; returns
    (every spec, the merged outcome)."""
    outcome = run_all(specs, args.out, overrides, train, **run_kwargs)
    search = getattr(args, "motor_search", "staged")
    if getattr(args, "protocol", "defaults") != "tuned" or search == "paired":
        return specs, outcome
    more = staged_second_stage(specs, args.out, overrides, search)
    if more:
        second = run_all(more, args.out, overrides, train, **run_kwargs)
        outcome = {"ran": outcome["ran"] + second["ran"], "skipped": outcome["skipped"] + second["skipped"],
                   "failed": {**outcome["failed"], **second["failed"]}}
    return list(specs) + more, outcome
