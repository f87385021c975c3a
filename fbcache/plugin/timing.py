"""Accelerator synchronisation for the timed region, and CUDA events to cross-check the host timer.

pytest-benchmark reads a host clock before and after the timed call. GPU work is asynchronous,
so the timed call ends with a device synchronisation: the host clock then measures the work, not
the launch. CUDA events around the same call give an independent device-side measurement.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


def clock(name: str) -> Callable[[], float]:
    """The clock of the timed region (``HarnessConfig.clock``): wall time, or the process's CPU time,
    which other jobs sharing the cores of a CPU run do not stretch."""
    return time.process_time if name == "cpu" else time.perf_counter


def is_cuda(device: str) -> bool:
    return str(device).startswith("cuda")


def synchronize(device: str) -> None:
    if is_cuda(device):
        torch.cuda.synchronize(device)


class EventPair:
    """A start/end CUDA event pair; a no-op on CPU."""

    def __init__(self, device: str) -> None:
        self.enabled = is_cuda(device)
        if self.enabled:
            self.start = torch.cuda.Event(enable_timing=True)
            self.end = torch.cuda.Event(enable_timing=True)

    def record_start(self) -> None:
        if self.enabled:
            self.start.record()

    def record_end(self) -> None:
        if self.enabled:
            self.end.record()

    def seconds(self) -> float | None:
        """Elapsed device time; call after the end event has completed (after a synchronize)."""
        return self.start.elapsed_time(self.end) / 1000.0 if self.enabled else None


def reset_peak_memory(device: str) -> None:
    if is_cuda(device):
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: str) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if is_cuda(device) else None


def is_out_of_memory(exc: BaseException) -> bool:
    oom: Any = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or "out of memory" in str(exc).lower()
