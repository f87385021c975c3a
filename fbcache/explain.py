"""Why a speedup is what it is: where each generation's time goes, the cost model fitted from it, the
ideal speedup for the measured hits, the efficiency, and FLOPs beside wall time.

**The profile** (``BenchRecord.profile``, ``--fbcache-breakdown``): after a benchmark's timed rounds, one
more untimed generation is timed part by part (:func:`breakdown`). Its entries, in seconds summed over
the generation's steps, plus its step and hit counts:

- ``generation``: the whole pipeline call;
- ``text_encoding`` and ``vae_decode``: once per generation;
- ``first_block``: the first transformer block of every step (the block a hit cannot skip);
- ``remaining_blocks``: the other blocks, in the computed steps (a hit skips them);
- ``rest_computed`` / ``rest_hit``: the rest of each computed / hit step: embedders, norm and output
  layers, the cache decision with its device-to-host read, reusing the cached residual, and the GPU's
  idle gaps while the host issues that work;
- what is left, ``generation`` minus all of the above: the pipeline's own work between steps (latents,
  scheduler).

**The cost model** of one run, fitted from its cached benchmarks' profiles (the uncached baseline makes
no cache decision, so its steps cost less than a cached run's computed steps and stay out of the fit):

    T(h) = T_fixed + N x T_first + (N - h) x T_rest + h x T_skip

N steps, h hits; T_first a step's first block; T_rest what a computed step costs after its first block
(the remaining blocks and the rest of the step); T_skip what a hit step costs after its first block (the
rest of the step only); T_fixed what a generation costs outside its steps (text encoding, VAE decode,
the pipeline's own work). Each is pooled over the profiles: parts summed, divided by the steps they
cover. The model predicts each benchmark's time from its measured hits; how close that comes to the
timed median says whether the parts explain the time.

**Ideal speedup**: only the skipped blocks' cost saved. The ideal time of h hits is the uncached median
minus h times the remaining blocks of one step (from the uncached profile); the ideal speedup is the
uncached median over it. **Efficiency** = ideal time / measured median: 1.0 when a hit costs nothing but
the blocks it skips; what is missing is what the cache path adds (the decision, the GPU waiting on the
host, parts that are not skipped). At threshold 0 (no hits) it is uncached / cached, the cost of deciding.

**FLOPs** (``BenchRecord.flops``, ``--fbcache-flops``): the floating-point operations of one more untimed
generation (:func:`count_flops`). Deterministic for a fixed seed, hits and stack, on every device: the
FLOPs speedup is uncached FLOPs over the benchmark's, next to the wall-clock speedup.

**Measuring.** :func:`breakdown` marks, per denoising step, the start and end of the transformer call, of
its first block and of its remaining blocks, and once per generation the text encoding and the VAE
decode. On a GPU each mark is a CUDA event recorded on the stream (no synchronisation until the
generation ends), on a CPU a reading of the run's clock. The marks come from thin wrappers on the
blocks' ``forward``, installed *before* the cache is enabled, so the cache's hooks wrap them: the
wrappers see the blocks' own computation, and a hit, which never calls the remaining blocks, leaves
them unmarked. Transformer steps are marked by module hooks; the cache's decisions name each step hit
or computed. :func:`count_flops` runs a generation under ``torch.utils.flop_counter.FlopCounterMode``
(matrix products, convolutions, attention; the CPU's fused attention kernel counted with torch's own
attention formula, which torch registers for the GPU kernels only); a compiled session runs it under
``torch.compiler.set_stance("force_eager")``, because the counter sees aten operators, which compiled
code does not dispatch: the arithmetic is the same. torch is imported only by these two. A run counts
each kind of work once (:class:`FlopsMemo`): its generations share their shapes (the pipeline pads every
prompt to the text encoders' fixed lengths), so two with the same cache setting and the same hit at every
step do the same arithmetic, and the second takes the first's count instead of a second counted generation.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fbcache import markup
from fbcache.backends import CacheBackend, DecisionLog, StepDecision, cache_at, summarize
from fbcache.config import Threshold
from fbcache.history import BenchRecord, label_of, ordered
from fbcache.models import compile_stance, repeated_blocks

#: the profile's entries that are seconds, as stored
TIMES = ("generation", "text_encoding", "vae_decode", "first_block", "remaining_blocks", "rest_computed", "rest_hit")
#: the profile's counts, as stored
COUNTS = ("steps", "hits")
#: the parts of a generation in the breakdown, in the order they are shown and stacked
PARTS = ("text encoding", "first block", "remaining blocks", "rest of steps", "VAE decode", "other")


@dataclass(frozen=True)
class Profile:
    """One profiled generation, read back from a record (seconds)."""

    generation: float
    text_encoding: float
    vae_decode: float
    first_block: float
    remaining_blocks: float
    rest_computed: float
    rest_hit: float
    steps: int
    hits: int

    @classmethod
    def of(cls, record: BenchRecord) -> Profile | None:
        """The record's profile; None when it has none (an older run, or profiling off) or lacks an entry."""
        stored = record.profile
        if not stored or any(name not in stored for name in (*TIMES, *COUNTS)):
            return None
        seconds = {name: float(stored[name]) for name in TIMES}
        return cls(seconds["generation"], seconds["text_encoding"], seconds["vae_decode"], seconds["first_block"],
                   seconds["remaining_blocks"], seconds["rest_computed"], seconds["rest_hit"],
                   steps=int(stored["steps"]), hits=int(stored["hits"]))

    @property
    def computed(self) -> int:
        return self.steps - self.hits

    @property
    def in_steps(self) -> float:
        return self.first_block + self.remaining_blocks + self.rest_computed + self.rest_hit

    @property
    def outside_steps(self) -> float:
        return self.generation - self.in_steps

    def parts(self) -> dict[str, float]:
        """The breakdown, in :data:`PARTS` order; "other" is the pipeline's own work between the steps."""
        return {"text encoding": self.text_encoding, "first block": self.first_block,
                "remaining blocks": self.remaining_blocks, "rest of steps": self.rest_computed + self.rest_hit,
                "VAE decode": self.vae_decode,
                "other": self.outside_steps - self.text_encoding - self.vae_decode}


