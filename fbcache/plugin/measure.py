"""Where a threshold becomes a timing.

:func:`measure` switches the cache on for one threshold (or leaves it off for the uncached
baseline), times whole generations and turns what came out into a
:class:`~fbcache.history.record.BenchRecord`. Two schedules:

- **interleaved** (default, as asv's ``--interleave-rounds``): the first fbcache benchmark of the
  session times every benchmark's rounds, round 1 of the uncached baseline and of each threshold,
  then round 2, the order rotated by one each round, so a drift of the machine hits all of them
  alike. Each benchmark's test then hands its own recorded times to its ``benchmark`` fixture
  through pytest-benchmark's stats API, so the JSON still has one benchmark per threshold with its
  own ``stats.data``; and every cached round records the uncached round timed next to it, the
  partner of its paired speedup (verdicts/paired.py).
- **sequential** (``--fbcache-interleave=false``; and for cache backends that cannot be removed
  and compiled sessions, see ``HarnessConfig.interleaved``):
  each threshold's rounds back to back with ``benchmark.pedantic``.

The timed region is one pipeline call (text encoding, denoising, VAE decode) followed by an
accelerator synchronisation. Everything else - RNG setup, resetting the decision log, moving
images to the host, NaN checks, image metrics, PNG files - happens outside it.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from fbcache import models
from fbcache.backends import DecisionLog, StepDecision, summarize
from fbcache.errors import BrokenRunError, NaNImageError
from fbcache.history.record import UNCACHED, BenchRecord, label_of
from fbcache.metrics import all_metrics
from fbcache.metrics import images as pixels
from fbcache.plugin import machine, recompile, timing
from fbcache.plugin.session import FBCacheSession


@dataclass
class _Rounds:
    """What each generation left behind, warm-up rounds included, in call order."""

    images: list[torch.Tensor] = field(default_factory=list)
    decisions: list[list[StepDecision]] = field(default_factory=list)
    events: list[timing.EventPair] = field(default_factory=list)
    machine_state: dict[str, Any] = field(default_factory=dict)


def image_name(label: str, which: str, stem: str = "flux", prompt_index: int | None = None) -> str:
    """The seed's file names: flux_t0.1_first.png; the baseline is flux_uncached_first.png; a prompt
    of a set adds its index: flux_t0.1_p3_first.png."""
    name = f"{stem}_{UNCACHED}" if label == UNCACHED else f"{stem}_t{label}"
    if prompt_index is not None:
        name += f"_p{prompt_index}"
    return f"{name}_{which}.png"


def generate_once(session: FBCacheSession, generator: torch.Generator, prompt_index: int | None = None) -> torch.Tensor:
    config, model = session.config, session.model
    prompt = None if prompt_index is None else config.case(prompt_index).text
    return model.pipe(
        height=config.height, width=config.width, num_inference_steps=config.steps, generator=generator,
        output_type="pt", **model.kwargs_for(prompt),
    ).images


def _untimed_uncached_image(session: FBCacheSession, prompt_index: int | None = None) -> np.ndarray:
    seed = session.config.case(prompt_index).seed
    images = generate_once(session, torch.Generator("cpu").manual_seed(seed), prompt_index)
    if not pixels.all_finite(images):
        raise NaNImageError("the uncached reference image has NaN/Inf pixels")
    return pixels.to_uint8_images(images)[0]


def _time_generations(benchmark: Any, session: FBCacheSession, log: DecisionLog,
                      prompt_index: int | None = None) -> _Rounds:
    config = session.config
    seed = config.case(prompt_index).seed
    device = config.device
    rounds = _Rounds()

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        timing.synchronize(device)
        log.start_generation()
        pair = timing.EventPair(device)
        rounds.events.append(pair)
        # a CPU generator gives the same initial noise on every device
        return (torch.Generator("cpu").manual_seed(seed), pair), {}

    def generate(generator: torch.Generator, pair: timing.EventPair) -> torch.Tensor:
        pair.record_start()
        images = generate_once(session, generator, prompt_index)
        pair.record_end()
        timing.synchronize(device)
        rounds.images.append(images)
        return images

    def teardown(generator: torch.Generator, pair: timing.EventPair) -> None:
        rounds.decisions.append(log.finish_generation())

    clock = (_timer(benchmark, timing.clock(config.clock), "time rounds with the process's CPU time through; "
                    "run with --fbcache-clock wall") if config.clock == "cpu" else contextlib.nullcontext())
    with clock:
        benchmark.pedantic(generate, setup=setup, teardown=teardown, rounds=config.rounds,
                           warmup_rounds=config.warmup_rounds, iterations=1)
    if len(rounds.decisions) < len(rounds.images):  # --benchmark-disable: one call, no teardown
        rounds.decisions.append(log.finish_generation())
    return rounds


def bare_loop(session: FBCacheSession, rounds: int, prompt_index: int | None = None) -> list[float]:
    """What a user would write by hand: the same call, synchronised, timed with perf_counter."""
    seconds = []
    for _ in range(rounds):
        generator = torch.Generator("cpu").manual_seed(session.config.case(prompt_index).seed)
        timing.synchronize(session.config.device)
        started = time.perf_counter()
        generate_once(session, generator, prompt_index)
        timing.synchronize(session.config.device)
        seconds.append(time.perf_counter() - started)
    return seconds


#: one benchmark of the interleaved schedule: (threshold or None for uncached, prompt index or None)
Key = tuple[float | None, int | None]


@dataclass
class Interleaved:
    """One benchmark's share of the interleaved rounds."""

    rounds: _Rounds = field(default_factory=_Rounds)
    seconds: list[float] = field(default_factory=list)


