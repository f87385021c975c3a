"""Compiled sessions: compile in an untimed warm-up per cache state, and never inside timed rounds.

:func:`compile_warmup` makes one untimed generation in the cache state about to be timed (uncached,
or a threshold), so whatever that state compiles is compiled there; its duration minus the timed
median is the benchmark's ``compile_s``. :func:`no_recompile` then guards the timed rounds. Two
independent signals, either one fails the benchmark with :class:`~fbcache.errors.BrokenRunError`
(so the run never reaches the history):

- ``torch.compiler.set_stance("fail_on_recompile")`` around the timed rounds: dynamo raises instead
  of converting any frame (a recompile after a guard failure, or a frame never compiled before);
- dynamo's own counters (``stats.unique_graphs``, ``frames.total``) before and after: a new graph or
  converted frame means compilation happened, even where ``set_stance`` is unavailable.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fbcache.backends import DecisionLog
from fbcache.errors import BrokenRunError
from fbcache.history.record import BenchRecord
from fbcache.plugin import timing

RECOMPILE_MARK = "Detected recompile"


@dataclass(frozen=True)
class CompileCounters:
    """Graphs dynamo compiled and frames it converted, so far in this process."""

    graphs: int
    frames: int

    def __sub__(self, other: CompileCounters) -> CompileCounters:
        return CompileCounters(self.graphs - other.graphs, self.frames - other.frames)

    @property
    def any(self) -> bool:
        return self.graphs > 0 or self.frames > 0


def counters() -> CompileCounters:
    from torch._dynamo.utils import counters as dynamo

    return CompileCounters(graphs=int(dynamo["stats"]["unique_graphs"]), frames=int(dynamo["frames"]["total"]))


def _stance(name: str) -> Any:
    import torch

    set_stance = getattr(getattr(torch, "compiler", None), "set_stance", None)
    return set_stance(name) if set_stance is not None else contextlib.nullcontext()


@contextlib.contextmanager
def no_recompile(compile_mode: str, label: str) -> Iterator[None]:
    """Around the timed rounds of one benchmark; does nothing for an eager (``none``) session."""
    if compile_mode == "none":
        yield
        return
    before = counters()
    try:
        with _stance("fail_on_recompile"):
            yield
    except Exception as exc:
        if RECOMPILE_MARK not in str(exc):
            raise
        raise BrokenRunError(f"torch.compile recompiled during the timed rounds of {label}, so its times "
                             f"would include compilation; not recorded ({str(exc).splitlines()[0]})") from exc
    grew = counters() - before
    if grew.any:
        raise BrokenRunError(f"torch.compile compiled {grew.graphs} new graph(s) ({grew.frames} frame(s)) during "
                             f"the timed rounds of {label}, so its times would include compilation; not recorded")


@dataclass(frozen=True)
class WarmUp:
    """The untimed first call of one cache state: how long it took and what it compiled."""

    seconds: float
    compiled: CompileCounters


def compile_warmup(compile_mode: str, device: str, log: DecisionLog, generate: Callable[[], Any]) -> WarmUp | None:
    """One untimed generation in the current cache state (None for an eager session).

    Its decisions are discarded: only timed generations count hits.
    """
    if compile_mode == "none":
        return None
    timing.synchronize(device)
    before = counters()
    log.start_generation()
    started = time.perf_counter()
    try:
        generate()
        timing.synchronize(device)
    finally:
        log.finish_generation()
    return WarmUp(seconds=time.perf_counter() - started, compiled=counters() - before)


def record_warmup(record: BenchRecord, compile_mode: str, warmup: WarmUp | None) -> None:
    """``compile_s``: the warm-up call minus the timed median (the compilation, plus noise, clipped at 0)."""
    record.compile_mode = compile_mode
    if warmup is None:
        return
    record.compile_warmup_s = warmup.seconds
    record.compile_graphs = warmup.compiled.graphs
    median = record.median_s
    record.compile_s = max(0.0, warmup.seconds - median) if median is not None else None