@dataclass(frozen=True)
class CostModel:
    """T(h) = fixed + steps x first + (steps - h) x rest + h x skip (seconds); None where no profile covers it."""

    steps: int
    fixed: float
    first: float
    rest: float | None
    skip: float | None
    #: the remaining blocks of one computed step: what a hit saves at best
    blocks: float | None
    #: how many profiles the fit pooled
    profiles: int

    def predict(self, hits: int) -> float | None:
        if (hits < self.steps and self.rest is None) or (hits > 0 and self.skip is None):
            return None
        return (self.fixed + self.steps * self.first + (self.steps - hits) * (self.rest or 0.0)
                + hits * (self.skip or 0.0))

    def formula(self) -> str:
        def ms(value: float | None) -> str:
            return "—" if value is None else f"{value * 1000:.2f} ms"

        return (f"T(h) = T_fixed + N x T_first + (N - h) x T_rest + h x T_skip = {ms(self.fixed)} + "
                f"{self.steps} x {ms(self.first)} + ({self.steps} - h) x {ms(self.rest)} + h x {ms(self.skip)}")


def fit(records: Iterable[BenchRecord]) -> CostModel | None:
    """The run's cost model from its cached benchmarks' profiles; None without one (or with different step counts)."""
    records = list(records)
    cached = [p for r in records if r.threshold is not None and (p := Profile.of(r)) is not None and p.steps > 0]
    if not cached or len({p.steps for p in cached}) != 1:
        return None
    steps = sum(p.steps for p in cached)
    computed = sum(p.computed for p in cached)
    hits = sum(p.hits for p in cached)
    uncached = [p for r in records if r.threshold is None and (p := Profile.of(r)) is not None and p.steps > 0]
    if uncached:  # the blocks alone, with no cache around them
        blocks: float | None = sum(p.remaining_blocks for p in uncached) / sum(p.steps for p in uncached)
    else:
        blocks = sum(p.remaining_blocks for p in cached) / computed if computed else None
    return CostModel(
        steps=cached[0].steps,
        fixed=statistics.fmean(p.outside_steps for p in cached),
        first=sum(p.first_block for p in cached) / steps,
        rest=sum(p.remaining_blocks + p.rest_computed for p in cached) / computed if computed else None,
        skip=sum(p.rest_hit for p in cached) / hits if hits else None,
        blocks=blocks,
        profiles=len(cached),
    )


