"""Memory guard: estimate a large allocation before making it, and fail with a message that says how
much was needed, how much is free, and which config key lowers it (instead of an OOM kill or a CUDA
out-of-memory traceback halfway through a run).

``available_bytes(device)``: on CPU, Linux's ``MemAvailable`` (free memory plus what the page cache can
give back) where ``/proc/meminfo`` exists, else ``SC_PAGE_SIZE * SC_AVPHYS_PAGES`` (free pages only);
on CUDA, ``torch.cuda.mem_get_info`` plus what PyTorch's caching allocator holds reserved but unused.
Tests monkeypatch ``available_bytes``.
"""
from __future__ import annotations

import os
from typing import Callable, Optional, Union

import torch


class ResourceError(RuntimeError):
    """An allocation would not fit in the device's memory; names the size and the key to lower."""


def _cpu_available() -> Optional[int]:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def available_bytes(device: Union[str, torch.device] = "cpu") -> Optional[int]:
    """Free memory on ``device`` in bytes, or None when it cannot be told (then nothing is checked)."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
            cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
            return int(free) + max(int(cached), 0)
        except (RuntimeError, AssertionError):
            return None
    if device.type == "cpu":
        return _cpu_available()
    return None


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def ensure_fits(n_bytes: int, device: Union[str, torch.device], what: str,
                hint: Union[str, Callable[[int], str]]) -> None:
    """Raise :class:`ResourceError` when ``n_bytes`` exceed the memory available on ``device``.

    Args:
        n_bytes: the estimated size of the allocation.
        what: what is allocated, with its shape (``"the evaluation score matrix 4096 x 23033 float32"``).
        hint: how to make it smaller, naming the config key (``"lower eval_batch_size (now 4096) ..."``),
            or a function of the available bytes that returns it.
    """
    free = available_bytes(device)
    if free is None or n_bytes <= free:
        return
    text = hint(free) if callable(hint) else hint
    raise ResourceError(f"{what} needs {format_bytes(n_bytes)} ({n_bytes} bytes) on {device}, but only "
                        f"{format_bytes(free)} ({free} bytes) is available; {text}")


def rows_that_fit(row_bytes: int, rows: int, device: Union[str, torch.device], share: float = 0.5) -> int:
    """The most rows (at most ``rows``) whose ``row_bytes`` each fit in ``share`` of the available memory;
    at least 1 (the caller's ``ensure_fits`` then says whether even one row fits)."""
    free = available_bytes(device)
    if free is None or row_bytes <= 0:
        return rows
    return max(1, min(rows, int(free * share) // row_bytes))
