"""Where a threshold's rounds become its record: :func:`measure` runs a schedule
(:mod:`fbcache.plugin.schedule`) and builds the :class:`~fbcache.history.BenchRecord`: checks,
similarity to the uncached image, the images on disk; :func:`bench` (the ``fbcache_bench`` fixture)
also checks the record against the bounds profile and hands it to pytest-benchmark's ``extra_info``.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fbcache import models
from fbcache.backends import single_stream_hits, summarize
from fbcache.config import Threshold, ThresholdPair
from fbcache.errors import BoundViolation, BrokenRunError
from fbcache.history import UNCACHED, BenchRecord, compat, label_of
from fbcache.history import summarize as summarize_set
from fbcache.metrics import to_uint8_images
from fbcache.plugin import machine, schedule
from fbcache.plugin.compile_cache import CompileCache
from fbcache.plugin.session import FBCacheSession
from fbcache.verdicts.bounds import Violation, check, check_set


def image_name(label: str, which: str, stem: str = "flux", prompt_index: int | None = None) -> str:
    """The seed's file names: flux_t0.1_first.png; the baseline is flux_uncached_first.png; a prompt
    of a set adds its index: flux_t0.1_p3_first.png; a MULTI/SINGLE pair's '/' (no file name holds one)
    becomes '-': flux_t0.09-0.12_first.png."""
    name = f"{stem}_{UNCACHED}" if label == UNCACHED else f"{stem}_t{label.replace('/', '-')}"
    if prompt_index is not None:
        name += f"_p{prompt_index}"
    return f"{name}_{which}.png"


def measure(benchmark: Any, session: FBCacheSession, threshold: Threshold | None,
            prompt_index: int | None = None) -> BenchRecord:
    """Time one threshold (``None``: uncached, no hooks at all) on one prompt (``None``: the run's single
    prompt; else its index in the prompt set) and return its record."""
    config = session.config
    interleaved = config.interleaved and session.backend.can_run_uncached
    record = (_measure_interleaved if interleaved else _measure_sequential)(benchmark, session, threshold, prompt_index)
    if threshold is None and config.selfcheck:
        record.bare_loop_s = schedule.bare_loop(session, config.rounds, prompt_index)
    return record


def _measure_sequential(benchmark: Any, session: FBCacheSession, threshold: Threshold | None,
                        prompt_index: int | None) -> BenchRecord:
    config = session.config
    backend = session.backend
    if threshold is None and not backend.can_run_uncached:
        raise BrokenRunError(f"the {backend.name} cache is already applied and cannot be removed; "
                             "the uncached baseline must run before any threshold")
    if threshold is not None:
        # the uncached image must exist before a cache that cannot be removed is applied
        session.reference_image(lambda: schedule.uncached_image(session, prompt_index), prompt_index)
    before = machine.sample(config.device)
    rounds, warmup = schedule.run_sequential(benchmark, session, threshold, prompt_index)
    record = _build_record(benchmark, session, threshold, rounds, prompt_index)
    record.machine_state = machine.evidence(before, machine.sample(config.device))
    record_warmup(record, config.compile, warmup, session.compile_cache)
    return record


def _measure_interleaved(benchmark: Any, session: FBCacheSession, threshold: Threshold | None,
                         prompt_index: int | None) -> BenchRecord:
    results = session.interleaved(lambda: schedule.run_interleaved(session))
    key = (threshold, prompt_index)
    if key not in results:
        raise BrokenRunError(f"{label_of(threshold, prompt_index)} was not among the interleaved benchmarks")
    mine = results[key]
    schedule.replay(benchmark, mine.seconds, f"time.{schedule.clock(session.config.clock).__name__}")
    record = _build_record(benchmark, session, threshold, mine.rounds, prompt_index, mine.seconds)
    record.schedule = "interleaved"
    record.machine_state = mine.rounds.machine_state
    if threshold is not None:
        record.paired_uncached_s = list(results[(None, prompt_index)].seconds)
        paired = record.paired_speedups
        record.speedup = statistics.median(paired) if paired else record.speedup
    return record


def _build_record(benchmark: Any, session: FBCacheSession, threshold: Threshold | None, rounds: schedule.Rounds,
                  prompt_index: int | None = None, seconds: list[float] | None = None) -> BenchRecord:
    """Everything after the clock stopped: checks, similarity, images on disk."""
    config, model = session.config, session.model
    if seconds is None:
        seconds = compat.recorded_seconds(benchmark)
    rounds_s = [float(x) for x in seconds] if seconds is not None else []
    timed = len(rounds_s) or 1
    timed_decisions = rounds.decisions[-timed:]
    if threshold is not None:
        for steps in timed_decisions:
            if len(steps) != config.steps:
                raise BrokenRunError(
                    f"the cache decided {len(steps)} times in a {config.steps}-step generation; its hooks did "
                    "not see every step (enable the cache before the first cache_context, diffusers #14037)")
            pair = isinstance(threshold, ThresholdPair)
            wrong = [s.step for s in steps if (s.single_hit is not None) != pair]
            if wrong:
                raise BrokenRunError(f"threshold {threshold:g}: " + (
                    f"no single-stream decision at steps {wrong}; a MULTI/SINGLE pair decides twice per step" if pair
                    else f"a single-stream decision at steps {wrong}; a single threshold decides once per step"))
    first_images = [to_uint8_images(images)[0] for images in rounds.images]  # the first timed ones (Rounds.keep)
    label = label_of(threshold)
    if threshold is None:
        session.set_reference(first_images[0], prompt_index)
    reference = session.reference_image(lambda: schedule.uncached_image(session, prompt_index), prompt_index)
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
        metrics=session.image_metrics(first_images[0], reference),
        peak_memory_bytes=rounds.peak_memory_bytes,  # the timed generations' own, warm-ups left out
        model_digest=model.digest,
        timing_only=model.timing_only,
        prompt_index=prompt_index,
        prompt=None if prompt_index is None else case.text,
    )
    if rounds.explained is not None:
        record.profile, record.flops = rounds.explained.profile, rounds.explained.flops
        record.flops_hits = rounds.explained.flops_hits
    if threshold is not None:
        first = timed_decisions[0]
        record.hits, record.computed_steps = summarize(first)
        record.hits_per_round = [summarize(steps)[0] for steps in timed_decisions]
        record.residual_diff_trace = [step.diff for step in first]
        record.hit_trace = [step.hit for step in first]
    if isinstance(threshold, ThresholdPair):
        record.single_hits = single_stream_hits(first)
        record.single_hits_per_round = [single_stream_hits(steps) for steps in timed_decisions]
        record.single_residual_diff_trace = [step.single_diff for step in first]
        record.single_hit_trace = [bool(step.single_hit) for step in first]
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


def record_warmup(record: BenchRecord, compile_mode: str, warmup: schedule.WarmUp | None,
                  cache: CompileCache | None = None) -> None:
    """``compile_s``: the warm-up call minus the timed median (the compilation, plus noise, clipped at 0);
    ``compile_cache``: whether that compilation was cold or warm (``cache``: the session's compile cache)."""
    record.compile_mode = compile_mode
    if warmup is None:
        return
    record.compile_warmup_s = warmup.seconds
    record.compile_graphs = warmup.compiled.graphs
    median = record.median_s
    record.compile_s = max(0.0, warmup.seconds - median) if median is not None else None
    if cache is not None:
        found = warmup.compiled
        record.compile_cache = cache.outcome(record.label, found.graphs, found.cache_hits, found.cache_misses,
                                             found.cache_bypasses)


def bench(benchmark: Any, session: FBCacheSession, threshold: Threshold | None = None,
          prompt_index: int | None = None) -> BenchRecord:
    """Measure one threshold on one prompt, check its bounds (and, with its prompt the set's last, the
    set's) and hand the record to pytest-benchmark; :class:`BoundViolation` when an enforced one broke."""
    __tracebackhide__ = True  # a bound failure is a verdict, not a bug: show the message only
    extra_infos = session.extra_infos
    benchmark.group = "fbcache"
    record = measure(benchmark, session, threshold, prompt_index)
    profile = session.profile
    session.records[record.label] = record
    extra_infos[record.label] = benchmark.extra_info
    violations = check(profile, record) if profile is not None else []
    record.bounds = {"profile": profile.name if profile is not None else None}
    _mark(record, violations)
    set_violations = _set_violations(session, record)
    # a bound on the set as a whole is found by its last prompt, but the row marked is the prompt that broke it
    for violation in set_violations:
        label = label_of(record.threshold, violation.worst_prompt)
        culprit = session.records.get(label, record)
        _mark(culprit, [violation])
        extra_infos.get(culprit.label, benchmark.extra_info).update(culprit.to_extra_info())
    benchmark.extra_info.update(record.to_extra_info())
    enforced = [v.message() for v in violations + set_violations if v.enforced]
    if enforced:
        raise BoundViolation("; ".join(enforced))
    return record


def _set_violations(session: FBCacheSession, record: BenchRecord) -> list[Violation]:
    """The floors on the set's mean, once this session has measured every prompt of the threshold."""
    config, profile = session.config, session.profile
    if profile is None or record.prompt_index is None or record.threshold is None or config.shard is not None:
        return []
    same = [r for r in session.records.values() if r.threshold == record.threshold]
    uncached = [r for r in session.records.values() if r.threshold is None]
    if len(same) < len(config.cases):
        return []
    [summary] = [s for s in summarize_set(same + uncached) if s.threshold == record.threshold]
    return check_set(profile, summary)


def _mark(record: BenchRecord, violations: list[Violation]) -> None:
    """Add ``violations`` to what the record keeps (enforced ones mark its row with '!')."""
    record.bounds.setdefault("violations", []).extend(v.message() for v in violations if v.enforced)
    record.bounds.setdefault("reported", []).extend(v.message() for v in violations if not v.enforced)
