"""Cache backends: what one is, how its decisions are counted, and the registry (one file per backend).

Following the diffusers hooks pattern, each backend lives in one file with an ``apply``-style
``enable(threshold, log)`` that installs the library's real cache and wraps its real per-step
decision (nothing here decides anything), and a :class:`BackendSpec` that tells the harness
everything else it needs *before* a model is built: its options, packages, option rules, versions
for ``machine_info``, fingerprint settings and whether its cache can be removed again.

A backend module defines ``SPEC``; a new backend is one new file plus one line in ``BUILTIN``, or a
:func:`register` call (a plugin, a ``conftest.py``, a test). Modules listed here import no heavy
library at import time, so listing the backends (``--help``, ``fbcache agree``) stays cheap.

Hits are counted from the cache's own decision: every backend makes exactly one decision per
denoising step; its wrapper writes down what the decision returned, plus the relative residual
difference it compared against the threshold, in a :class:`DecisionLog`. The decision and the
difference are the cache's; no part of FBCache is recomputed here. A backend whose spec says
``two_stages`` also takes a ``MULTI/SINGLE`` threshold pair, and then decides twice per step: after
the first double-stream block (the step's decision) and after the first single-stream block (noted
with ``single_stream=True``, kept with the same step).
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from fbcache import Registry
from fbcache.config import HarnessConfig, OptionSpec, Threshold, ThresholdPair
from fbcache.errors import BrokenRunError

BUILTIN = (
    "fbcache.backends.diffusers",
    "fbcache.backends.cache_dit",
    "fbcache.backends.nunchaku",
)

#: how a backend whose library is a test stand-in reports that library's version (``versions()[name]``)
STANDIN_PREFIX = "stand-in of "


# ------------------------------------------------------------------------------------ decisions


@dataclass(frozen=True)
class StepDecision:
    """One denoising step as the cache saw it."""

    step: int
    #: relative mean absolute difference of the first-block residual against the last fully
    #: computed step; None when nothing was cached yet (the first step of every generation)
    diff: float | None
    #: True when the cache reused the remaining blocks' residual (the step was skipped)
    hit: bool
    #: threshold pairs only: the second decision of the step, after the first single-stream block
    #: (whether it reused the remaining single-stream blocks' residual, and the difference it compared)
    single_hit: bool | None = None
    single_diff: float | None = None


class DecisionLog:
    """The decisions of the generation in progress, one entry per denoising step."""

    def __init__(self) -> None:
        self._steps: list[StepDecision] = []
        self._pending_diff: float | None = None

    def start_generation(self) -> None:
        self._steps = []
        self._pending_diff = None

    def note_diff(self, diff: float) -> None:
        """Called when the cache compares its difference with the threshold."""
        self._pending_diff = float(diff)

    def note_decision(self, hit: bool, diff: float | None = None, *, single_stream: bool = False) -> None:
        """Called once per step with the cache's verdict; ``diff`` overrides a noted one. With
        ``single_stream`` it is the step's second decision (threshold pairs), after its first."""
        value = diff if diff is not None else self._pending_diff
        self._pending_diff = None
        if not single_stream:
            self._steps.append(StepDecision(step=len(self._steps), diff=value, hit=bool(hit)))
            return
        if not self._steps or self._steps[-1].single_hit is not None:
            raise BrokenRunError(f"a single-stream decision at step {len(self._steps)} without a double-stream "
                                 "decision before it: the cache's two stages are out of step")
        self._steps[-1] = replace(self._steps[-1], single_hit=bool(hit), single_diff=value)

    def finish_generation(self) -> list[StepDecision]:
        steps, self._steps = self._steps, []
        return steps


class ThresholdProbe(float):
    """A float equal to the threshold that writes down the value it is compared with.

    A cache that decides ``diff > self.threshold`` with ``diff`` a Python float asks this class
    first (it subclasses float and overrides the reflected comparison), so the difference the
    cache computed reaches the log without computing it a second time.
    """

    _log: DecisionLog

    def __new__(cls, value: float, log: DecisionLog) -> ThresholdProbe:
        probe = super().__new__(cls, value)
        probe._log = log
        return probe

    def _seen(self, other: object) -> None:
        if isinstance(other, (int, float)):
            self._log.note_diff(float(other))

    def __lt__(self, other: object) -> bool:  # diff > threshold
        self._seen(other)
        return float(self) < other  # type: ignore[operator]

    def __gt__(self, other: object) -> bool:  # diff < threshold
        self._seen(other)
        return float(self) > other  # type: ignore[operator]

    def __le__(self, other: object) -> bool:  # diff >= threshold
        self._seen(other)
        return float(self) <= other  # type: ignore[operator]

    def __ge__(self, other: object) -> bool:  # diff <= threshold
        self._seen(other)
        return float(self) >= other  # type: ignore[operator]

    def __reduce__(self):  # copies and pickles become plain floats
        return (float, (float(self),))


