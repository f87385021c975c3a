"""Where a threshold becomes a timing: the generations, their clocks, and the two schedules.

Two schedules (the records they give are built in :mod:`fbcache.plugin.records`):

- **interleaved** (default, as asv's ``--interleave-rounds``): the first fbcache benchmark of the
  session times every benchmark's rounds, round 1 of the uncached baseline and of each threshold,
  then round 2, the order rotated by one each round, so a drift of the machine hits all of them
  alike (:func:`run_interleaved`). Each benchmark's test then hands its own recorded times to its
  ``benchmark`` fixture through pytest-benchmark's stats API (:func:`replay`), so the JSON still
  has one benchmark per threshold with its own ``stats.data``; and every cached round records the
  uncached round timed next to it, the partner of its paired speedup (verdicts/stats.py).
- **sequential** (``--fbcache-interleave=false``; and for cache backends that cannot be removed
  and compiled sessions, see ``HarnessConfig.interleaved``): each threshold's rounds back to back
  with ``benchmark.pedantic`` (:func:`run_sequential`).

The timed region is one pipeline call (text encoding, denoising, VAE decode) followed by an
accelerator synchronisation. Everything else - RNG setup, resetting the decision log, moving
images to the host, NaN checks, image metrics, PNG files, the progress line of each generation
(plugin/display.py) - happens outside it.

**Clocks.** pytest-benchmark reads a host clock before and after the timed call. GPU work is
asynchronous, so the timed call ends with a device synchronisation: the host clock then measures
the work, not the launch. CUDA events around the same call give an independent device-side measurement.

**Compiled sessions** compile in an untimed warm-up per cache state, and never inside timed rounds.
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
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fbcache import explain, models
from fbcache.backends import DecisionLog, StepDecision, summarize
from fbcache.config import Threshold
from fbcache.errors import BrokenRunError, NaNImageError
from fbcache.history import UNCACHED, compat, label_of
from fbcache.metrics import all_finite, to_uint8_images
from fbcache.plugin import machine
from fbcache.plugin.display import Progress
from fbcache.plugin.session import FBCacheSession

# ------------------------------------------------------------------------------------------ clocks


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


def out_of_memory(exc: BaseException, where: str, resolution: str, steps: int) -> BrokenRunError | None:
    """A GPU out-of-memory error as a broken run, once what the failed generation held is freed (else None)."""
    if not is_out_of_memory(exc):
        return None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return BrokenRunError(f"out of GPU memory {where} ({resolution}, {steps} steps): {str(exc).splitlines()[0]}")


# ------------------------------------------------------------------------------- compiled sessions


RECOMPILE_MARK = "Detected recompile"


@dataclass(frozen=True)
class CompileCounters:
    """Graphs dynamo compiled and frames it converted, so far in this process; and inductor's FX graph cache
    lookups (hits, misses, bypasses), which tell a warm compilation from a cold one (plugin/compile_cache.py)."""

    graphs: int
    frames: int
    cache_hits: int = 0
    cache_misses: int = 0
    cache_bypasses: int = 0

    def __sub__(self, other: CompileCounters) -> CompileCounters:
        return CompileCounters(self.graphs - other.graphs, self.frames - other.frames,
                               self.cache_hits - other.cache_hits, self.cache_misses - other.cache_misses,
                               self.cache_bypasses - other.cache_bypasses)

    @property
    def any(self) -> bool:
        return self.graphs > 0 or self.frames > 0


def counters() -> CompileCounters:
    from torch._dynamo.utils import counters as dynamo

    inductor = dynamo["inductor"]
    return CompileCounters(graphs=int(dynamo["stats"]["unique_graphs"]), frames=int(dynamo["frames"]["total"]),
                           cache_hits=int(inductor["fxgraph_cache_hit"]),
                           cache_misses=int(inductor["fxgraph_cache_miss"]), cache_bypasses=int(inductor["fxgraph_cache_bypass"]))


@contextlib.contextmanager
def no_recompile(compile_mode: str, label: str) -> Iterator[None]:
    """Around the timed rounds of one benchmark; does nothing for an eager (``none``) session."""
    if compile_mode == "none":
        yield
        return
    before = counters()
    try:
        with models.compile_stance("fail_on_recompile"):
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
    synchronize(device)
    before = counters()
    log.start_generation()
    started = time.perf_counter()
    try:
        generate()
        synchronize(device)
    finally:
        log.finish_generation()
    return WarmUp(seconds=time.perf_counter() - started, compiled=counters() - before)


# ------------------------------------------------------------------------------------- generations


#: timed images kept per benchmark (the first and second go to disk; NaN is checked on every one)
_KEPT_IMAGES = 2


@dataclass
class Rounds:
    """What each generation left behind, warm-up rounds included, in call order."""

    images: list[torch.Tensor] = field(default_factory=list)
    decisions: list[list[StepDecision]] = field(default_factory=list)
    events: list[EventPair] = field(default_factory=list)
    machine_state: dict[str, Any] = field(default_factory=dict)
    #: the highest allocator peak of the timed generations (None off CUDA, or before any timed round)
    peak_memory_bytes: int | None = None
    #: the untimed profiled generation and FLOPs count after the timed rounds (None when both are off)
    explained: explain.Explained | None = None

    def add_peak(self, peak: int | None) -> None:
        if peak is not None:
            self.peak_memory_bytes = max(peak, self.peak_memory_bytes or 0)

    def keep(self, images: torch.Tensor, where: str, timed: bool) -> None:
        """One generation's images, after its clock stopped: checked for NaN, and the first timed ones kept on
        the host, so that no image held on the GPU counts in a later generation's peak."""
        if not all_finite(images):
            raise NaNImageError(f"{where} produced NaN/Inf pixels")
        if timed and len(self.images) < _KEPT_IMAGES:
            self.images.append(images.detach().cpu())


