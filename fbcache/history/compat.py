"""Every use of pytest-benchmark's internals (private or undocumented attributes), in one place.

fbcache leans on pytest-benchmark beyond its documented fixture API (``pedantic``, ``extra_info``,
``group``) and hooks: it swaps the fixture's clock, reads the rounds it recorded, replaces the
session's storage and numbers run files as that storage does. Those names may change in any
release, so no other module touches them; :data:`INTERNALS` lists each, and tests/test_compat.py
builds real pytest-benchmark objects and checks every one, naming the attribute that moved.

It sits in :mod:`fbcache.history`, the lowest layer that needs it: :mod:`fbcache.history.storage`
numbers and caches runs through it and may not import the plugin (a higher layer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from fbcache.errors import BrokenRunError

#: (pytest-benchmark object, attribute, what fbcache does with it); tests/test_compat.py checks each
INTERNALS: tuple[tuple[str, str, str], ...] = (
    ("pytest.Config", "_benchmarksession", "the BenchmarkSession: its storage, save options and compare loading"),
    ("BenchmarkSession", "storage", "replaced by fbcache's AtomicFileStorage for the session"),
    ("BenchmarkSession", "save", "whether the run will be saved (--benchmark-save)"),
    ("BenchmarkSession", "autosave", "whether the run will be saved (--benchmark-autosave)"),
    ("BenchmarkSession", "compare", "--benchmark-compare's runs, set late so they load through fbcache's storage"),
    ("BenchmarkSession", "handle_loading", "loads the runs of --benchmark-compare"),
    ("BenchmarkFixture", "_timer", "the clock pedantic reads: process time, or a replay of interleaved rounds"),
    ("BenchmarkFixture", "stats", "stats.stats.data: the durations pedantic recorded"),
    ("FileStorage", "_next_num", "the next run number, '0007'"),
    ("FileStorage", "_cache", "the runs already loaded, handed to the storage that replaces it"),
)


def benchmark_session(config: Any) -> Any | None:
    """pytest-benchmark's BenchmarkSession of this pytest run (``config._benchmarksession``); None without one."""
    return getattr(config, "_benchmarksession", None)


def session_storage(benchmark_session: Any) -> Any:
    """The storage the session saves to and loads from (``BenchmarkSession.storage``)."""
    return benchmark_session.storage


def set_session_storage(benchmark_session: Any, storage: Any) -> None:
    benchmark_session.storage = storage


def will_save(benchmark_session: Any) -> bool:
    """Whether the session saves its run at the end (``--benchmark-save`` or ``--benchmark-autosave``)."""
    return bool(benchmark_session.save or benchmark_session.autosave)


def load_compared(benchmark_session: Any, compare: Any) -> None:
    """Load the runs of ``--benchmark-compare`` (``compare``: the option's value) as pytest-benchmark's
    configure does, through whatever storage the session has now."""
    benchmark_session.compare = compare
    benchmark_session.handle_loading()


@contextlib.contextmanager
def swapped_timer(benchmark: Any, timer: Callable[[], float], purpose: str) -> Iterator[None]:
    """pytest-benchmark reads its clock from the private ``_timer``: swap it for the calls inside."""
    if not hasattr(benchmark, "_timer"):
        raise BrokenRunError(f"this pytest-benchmark has no timer fbcache can {purpose}")
    original = benchmark._timer
    benchmark._timer = timer
    try:
        yield
    finally:
        benchmark._timer = original


def recorded_seconds(benchmark: Any) -> list[float] | None:
    """The durations the fixture recorded so far (``stats.stats.data``, the live list); None before any."""
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    return None if stats is None else stats.data


def next_run_number(storage: Any) -> str:
    """The number FileStorage gives the next run it saves ('0007'; ``FileStorage._next_num``)."""
    return str(storage._next_num)


def share_loaded_runs(source: Any, target: Any) -> None:
    """``target`` reuses the runs ``source`` already loaded (``FileStorage._cache``). Only spares reading
    them again, so a pytest-benchmark without it still runs (tests/test_compat.py reports it)."""
    if hasattr(source, "_cache"):
        target._cache = source._cache
