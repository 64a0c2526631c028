"""How many CPU threads a run gives torch when ``num_threads`` is not set.

torch starts one OpenMP thread per core, and by default OpenMP threads *spin* while they wait for
work. On a shared machine that is the worst case: with one other CPU-bound job on a 2-core machine,
FREEDOM on toy took 131-188 s with 2 spinning threads, 7-12 s with 2 passive ones and 6.6 s with one
thread (README, "Threads"). So, unless the user decides:

* :func:`prefer_passive_wait` sets ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of
  spinning). OpenMP reads it once, when torch (or faiss) is loaded, so the command line calls this
  before it imports either; a value already in the environment is kept.
* :func:`choose_threads` gives torch the cores that are free now: the cores this process may use
  (CPU affinity, and a cgroup CPU quota where one is set) minus the cores other processes keep busy
  (the larger of the 1-minute load average and the CPU time used by all processes over a short
  sample of ``/proc/stat``), at least 1. The choice is made once per process and kept, so the
  combinations of one grid all run with the same count.

``--num_threads=N`` always wins; without it, an ``OMP_NUM_THREADS`` set in the environment is kept
(torch's own default; the test suite sets it to 1). The count can change the last bits of the results (README,
"Guarantees"); set it for runs that must repeat bit for bit on another machine or load.
"""
from __future__ import annotations

import math
import os
import time
from typing import Optional, Tuple

_SAMPLE_SECONDS = 0.25
_chosen: Optional[Tuple[int, str]] = None


def prefer_passive_wait() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets a policy; call before torch is loaded."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (v2
    ``cpu.max``, v1 ``cpu.cfs_quota_us``), at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def _cgroup_quota() -> Optional[float]:
    """CPUs allowed by the cgroup quota, or None when there is none (or it cannot be read)."""
    candidates = (("/sys/fs/cgroup/cpu.max", None),
                  ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"))
    for first, second in candidates:
        try:
            with open(first, encoding="ascii") as handle:
                fields = handle.read().split()
            if second is not None:
                with open(second, encoding="ascii") as handle:
                    fields += handle.read().split()
            quota, period = fields[0], fields[1]
            if quota in ("max", "-1") or float(quota) <= 0:
                return None
            return float(quota) / float(period)
        except (OSError, ValueError, IndexError):
            continue
    return None


def _cpu_times() -> Optional[Tuple[int, int]]:
    """(busy, total) jiffies of all CPUs from /proc/stat, or None."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)          # idle + iowait
    total = sum(fields[:8])                                           # without guest (counted in user)
    return total - idle, total


def busy_cores(sample_seconds: float = _SAMPLE_SECONDS) -> Tuple[float, str]:
    """How many cores other processes keep busy, and how that was measured (for the log line).

    The larger of the 1-minute load average (slow to notice a job that just started) and the busy
    share of all CPUs over ``sample_seconds`` (this process sleeps meanwhile), in cores."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    busy_now = 0.0
    first = _cpu_times()
    if first is not None and sample_seconds > 0:
        time.sleep(sample_seconds)
        second = _cpu_times()
        if second is not None and second[1] > first[1]:
            share = (second[0] - first[0]) / (second[1] - first[1])
            busy_now = share * (os.cpu_count() or 1)
    return max(load, busy_now), f"load average {load:.2f}, busy now {busy_now:.2f} cores"


def free_threads(cores: int, busy: float) -> int:
    """``cores`` minus the busy ones (rounded to the nearest core), at least 1."""
    return max(1, min(cores, int(cores - busy + 0.5)))


def choose_threads(requested: Optional[int] = None) -> Tuple[int, str]:
    """The thread count for torch and why: ``requested`` when given, else the free cores (see the
    module docstring), measured once per process."""
    global _chosen
    if requested:
        return int(requested), "num_threads"
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.strip().isdigit() and int(env) > 0:
        return int(env), "OMP_NUM_THREADS"
    if _chosen is None:
        cores = usable_cores()
        busy, how = busy_cores() if cores > 1 else (0.0, "one core")
        _chosen = (free_threads(cores, busy), f"{cores} usable core(s), {how}; "
                                              f"--num_threads=N sets it")
    return _chosen


def apply_threads(requested: Optional[int] = None) -> str:
    """Set torch's intra-op threads (``num_threads`` or the free cores); returns the line to log."""
    import torch

    count, why = choose_threads(requested)
    torch.set_num_threads(count)
    policy = os.environ.get("OMP_WAIT_POLICY", "not set")
    return f"threads: {count} ({why}; OMP_WAIT_POLICY {policy})"