def generate_once(session: FBCacheSession, generator: torch.Generator, prompt_index: int | None = None) -> torch.Tensor:
    config, model = session.config, session.model
    prompt = None if prompt_index is None else config.case(prompt_index).text

    def call() -> torch.Tensor:
        return model.pipe(
            height=config.height, width=config.width, num_inference_steps=config.steps, generator=generator,
            output_type="pt", **model.kwargs_for(prompt),
        ).images

    if session.cold_start_s is not None:
        return call()
    # the session's first generation, whichever schedule makes it: its synchronised wall time is the cold start
    synchronize(config.device)
    started = time.perf_counter()
    images = call()
    synchronize(config.device)
    session.cold_start_s = time.perf_counter() - started
    return images


def uncached_image(session: FBCacheSession, prompt_index: int | None = None) -> np.ndarray:
    """The uncached image of this prompt and seed, untimed."""
    seed = session.config.case(prompt_index).seed
    images = generate_once(session, torch.Generator("cpu").manual_seed(seed), prompt_index)
    if not all_finite(images):
        raise NaNImageError("the uncached reference image has NaN/Inf pixels")
    return to_uint8_images(images)[0]


def cached_image(session: FBCacheSession, threshold: float,
                 prompt_index: int | None = None) -> tuple[list[StepDecision], np.ndarray]:
    """One untimed generation of this prompt and seed with the cache at ``threshold``: the cache's decision
    per step, and the image (``fbcache tune``'s probes)."""
    config, backend = session.config, session.backend
    log = DecisionLog()
    backend.enable(threshold, log)
    try:
        log.start_generation()
        images = generate_once(session, torch.Generator("cpu").manual_seed(config.case(prompt_index).seed), prompt_index)
        decisions = log.finish_generation()
    finally:
        backend.disable()
    if not all_finite(images):
        raise NaNImageError(f"{label_of(threshold, prompt_index)}: the generation has NaN/Inf pixels")
    return decisions, to_uint8_images(images)[0]


def _sweep_progress(session: FBCacheSession, benchmarks: int, schedule: str) -> Progress:
    """The session's progress counter, started; the first benchmark to ask sets the sweep's generation count."""
    config = session.config
    progress = session.progress(max(1, benchmarks) * (config.warmup_rounds + config.rounds))
    progress.start(f"{benchmarks} benchmarks x ({config.warmup_rounds} warm-up + {config.rounds} rounds), {schedule}")
    return progress


def explain_benchmark(session: FBCacheSession, threshold: Threshold | None, prompt_index: int | None,
                      timed: list[StepDecision] | None) -> explain.Explained | None:
    """After a benchmark's timed rounds, untimed: its profiled generation and its FLOPs count, each if asked
    for (fbcache/explain.py); the count is shared with the run's benchmarks whose ``timed`` round hit at the
    same steps. A profile during which torch.compile compiled is dropped: its times hold the compilation."""
    config = session.config
    if not (config.breakdown or config.flops):
        return None
    seed = config.case(prompt_index).seed
    label = label_of(threshold, prompt_index)
    before = counters() if config.compile != "none" else None
    found = explain.explain_benchmark(
        session.model.pipe, session.backend, threshold,
        lambda: generate_once(session, torch.Generator("cpu").manual_seed(seed), prompt_index),
        config.device, clock(config.clock), config.compile, config.breakdown, config.flops,
        session.flops_memo, None if timed is None else explain.work_of(threshold, timed), label)
    line = found.line(label)
    session.note_explained(found.cost_s, found.generations, found.flops_from is not None)
    if before is not None and (counters() - before).any and found.profile:
        found.profile = {}
        line += "; profile dropped: torch.compile compiled during it"
    if session.progress_write is not None:
        session.progress_write(line)
    return found