@dataclass(frozen=True)
class Explanation:
    """One benchmark's speedup, explained (None where the run lacks what it needs)."""

    label: str
    hits: int | None
    measured_s: float | None
    predicted_s: float | None
    ideal_s: float | None
    ideal_speedup: float | None
    efficiency: float | None
    flops: int | None
    flops_speedup: float | None

    @property
    def prediction_error(self) -> float | None:
        """(predicted - measured) / measured."""
        if self.predicted_s is None or not self.measured_s:
            return None
        return self.predicted_s / self.measured_s - 1.0


def ideal_time(uncached_s: float, hits: int, blocks: float) -> float:
    """The uncached time with only the skipped steps' remaining blocks taken away."""
    return uncached_s - hits * blocks


def explain(records: Iterable[BenchRecord]) -> dict[str, Explanation]:
    """Every benchmark of one run, by label."""
    records = list(records)
    model = fit(records)
    by_label = {r.label: r for r in records}
    found = {}
    for record in records:
        uncached = by_label.get(label_of(None, record.prompt_index))
        base_s = uncached.median_s if uncached is not None else None
        measured = record.median_s
        hits = 0 if record.threshold is None else record.hits
        predicted = ideal = ideal_speedup = efficiency = None
        if model is not None and hits is not None and record.threshold is not None and record.steps == model.steps:
            predicted = model.predict(hits)
        if model is not None and model.blocks is not None and hits is not None and base_s:
            ideal = ideal_time(base_s, hits, model.blocks)
            if ideal > 0:
                ideal_speedup = base_s / ideal
                efficiency = ideal / measured if measured else None
        base_flops = uncached.flops if uncached is not None else None
        flops_speedup = base_flops / record.flops if base_flops and record.flops else None
        found[record.label] = Explanation(record.label, hits, measured, predicted, ideal, ideal_speedup, efficiency,
                                          record.flops, flops_speedup)
    return found


def efficiency_rounds(record: BenchRecord, uncached: BenchRecord | None, blocks: float | None) -> list[float]:
    """Efficiency per timed round: the ideal time from the uncached round timed next to it (interleaved runs;
    older runs pair rounds by index) over the round's time. Empty for the uncached row, without hits (there it
    is the paired speedup, judged as such) or without a profile."""
    if record.threshold is None or blocks is None or not record.hits_per_round and not record.hits:
        return []
    partners = record.paired_uncached_s or (uncached.rounds_s if uncached is not None else [])
    hits = record.hits_per_round or [record.hits or 0] * len(record.rounds_s)
    if not any(hits):
        return []
    values = []
    for base, cached, h in zip(partners, record.rounds_s, hits):
        ideal = ideal_time(base, h, blocks)
        if cached > 0 and ideal > 0:
            values.append(ideal / cached)
    return values


# ------------------------------------------------------------------------------------ text


def flops_text(flops: float | None) -> str:
    """'2.970 GFLOP', '3.12 PFLOP'."""
    if flops is None:
        return "—"
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if abs(flops) >= scale:
            return f"{flops / scale:.4g} {unit}"
    return f"{flops:.0f} FLOP"


def ratio_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def fraction_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def has_explanations(records: Iterable[BenchRecord]) -> bool:
    """Whether any benchmark has a profile or a FLOPs count (runs before them, or with both off, have neither)."""
    return any(r.profile or r.flops is not None for r in records)


#: said once under a results table without them
NOT_MEASURED_NOTE = ("Ideal speedup, efficiency and FLOPs: not measured in this run (--fbcache-breakdown and "
                     "--fbcache-flops; on by default on a GPU).")


def speedup_rows(records: Iterable[BenchRecord], explained: Mapping[str, Explanation] | None = None) -> list[list[str]]:
    """Per benchmark: hits, measured and predicted time, measured and ideal speedup, efficiency, FLOPs."""
    records = ordered(records)
    explained = explained if explained is not None else explain(records)
    rows = []
    for record in records:
        e = explained[record.label]
        error = e.prediction_error
        reference = record.threshold is None
        rows.append([record.label, "—" if reference else f"{e.hits}/{record.steps}",
                     "—" if e.measured_s is None else f"{e.measured_s:.3f}",
                     "—" if e.predicted_s is None else f"{e.predicted_s:.3f}",
                     "—" if error is None else f"{error:+.1%}",
                     "1.00 (ref)" if reference else ratio_text(record.speedup),
                     "1.00 (ref)" if reference else ratio_text(e.ideal_speedup),
                     "—" if reference else fraction_text(e.efficiency), flops_text(e.flops),
                     "1.00 (ref)" if reference and e.flops else ratio_text(None if reference else e.flops_speedup)])
    return rows