def summarize(steps: list[StepDecision]) -> tuple[int, int]:
    """(hits, computed steps) of one generation (the step's decision: the double-stream one for a pair)."""
    hits = sum(1 for s in steps if s.hit)
    return hits, len(steps) - hits


def single_stream_hits(steps: list[StepDecision]) -> int:
    """Hits of the single-stream decisions of one generation (threshold pairs)."""
    return sum(1 for s in steps if s.single_hit)


def one_threshold(threshold: Threshold, backend: str) -> float:
    """The threshold of a cache that decides once per step; the configuration never gives it a pair."""
    if isinstance(threshold, ThresholdPair):
        raise BrokenRunError(f"the {backend} cache decides once per step and cannot take the pair {threshold:g}")
    return threshold


# ------------------------------------------------------------------------------------ backends


class CacheBackend(Protocol):
    """A cache installed on one pipeline. ``enable``/``disable`` bracket each threshold's rounds."""

    name: str
    #: False once the pipeline carries a cache that cannot be removed
    can_run_uncached: bool

    def enable(self, threshold: Threshold, log: DecisionLog) -> None: ...

    def disable(self) -> None: ...


@contextlib.contextmanager
def cache_at(backend: CacheBackend, threshold: Threshold | None, log: DecisionLog) -> Iterator[None]:
    """The cache on for ``threshold`` (None: uncached, no hooks), and off again afterwards whatever happens."""
    if threshold is None:
        yield
        return
    backend.enable(threshold, log)
    try:
        yield
    finally:
        backend.disable()


def _nothing(config: HarnessConfig) -> None:
    return None


def _no_versions() -> dict[str, str | None]:
    return {}


def _no_settings(config: HarnessConfig) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class BackendSpec:
    """Everything the harness knows about a backend without importing the library behind it."""

    name: str
    #: one line for ``--help`` and the guide's backend table
    summary: str
    #: ``create(pipe, config)`` -> the live backend; imports the library lazily
    create: Callable[[Any, HarnessConfig], CacheBackend]
    #: importable module name -> how to install it; checked before any model is built
    requires: Mapping[str, str] = field(default_factory=dict)
    #: this backend's own ``--fbcache-*`` options; their values are read with ``config.option(spec)``
    options: tuple[OptionSpec, ...] = ()
    #: False: the cache cannot be removed, so the uncached baseline must run first
    removable: bool = True
    #: option rules of this backend alone: raise ConfigError (pure, no environment)
    validate: Callable[[HarnessConfig], None] = _nothing
    #: environment checks beyond ``requires`` (versions, GPU): raise ConfigError
    preflight: Callable[[HarnessConfig], None] = _nothing
    #: library versions recorded in ``machine_info["fbcache"]["versions"]``; a stand-in of the library
    #: reports ``STANDIN_PREFIX + release`` under the backend's name
    versions: Callable[[], dict[str, str | None]] = _no_versions
    #: every setting that changes the cache's behaviour, recorded in the fingerprint
    settings: Callable[[HarnessConfig], dict[str, Any]] = _no_settings
    #: ``--fbcache-compile`` modes under which this cache still decides every step and really skips
    #: blocks; anything else is refused before a model is built, with ``compile_note`` as the reason
    compile_modes: tuple[str, ...] = ("none",)
    compile_note: str = "not verified to work under torch.compile"
    #: whether its library can run here (``fbcache agree``'s default set); None: every ``requires`` importable
    available: Callable[[], bool] | None = None
    #: non-empty: ``fbcache agree --<name>-standin DIR`` puts a stand-in of its library on the path; the help
    standin: str = ""
    #: at thresholds from this one on, the cache reuses every step after the first without comparing
    #: anything: a documented cause when ``fbcache agree`` finds it hitting where another backend computes
    reuses_every_step_from: float | None = None
    #: True: the cache decides twice per step, after the first double-stream block and after the first
    #: single-stream block, and takes a MULTI/SINGLE threshold pair; False: a pair is refused before any
    #: model is built
    two_stages: bool = False

    def installed(self) -> bool:
        if self.available is not None:
            return self.available()
        return all(importlib.util.find_spec(module) is not None for module in self.requires)


def standin_release(version: str | None) -> str | None:
    """The release a stand-in mirrors, from a version recorded as ``STANDIN_PREFIX + ...``; None otherwise."""
    text = str(version or "")
    return text.removeprefix(STANDIN_PREFIX).split(" ")[0] if text.startswith(STANDIN_PREFIX) else None


_REGISTRY: Registry[BackendSpec] = Registry(BUILTIN, "SPEC")
register = _REGISTRY.register
unregister = _REGISTRY.unregister
get = _REGISTRY.get
names = _REGISTRY.names
all_backends = _REGISTRY.all


__all__ = ["BackendSpec", "CacheBackend", "DecisionLog", "StepDecision", "ThresholdProbe", "all_backends", "get",
           "names", "one_threshold", "register", "single_stream_hits", "standin_release", "summarize", "unregister"]