# -------------------------------------------------------------------------------------- sequential


def _time_generations(benchmark: Any, session: FBCacheSession, log: DecisionLog,
                      prompt_index: int | None = None, threshold: Threshold | None = None) -> Rounds:
    config = session.config
    seed = config.case(prompt_index).seed
    device = config.device
    rounds = Rounds()
    progress = _sweep_progress(session, len(session.health.expected), "sequential")
    now = clock(config.clock)
    span: dict[str, Any] = {"started": 0.0}

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        synchronize(device)
        reset_peak_memory(device)  # before pedantic starts its timer: each round's own peak
        log.start_generation()
        pair = EventPair(device)
        rounds.events.append(pair)
        span["started"] = now()
        # a CPU generator gives the same initial noise on every device
        return (torch.Generator("cpu").manual_seed(seed), pair), {}

    def generate(generator: torch.Generator, pair: EventPair) -> torch.Tensor:
        pair.record_start()
        images = generate_once(session, generator, prompt_index)
        pair.record_end()
        synchronize(device)
        span["images"] = images
        return images

    def teardown(generator: torch.Generator, pair: EventPair) -> None:
        ended = now()
        rounds.decisions.append(log.finish_generation())
        # after pedantic stopped its timer: the recorded time of a timed round, the span of a warm-up
        finished = len(rounds.decisions)
        warmup = finished <= config.warmup_rounds
        rounds.keep(span.pop("images"), f"{label_of(threshold, prompt_index)}: generation {finished}", not warmup)
        recorded = compat.recorded_seconds(benchmark)
        seconds = ended - span["started"] if warmup or not recorded else float(recorded[-1])
        hits = None if threshold is None else summarize(rounds.decisions[-1])[0]
        if not warmup:
            rounds.add_peak(peak_memory_bytes(device))
        number = finished if warmup else finished - config.warmup_rounds
        progress.generation(threshold, prompt_index, warmup, number,
                            config.warmup_rounds if warmup else config.rounds, seconds, hits, config.steps)

    timer = (compat.swapped_timer(benchmark, clock(config.clock), "time rounds with the process's CPU time through; "
                                  "run with --fbcache-clock wall") if config.clock == "cpu" else contextlib.nullcontext())
    with timer:
        benchmark.pedantic(generate, setup=setup, teardown=teardown, rounds=config.rounds,
                           warmup_rounds=config.warmup_rounds, iterations=1)
    if "images" in span:  # --benchmark-disable: one call, no teardown
        rounds.decisions.append(log.finish_generation())
        rounds.keep(span.pop("images"), f"{label_of(threshold, prompt_index)}: generation 1", True)
    return rounds


def run_sequential(benchmark: Any, session: FBCacheSession, threshold: Threshold | None,
                   prompt_index: int | None) -> tuple[Rounds, WarmUp | None]:
    """One benchmark's rounds back to back through ``benchmark.pedantic``, the cache set for ``threshold``
    (``None``: uncached), after the untimed warm-up of a compiled session."""
    config = session.config
    backend = session.backend
    log = DecisionLog()
    label = UNCACHED if threshold is None else f"threshold {threshold:g}"
    try:
        if threshold is not None:
            backend.enable(threshold, log)
        warmup = compile_warmup(config.compile, config.device, log, lambda: generate_once(
            session, torch.Generator("cpu").manual_seed(config.case(prompt_index).seed), prompt_index))
        with no_recompile(config.compile, label):
            rounds = _time_generations(benchmark, session, log, prompt_index, threshold)
    except Exception as exc:
        broken = out_of_memory(exc, f"at {label}", config.resolution, config.steps)
        if broken is not None:
            raise broken from exc
        raise
    finally:
        if threshold is not None:
            backend.disable()
    rounds.explained = explain_benchmark(session, threshold, prompt_index,
                                         rounds.decisions[-1] if rounds.decisions else None)
    return rounds, warmup


def bare_loop(session: FBCacheSession, rounds: int, prompt_index: int | None = None) -> list[float]:
    """What a user would write by hand: the same call, synchronised, timed with perf_counter."""
    seconds = []
    for _ in range(rounds):
        generator = torch.Generator("cpu").manual_seed(session.config.case(prompt_index).seed)
        synchronize(session.config.device)
        started = time.perf_counter()
        generate_once(session, generator, prompt_index)
        synchronize(session.config.device)
        seconds.append(time.perf_counter() - started)
    return seconds


# ------------------------------------------------------------------------------------- interleaved


#: one benchmark of the interleaved schedule: (threshold or None for uncached, prompt index or None)
Key = tuple[Threshold | None, int | None]