SPEEDUP_HEADER = ["threshold", "hits", "measured (s)", "predicted (s)", "predicted vs measured", "speedup",
                  "ideal speedup", "efficiency", "FLOPs", "FLOPs speedup"]
BREAKDOWN_HEADER = ["threshold", "hits", *(f"{part} (ms)" for part in PARTS), "profiled (ms)"]


def breakdown_rows(records: Iterable[BenchRecord]) -> list[list[str]]:
    """Per benchmark with a profile: its parts in milliseconds."""
    rows = []
    for record in ordered(records):
        profile = Profile.of(record)
        if profile is None:
            continue
        rows.append([record.label, f"{profile.hits}/{profile.steps}",
                     *(f"{value * 1000:.1f}" for value in profile.parts().values()), f"{profile.generation * 1000:.1f}"])
    return rows


#: what the speedup table's derived columns mean, under the table in results.md and the report
LEGEND = ("Ideal speedup: only the skipped steps' remaining blocks saved; efficiency = ideal time / measured time; "
          "FLOPs speedup = uncached FLOPs / the benchmark's.")


def model_title(model: CostModel, clock: str | None = None) -> str:
    return (f"Cost model, fitted from the {model.profiles} cached benchmarks' profiled generations"
            + (f" ({clock})" if clock else ""))


def markdown_section(records: Iterable[BenchRecord], clock: str | None = None) -> str:
    """"Why this speedup" for results.md and the report: the model, predicted against measured, the breakdown."""
    records = list(records)
    if not has_explanations(records):
        return ""
    model = fit(records)
    lines = []
    if model is not None:
        lines += [model_title(model, clock) + ":", "", f"    {model.formula()}", ""]
    lines += [markup.table(SPEEDUP_HEADER, speedup_rows(records)), ""]
    lines += [LEGEND]
    rows = breakdown_rows(records)
    if rows:
        lines += ["", "Where the time goes (each benchmark's profiled generation, untimed):", "",
                  markup.table(BREAKDOWN_HEADER, rows)]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ measuring: marks


class Marks:
    """Points in time: CUDA events on a GPU (read after the final synchronisation), clock readings on a CPU."""

    def __init__(self, device: str, clock: Callable[[], float]) -> None:
        self.cuda = str(device).startswith("cuda")
        self.device = device
        self._clock = clock

    def mark(self) -> Any:
        if self.cuda:
            import torch

            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return self._clock()

    def again(self, previous: Any) -> Any:
        """A mark that replaces ``previous`` (a CUDA event is recorded again: no new event per block)."""
        if previous is None:
            return self.mark()
        if self.cuda:
            previous.record()
            return previous
        return self._clock()

    def seconds(self, start: Any, end: Any) -> float:
        if start is None or end is None:
            return 0.0
        return start.elapsed_time(end) / 1000.0 if self.cuda else float(end - start)

    def synchronize(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)


@dataclass
class _Step:
    start: Any
    end: Any = None
    first: list[Any] = field(default_factory=lambda: [None, None])
    remaining: list[Any] = field(default_factory=lambda: [None, None])


@dataclass
class _Spans:
    """Marks of one generation's parts."""

    steps: list[_Step] = field(default_factory=list)
    text: list[list[Any]] = field(default_factory=list)
    vae: list[list[Any]] = field(default_factory=list)


# ------------------------------------------------------------------------------------ measuring: wrappers