#: timed images kept per benchmark (the first and second go to disk; NaN is checked on every one)
_KEPT_IMAGES = 2


def _timed_generation(session: FBCacheSession, key: Key, log: DecisionLog, into: Interleaved | None) -> None:
    """One generation with the cache set for ``key``; timed like pedantic's: one synchronised call."""
    config, backend = session.config, session.backend
    threshold, prompt_index = key
    if threshold is not None:
        backend.enable(threshold, log)
    try:
        generator = torch.Generator("cpu").manual_seed(config.case(prompt_index).seed)
        timing.synchronize(config.device)
        log.start_generation()
        pair = timing.EventPair(config.device)
        now = timing.clock(config.clock)
        started = now()
        pair.record_start()
        images = generate_once(session, generator, prompt_index)
        pair.record_end()
        timing.synchronize(config.device)
        seconds = now() - started
        decisions = log.finish_generation()
    finally:
        if threshold is not None:
            backend.disable()
    if into is None:
        return
    if not pixels.all_finite(images):
        raise NaNImageError(f"{label_of(threshold, prompt_index)}: generation {len(into.seconds) + 1} "
                            "produced NaN/Inf pixels")
    if len(into.rounds.images) < _KEPT_IMAGES:
        into.rounds.images.append(images)
    into.rounds.decisions.append(decisions)
    into.rounds.events.append(pair)
    into.seconds.append(seconds)


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
    timing.reset_peak_memory(config.device)
    before = machine.sample(config.device)
    try:
        for _ in range(config.warmup_rounds):
            for key in keys:
                _timed_generation(session, key, logs[key], None)
        for index in range(config.rounds):
            for key in round_order(keys, index):
                _timed_generation(session, key, logs[key], results[key])
    except Exception as exc:
        if timing.is_out_of_memory(exc):
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise BrokenRunError(f"out of GPU memory in the interleaved rounds ({config.resolution}, "
                                 f"{config.steps} steps): {str(exc).splitlines()[0]}") from exc
        raise
    evidence = machine.evidence(before, machine.sample(config.device))
    for result in results.values():
        result.rounds.machine_state = evidence
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


@contextlib.contextmanager
def _timer(benchmark: Any, timer: Callable[[], float], purpose: str) -> Iterator[None]:
    """pytest-benchmark reads its clock from the private ``_timer``: swap it for the calls inside."""
    if not hasattr(benchmark, "_timer"):
        raise BrokenRunError(f"this pytest-benchmark has no timer fbcache can {purpose}")
    original = benchmark._timer
    benchmark._timer = timer
    try:
        yield
    finally:
        benchmark._timer = original


def _replay(benchmark: Any, seconds: list[float], source: str) -> None:
    """Give ``benchmark`` its own recorded rounds: ``pedantic`` with a timer that replays them."""
    with _timer(benchmark, ReplayClock(seconds, source),
                "replay interleaved rounds through; run with --fbcache-interleave=false"):
        benchmark.pedantic(lambda: None, rounds=len(seconds), iterations=1, warmup_rounds=0)


def _measure_interleaved(benchmark: Any, session: FBCacheSession, threshold: float | None,
                         prompt_index: int | None) -> BenchRecord:
    results = session.interleaved(lambda: run_interleaved(session))
    key = (threshold, prompt_index)
    if key not in results:
        raise BrokenRunError(f"{label_of(threshold, prompt_index)} was not among the interleaved benchmarks")
    mine = results[key]
    _replay(benchmark, mine.seconds, f"time.{timing.clock(session.config.clock).__name__}")
    record = _build_record(benchmark, session, threshold, mine.rounds, prompt_index, mine.seconds)
    record.schedule = "interleaved"
    record.machine_state = mine.rounds.machine_state
    if threshold is not None:
        record.paired_uncached_s = list(results[(None, prompt_index)].seconds)
        paired = record.paired_speedups
        record.speedup = statistics.median(paired) if paired else record.speedup
    if threshold is None and session.config.selfcheck:
        record.bare_loop_s = bare_loop(session, session.config.rounds, prompt_index)
    return record