@dataclass
class Interleaved:
    """One benchmark's share of the interleaved rounds."""

    rounds: Rounds = field(default_factory=Rounds)
    seconds: list[float] = field(default_factory=list)


def _timed_generation(session: FBCacheSession, key: Key, log: DecisionLog,
                      into: Interleaved | None) -> tuple[float, int | None]:
    """One generation with the cache set for ``key``; timed like pedantic's: one synchronised call.
    Returns its seconds and, with the cache on, its hits."""
    config, backend = session.config, session.backend
    threshold, prompt_index = key
    if threshold is not None:
        backend.enable(threshold, log)
    try:
        generator = torch.Generator("cpu").manual_seed(config.case(prompt_index).seed)
        synchronize(config.device)
        # per generation, outside the clock: each benchmark keeps the peak of its own rounds only
        reset_peak_memory(config.device)
        log.start_generation()
        pair = EventPair(config.device)
        now = clock(config.clock)
        started = now()
        pair.record_start()
        images = generate_once(session, generator, prompt_index)
        pair.record_end()
        synchronize(config.device)
        seconds = now() - started
        peak = peak_memory_bytes(config.device)
        decisions = log.finish_generation()
    finally:
        if threshold is not None:
            backend.disable()
    hits = None if threshold is None else summarize(decisions)[0]
    if into is None:
        return seconds, hits
    into.rounds.keep(images, f"{label_of(threshold, prompt_index)}: generation {len(into.seconds) + 1}", True)
    into.rounds.decisions.append(decisions)
    into.rounds.events.append(pair)
    into.seconds.append(seconds)
    into.rounds.add_peak(peak)
    return seconds, hits


def round_order(keys: list[Any], round_index: int) -> list[Any]:
    """The benchmarks of one round, rotated by one per round so none always runs first or last."""
    shift = round_index % len(keys) if keys else 0
    return keys[shift:] + keys[:shift]


def run_interleaved(session: FBCacheSession) -> dict[Key, Interleaved]:
    """Every planned benchmark's warm-up and timed rounds, round by round."""
    config = session.config
    prompts: list[int | None] = list(session.planned_prompts) or [None]
    keys: list[Key] = [(threshold, prompt) for prompt in prompts
                       for threshold in [None, *session.planned_thresholds]]
    logs = {key: DecisionLog() for key in keys}
    results = {key: Interleaved() for key in keys}
    before = machine.sample(config.device)
    _ = session.backend  # the model loads before the first generation, not inside the time-left estimate
    progress = _sweep_progress(session, len(keys), "interleaved")
    try:
        for index in range(config.warmup_rounds):
            for key in keys:
                seconds, hits = _timed_generation(session, key, logs[key], None)
                progress.generation(key[0], key[1], True, index + 1, config.warmup_rounds, seconds, hits, config.steps)
        for index in range(config.rounds):
            for key in round_order(keys, index):
                seconds, hits = _timed_generation(session, key, logs[key], results[key])
                progress.generation(key[0], key[1], False, index + 1, config.rounds, seconds, hits, config.steps)
    except Exception as exc:
        broken = out_of_memory(exc, "in the interleaved rounds", config.resolution, config.steps)
        if broken is not None:
            raise broken from exc
        raise
    evidence = machine.evidence(before, machine.sample(config.device))
    for key, result in results.items():
        result.rounds.machine_state = evidence
        decisions = result.rounds.decisions
        result.rounds.explained = explain_benchmark(session, *key, decisions[-1] if decisions else None)
    return results


class ReplayClock:
    """A timer for ``benchmark.pedantic`` that plays back recorded rounds.

    pedantic reads its timer before and after each call of its target; this clock advances by the
    next recorded duration between the two readings, so pytest-benchmark computes its statistics,
    mode and JSON exactly as for rounds it timed itself (the times were taken with the run's clock,
    ``perf_counter`` or, for CPU runs, ``process_time``, in the interleaved schedule).
    """

    def __init__(self, seconds: list[float], source: str = "time.perf_counter") -> None:
        self._source = source
        self._durations = iter(seconds)
        self._now = 0.0
        self._inside = False

    def __call__(self) -> float:
        if self._inside:
            self._now += next(self._durations)
        self._inside = not self._inside
        return self._now

    def __repr__(self) -> str:
        return f"fbcache.ReplayClock(interleaved rounds, timed with {self._source})"


def replay(benchmark: Any, seconds: list[float], source: str) -> None:
    """Give ``benchmark`` its own recorded rounds: ``pedantic`` with a timer that replays them."""
    with compat.swapped_timer(benchmark, ReplayClock(seconds, source),
                              "replay interleaved rounds through; run with --fbcache-interleave=false"):
        benchmark.pedantic(lambda: None, rounds=len(seconds), iterations=1, warmup_rounds=0)