@contextlib.contextmanager
def _wrapped(owner: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Iterator[None]:
    """``owner.name`` replaced by ``make(original)`` as an instance attribute, then exactly as it was."""
    missing = object()
    before = owner.__dict__.get(name, missing)
    original = getattr(owner, name)
    setattr(owner, name, functools.wraps(original)(make(original)))
    try:
        yield
    finally:
        if before is missing:
            owner.__dict__.pop(name, None)
        else:
            setattr(owner, name, before)


def _span(marks: Marks, into: list[list[Any]]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            span = [marks.mark(), None]
            try:
                return original(*args, **kwargs)
            finally:
                span[1] = marks.mark()
                into.append(span)
        return timed
    return make


def _block(marks: Marks, spans: _Spans, which: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The first block marks its start and end; the remaining ones their first start and last end in the step."""
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            step = spans.steps[-1] if spans.steps else None
            if step is None:
                return original(*args, **kwargs)
            pair = step.first if which == "first" else step.remaining
            if which == "first" or pair[0] is None:
                pair[0] = marks.mark()
            output = original(*args, **kwargs)
            pair[1] = marks.mark() if which == "first" else marks.again(pair[1])
            return output
        return timed
    return make


@contextlib.contextmanager
def _instrumented(pipe: Any, marks: Marks, spans: _Spans) -> Iterator[bool]:
    """Every mark of one generation installed; yields whether the transformer's blocks are marked too (a model
    without FLUX's repeated blocks is profiled without them)."""
    transformer = pipe.transformer
    try:
        blocks = repeated_blocks(transformer)
    except ValueError:
        blocks = []
    handles = [transformer.register_forward_pre_hook(lambda *_: spans.steps.append(_Step(marks.mark()))),
               transformer.register_forward_hook(lambda *_: setattr(spans.steps[-1], "end", marks.mark()))]
    try:
        with contextlib.ExitStack() as stack:
            if hasattr(pipe, "encode_prompt"):
                stack.enter_context(_wrapped(pipe, "encode_prompt", _span(marks, spans.text)))
            stack.enter_context(_wrapped(pipe.vae, "decode", _span(marks, spans.vae)))
            for index, block in enumerate(blocks):
                stack.enter_context(_wrapped(block, "forward", _block(marks, spans, "first" if index == 0 else "rest")))
            yield bool(blocks)
    finally:
        for handle in handles:
            handle.remove()


def _summarize(marks: Marks, spans: _Spans, decisions: list[StepDecision] | None, generation: float,
               with_blocks: bool) -> dict[str, float]:
    """The profile's entries (fbcache/explain.py): seconds per part, the step and hit counts."""
    if decisions is None:  # uncached: every step computed
        hit_of = [False] * len(spans.steps)
    elif len(decisions) == len(spans.steps):
        hit_of = [d.hit for d in decisions]
    else:  # a cache that did not decide once per transformer call: a hit is a step whose remaining blocks never ran
        hit_of = [with_blocks and step.remaining[0] is None for step in spans.steps]
    parts = dict.fromkeys(("first_block", "remaining_blocks", "rest_computed", "rest_hit"), 0.0)
    for step, hit in zip(spans.steps, hit_of):
        whole = marks.seconds(step.start, step.end)
        first = marks.seconds(*step.first)
        remaining = marks.seconds(*step.remaining)
        parts["first_block"] += first
        parts["remaining_blocks"] += remaining
        parts["rest_hit" if hit else "rest_computed"] += whole - first - remaining
    return {"generation": generation,
            "text_encoding": sum(marks.seconds(*span) for span in spans.text),
            "vae_decode": sum(marks.seconds(*span) for span in spans.vae),
            **parts, "steps": len(spans.steps), "hits": sum(hit_of)}


# ------------------------------------------------------------------------------------ measuring: the generations


def breakdown(pipe: Any, backend: CacheBackend, threshold: Threshold | None, generate: Callable[[], Any],
              device: str, clock: Callable[[], float]) -> dict[str, float]:
    """One generation timed part by part: the marks go in first, then the cache wraps them."""
    marks, spans, log = Marks(device, clock), _Spans(), DecisionLog()
    with _instrumented(pipe, marks, spans) as with_blocks, cache_at(backend, threshold, log):
        marks.synchronize()
        log.start_generation()
        started = marks.mark()
        generate()
        ended = marks.mark()
        marks.synchronize()
        decisions = log.finish_generation()
    return _summarize(marks, spans, decisions if threshold is not None else None,
                      marks.seconds(started, ended), with_blocks)


def _attention_formulas() -> dict[Any, Any]:
    """The CPU's fused attention kernel, counted as torch counts the GPU's (FlopCounterMode leaves it out)."""
    import torch
    from torch.utils.flop_counter import sdpa_flop_count

    def sdpa(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None,
             **kwargs: Any) -> int:
        return int(sdpa_flop_count(query_shape, key_shape, value_shape))

    cpu_kernel = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {cpu_kernel: sdpa} if cpu_kernel is not None else {}


def _eager(compile_mode: str) -> Any:
    return contextlib.nullcontext() if compile_mode == "none" else compile_stance("force_eager")


#: a generation's kind of work: whether it ran uncached, and each step's hit and single-stream hit (a pair's
#: second decision, None for a plain threshold)
Work = tuple[bool, tuple[tuple[bool, bool | None], ...]]


def work_of(threshold: Threshold | None, decisions: Iterable[StepDecision]) -> Work:
    return threshold is None, tuple((bool(d.hit), d.single_hit) for d in decisions)


@dataclass(frozen=True)
class FlopsCount:
    """The FLOPs of one counted generation, its hits (None uncached) and its kind of work."""

    flops: int
    hits: int | None
    work: Work


def count_flops(backend: CacheBackend, threshold: Threshold | None, generate: Callable[[], Any],
                compile_mode: str) -> FlopsCount:
    """The FLOPs of one generation, counted."""
    from torch.utils.flop_counter import FlopCounterMode

    log = DecisionLog()
    with cache_at(backend, threshold, log), _eager(compile_mode):
        log.start_generation()
        with FlopCounterMode(display=False, custom_mapping=_attention_formulas()) as counter:
            generate()
        decisions = log.finish_generation()
    return FlopsCount(int(counter.get_total_flops()), None if threshold is None else summarize(decisions)[0],
                      work_of(threshold, decisions))


class FlopsMemo:
    """A run's FLOPs counts by kind of work, each with the label of the benchmark that counted it."""

    def __init__(self) -> None:
        self._counted: dict[Work, tuple[FlopsCount, str]] = {}

    def find(self, work: Work | None) -> tuple[FlopsCount, str] | None:
        return None if work is None else self._counted.get(work)

    def add(self, count: FlopsCount, label: str) -> None:
        self._counted.setdefault(count.work, (count, label))


@dataclass
class Explained:
    """What the untimed generations of one benchmark measured, and what they cost."""

    profile: dict[str, float] = field(default_factory=dict)
    flops: int | None = None
    flops_hits: int | None = None
    #: the benchmark whose count of the same kind of work was taken instead of counting again (None: counted)
    flops_from: str | None = None
    #: wall seconds of the profiled generation and of the FLOPs count
    profile_cost_s: float = 0.0
    flops_cost_s: float = 0.0

    @property
    def generations(self) -> int:
        """How many untimed generations ran."""
        return int(bool(self.profile)) + int(self.flops is not None and self.flops_from is None)

    @property
    def cost_s(self) -> float:
        return self.profile_cost_s + self.flops_cost_s

    def line(self, label: str) -> str:
        """The progress line written once both ran."""
        parts = []
        if self.profile:
            parts.append(f"profiled {self.profile['generation']:.2f} s ({int(self.profile['hits'])}/"
                         f"{int(self.profile['steps'])} hits)")
        if self.flops is not None and self.flops_from is not None:
            parts.append(f"{flops_text(self.flops)} as counted for {self.flops_from} (the same hit at every step)")
        elif self.flops is not None:
            parts.append(f"{flops_text(self.flops)} counted")
        return f"fbcache: {label} untimed: {', '.join(parts)}  [{self.cost_s:.1f} s]"


def explain_benchmark(pipe: Any, backend: CacheBackend, threshold: Threshold | None, generate: Callable[[], Any],
                      device: str, clock: Callable[[], float], compile_mode: str, with_breakdown: bool,
                      with_flops: bool, memo: FlopsMemo | None = None, work: Work | None = None,
                      label: str = "") -> Explained:
    """The profiled generation and the FLOPs count of one benchmark, each if asked for; the count is taken from
    ``memo`` when a benchmark of the same ``work`` (its timed rounds') was counted, and added to it otherwise."""
    found = Explained()
    if with_breakdown:
        started = time.perf_counter()
        found.profile = breakdown(pipe, backend, threshold, generate, device, clock)
        found.profile_cost_s = time.perf_counter() - started
    if with_flops:
        known = None if memo is None else memo.find(work)
        if known is None:
            started = time.perf_counter()
            count = count_flops(backend, threshold, generate, compile_mode)
            found.flops_cost_s = time.perf_counter() - started
            if memo is not None:
                memo.add(count, label)
        else:
            count, found.flops_from = known
        found.flops, found.flops_hits = count.flops, count.hits
    return found


__all__ = ["BREAKDOWN_HEADER", "COUNTS", "LEGEND", "NOT_MEASURED_NOTE", "PARTS", "SPEEDUP_HEADER", "TIMES", "CostModel",
           "Explained", "Explanation", "FlopsCount", "FlopsMemo", "Marks", "Profile", "Work", "breakdown",
           "breakdown_rows", "count_flops", "efficiency_rounds", "explain", "explain_benchmark", "fit", "flops_text",
           "has_explanations", "ideal_time", "markdown_section", "model_title", "speedup_rows", "work_of"]