def measure(benchmark: Any, session: FBCacheSession, threshold: float | None,
            prompt_index: int | None = None) -> BenchRecord:
    """Time one threshold (``None``: uncached, no hooks at all) on one prompt (``None``: the run's single
    prompt; else its index in the prompt set) and return its record."""
    config = session.config
    backend = session.backend
    if config.interleaved and backend.can_run_uncached:
        return _measure_interleaved(benchmark, session, threshold, prompt_index)
    if threshold is None and not backend.can_run_uncached:
        raise BrokenRunError(f"the {backend.name} cache is already applied and cannot be removed; "
                             "the uncached baseline must run before any threshold")
    if threshold is not None:
        # the uncached image must exist before a cache that cannot be removed is applied
        session.reference_image(lambda: _untimed_uncached_image(session, prompt_index), prompt_index)
    log = DecisionLog()
    timing.reset_peak_memory(config.device)
    before = machine.sample(config.device)
    try:
        if threshold is not None:
            backend.enable(threshold, log)
        warmup = recompile.compile_warmup(config.compile, config.device, log, lambda: generate_once(
            session, torch.Generator("cpu").manual_seed(config.case(prompt_index).seed), prompt_index))
        with recompile.no_recompile(config.compile, UNCACHED if threshold is None else f"threshold {threshold:g}"):
            rounds = _time_generations(benchmark, session, log, prompt_index)
    except Exception as exc:
        if timing.is_out_of_memory(exc):
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            label = UNCACHED if threshold is None else f"threshold {threshold:g}"
            raise BrokenRunError(f"out of GPU memory at {label} ({config.resolution}, {config.steps} steps): "
                                 f"{str(exc).splitlines()[0]}") from exc
        raise
    finally:
        if threshold is not None:
            backend.disable()
    record = _build_record(benchmark, session, threshold, rounds, prompt_index)
    record.machine_state = machine.evidence(before, machine.sample(config.device))
    recompile.record_warmup(record, config.compile, warmup)
    if threshold is None and config.selfcheck:
        record.bare_loop_s = bare_loop(session, config.rounds, prompt_index)
    return record


def _build_record(benchmark: Any, session: FBCacheSession, threshold: float | None, rounds: _Rounds,
                  prompt_index: int | None = None, seconds: list[float] | None = None) -> BenchRecord:
    """Everything after the clock stopped: checks, similarity, images on disk."""
    config, model = session.config, session.model
    for index, images in enumerate(rounds.images):
        if not pixels.all_finite(images):
            raise NaNImageError(f"generation {index + 1} produced NaN/Inf pixels")
    stats = getattr(benchmark, "stats", None)
    if seconds is not None:
        rounds_s = [float(x) for x in seconds]
    else:
        rounds_s = [float(x) for x in stats.stats.data] if stats is not None else []
    timed = len(rounds_s) or 1
    timed_images = rounds.images[-timed:]
    timed_decisions = rounds.decisions[-timed:]
    if threshold is not None:
        for steps in timed_decisions:
            if len(steps) != config.steps:
                raise BrokenRunError(
                    f"the cache decided {len(steps)} times in a {config.steps}-step generation; its hooks did "
                    "not see every step (enable the cache before the first cache_context, diffusers #14037)")
    first_images = [pixels.to_uint8_images(images)[0] for images in timed_images[:2]]
    label = label_of(threshold)
    if threshold is None:
        session.set_reference(first_images[0], prompt_index)
    reference = session.reference_image(lambda: _untimed_uncached_image(session, prompt_index), prompt_index)
    case = config.case(prompt_index)

    record = BenchRecord(
        threshold=threshold,
        model=config.model,
        quantization=config.quant,
        cache_backend=config.cache_backend,
        steps=config.steps,
        resolution=config.resolution,
        seed=case.seed,
        rounds_s=rounds_s,
        warmup_rounds=config.warmup_rounds,
        cuda_event_s=[s for s in (pair.seconds() for pair in rounds.events[-timed:]) if s is not None],
        metrics={metric.name: metric.compute(first_images[0], reference) for metric in all_metrics()},
        peak_memory_bytes=timing.peak_memory_bytes(config.device),
        model_digest=model.digest,
        timing_only=model.timing_only,
        prompt_index=prompt_index,
        prompt=None if prompt_index is None else case.text,
    )
    if threshold is not None:
        first = timed_decisions[0]
        record.hits, record.computed_steps = summarize(first)
        record.hits_per_round = [summarize(steps)[0] for steps in timed_decisions]
        record.residual_diff_trace = [step.diff for step in first]
        record.hit_trace = [step.hit for step in first]
    median, baseline = record.median_s, session.uncached_median(prompt_index)
    if threshold is not None and median and baseline:
        record.speedup = baseline / median
    record.images = _save_images(config.output_dir, label, first_images, models.source_for(config.model).image_stem,
                                  prompt_index)
    return record


def _save_images(output_dir: Path, label: str, images: list[np.ndarray], stem: str,
                 prompt_index: int | None = None) -> dict[str, str]:
    saved = {}
    for which, image in zip(("first", "second"), images):
        name = image_name(label, which, stem, prompt_index)
        Image.fromarray(image).save(output_dir / name)
        saved[which] = name
    return saved
