"""Where a timing becomes a stored record: the fields fbcache adds to each benchmark's extra_info.

pytest-benchmark stores ``extra_info`` verbatim in its own JSON, so the history keeps its standard
format and other tools can still read it. :class:`BenchRecord` is the one typed view of those fields,
used both when writing (the fixture) and when reading history back (compare, report).


**Per threshold.** One line per threshold from the records of a run: a prompt set's benchmarks folded into their threshold.

A run with a prompt set holds one benchmark per (threshold, prompt). Tables, the cross-hardware
report and bounds read a threshold as a whole: the mean over the prompts and the worst prompt. For a
run of one prompt every aggregate is that prompt's own value, so a single-prompt run reads as before.

The set's speedup is the uncached time of the whole set over the cached time of the whole set (the
ratio of the sums of per-prompt median times): what a user of the set would wait, not a mean of
ratios that lets one fast prompt hide a slow one.

**Per run.** The model's load time and its first generation's (the cold start) happen once per session, so
:class:`Startup` is stored once per run: a top-level ``fbcache_startup`` object of the run file, added through
pytest-benchmark's ``pytest_benchmark_update_json`` hook (its documented place for custom fields; it and its
``compare`` ignore the key). Not in ``machine_info``: pytest-benchmark warns on every ``--benchmark-compare``
whose machine_info differs, and a measurement differs every run. A run saved before the key existed loads
with no startup.
"""

from __future__ import annotations

import math
import statistics
import types
import typing
from collections.abc import Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from fbcache.config import Threshold, ThresholdPair, threshold_from_json, threshold_order, threshold_to_json
from fbcache.metrics import ImageMetric, all_metrics
from fbcache.metrics import names as metric_names

SCHEMA = 1
#: the label of the baseline benchmark, which runs with no cache hooks at all
UNCACHED = "uncached"
#: bytes per GiB, the unit peak memory is shown and bounded in
GIB = float(1 << 30)


#: extra_info fields that only runs with a prompt set have; absent (not null) otherwise, so a
#: single-prompt run keeps the layout it always had
PROMPT_FIELDS = ("prompt_index", "prompt")
#: extra_info fields of a MULTI/SINGLE threshold pair's second (single-stream) decision; absent otherwise
SINGLE_STREAM_FIELDS = ("single_hits", "single_hits_per_round", "single_residual_diff_trace", "single_hit_trace")


def label_of(threshold: Threshold | None, prompt_index: int | None = None) -> str:
    """'uncached' for the baseline, else the threshold as the user wrote it ('0.1', a pair '0.09/0.12'); with a prompt
    set, the prompt's index follows as in the pytest id: '0.1[p3]', 'uncached[p3]'."""
    base = UNCACHED if threshold is None else f"{threshold:g}"
    return base if prompt_index is None else f"{base}[p{prompt_index}]"


@dataclass
class BenchRecord:
    """One threshold's measurement (``threshold is None`` is the uncached baseline: no hooks at all)."""

    threshold: Threshold | None
    model: str
    quantization: str
    cache_backend: str
    steps: int
    resolution: str
    seed: int
    #: seconds of each timed generation, in order (pytest-benchmark's stats.data, copied for readers)
    rounds_s: list[float] = field(default_factory=list)
    warmup_rounds: int = 0
    #: CUDA-event seconds of the same calls; empty on CPU
    cuda_event_s: list[float] = field(default_factory=list)
    #: per timed round, the uncached generation timed next to it (interleaved rounds): the paired speedup's
    #: partner times. Empty for the uncached row and for runs that were not interleaved.
    paired_uncached_s: list[float] = field(default_factory=list)
    #: how the rounds were scheduled: "interleaved" (round by round over all benchmarks) or "sequential"
    schedule: str = "sequential"
    #: machine state before and after this benchmark's rounds (clocks, temperature, load; best effort)
    machine_state: dict[str, Any] = field(default_factory=dict)
    #: --fbcache-selfcheck: seconds of a bare ``pipe(...)`` + synchronize loop, same call, same process
    bare_loop_s: list[float] = field(default_factory=list)
    speedup: float | None = None
    hits: int | None = None
    computed_steps: int | None = None
    hits_per_round: list[int] = field(default_factory=list)
    #: per step: relative first-block residual difference (None at step 0) and whether it hit
    residual_diff_trace: list[float | None] = field(default_factory=list)
    hit_trace: list[bool] = field(default_factory=list)
    #: MULTI/SINGLE threshold pairs: the same for each step's second decision, after the first single-stream
    #: block (the fields above then hold the first, after the first double-stream block)
    single_hits: int | None = None
    single_hits_per_round: list[int] = field(default_factory=list)
    single_residual_diff_trace: list[float | None] = field(default_factory=list)
    single_hit_trace: list[bool] = field(default_factory=list)
    #: image metrics against the uncached image, by registry name (fbcache.metrics); stored in
    #: extra_info under their own names, as pytest-benchmark users expect; ``record.<name>`` reads one
    metrics: dict[str, float | None] = field(default_factory=dict)
    peak_memory_bytes: int | None = None
    #: --fbcache-compile of the session ("none": eager)
    compile_mode: str = "none"
    #: compiled sessions: seconds of the untimed first call in this cache state, the graphs it compiled,
    #: and compile_s = that call minus the timed median (clipped at 0): the first-call compile time
    compile_warmup_s: float | None = None
    compile_graphs: int | None = None
    compile_s: float | None = None
    #: --fbcache-breakdown: one untimed generation after the timed rounds, timed part by part (seconds per
    #: part, its steps and hits; fbcache/explain.py); empty when not measured
    profile: dict[str, float] = field(default_factory=dict)
    #: --fbcache-flops: the FLOPs of one untimed generation after the timed rounds, and its hits
    flops: int | None = None
    flops_hits: int | None = None
    #: compiled sessions: what that first call's compilation found in the compile cache: state (warm, cold,
    #: partial, bypassed, uncached; None: nothing compiled), inductor's cache hits, misses and bypasses, the
    #: --fbcache-compile-cache directory (None: torch's default), and a finding when a stack the directory
    #: already held compiled cold (plugin/compile_cache.py)
    compile_cache: dict[str, Any] = field(default_factory=dict)
    model_digest: str = ""
    timing_only: bool = False
    images: dict[str, str] = field(default_factory=dict)
    bounds: dict[str, Any] = field(default_factory=dict)
    #: with a prompt set: the prompt's index in the set and its text (``seed`` is its seed)
    prompt_index: int | None = None
    prompt: str | None = None
    schema: int = SCHEMA

    # -------------------------------------------------------------------- derived views
    if not TYPE_CHECKING:  # the package reads ``metrics[name]``, which the type checker sees

        def __getattr__(self, name: str) -> float | None:
            """``record.<metric>``: a registered image metric's value by its name, as extra_info stores it."""
            if name.startswith("_") or name not in metric_names():
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            return self.__dict__.get("metrics", {}).get(name)

    @property
    def label(self) -> str:
        return label_of(self.threshold, self.prompt_index)

    @property
    def threshold_label(self) -> str:
        """The threshold alone, shared by every prompt of a set."""
        return label_of(self.threshold)

    @property
    def first_s(self) -> float | None:
        return self.rounds_s[0] if self.rounds_s else None

    @property
    def second_s(self) -> float | None:
        return self.rounds_s[1] if len(self.rounds_s) > 1 else None

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.rounds_s) if self.rounds_s else None

    @property
    def paired_speedups(self) -> list[float]:
        """uncached / cached per round, from the recorded partner times (empty when not interleaved)."""
        return [u / c for u, c in zip(self.paired_uncached_s, self.rounds_s) if u > 0 and c > 0]

    @property
    def timer_agreement_pct(self) -> float | None:
        """Largest |host - CUDA event| / host over the timed rounds, in percent."""
        pairs = list(zip(self.rounds_s, self.cuda_event_s))
        return max(abs(host - event) / host * 100 for host, event in pairs) if pairs else None

    @property
    def overhead_pct(self) -> float | None:
        """Median recorded time over median bare-loop time, minus one, in percent."""
        if not self.bare_loop_s or not self.rounds_s:
            return None
        return (statistics.median(self.rounds_s) / statistics.median(self.bare_loop_s) - 1) * 100

    @property
    def hits_consistent(self) -> bool:
        return len(set(self.hits_per_round)) <= 1 and len(set(self.single_hits_per_round)) <= 1

    @property
    def bounds_ok(self) -> bool:
        return not self.bounds.get("violations")

    # -------------------------------------------------------------------- (de)serialisation
    def to_extra_info(self) -> dict[str, Any]:
        info = asdict(self)
        info["threshold"] = None if self.threshold is None else threshold_to_json(self.threshold)
        info["fbcache_schema"] = info.pop("schema")
        info["first_s"], info["second_s"], info["median_s"] = self.first_s, self.second_s, self.median_s
        info["hits_consistent"] = self.hits_consistent
        info["timer_agreement_pct"] = self.timer_agreement_pct
        info["overhead_pct"] = self.overhead_pct
        for metric in all_metrics():  # the ones the run computed: a metric it did not has no value, not null
            if metric.name in self.metrics:
                info[metric.name] = metric.to_json(self.metrics[metric.name])
        del info["metrics"]
        for name in PROMPT_FIELDS:
            if info[name] is None:
                del info[name]
        if not isinstance(self.threshold, ThresholdPair):
            for name in SINGLE_STREAM_FIELDS:
                del info[name]
        return info

    @classmethod
    def from_extra_info(cls, info: Any) -> BenchRecord:
        """Inverse of :meth:`to_extra_info`; ValueError naming the field on foreign or malformed data.

        Every field is checked against its annotation, so a record read back from a hand-edited or
        corrupted file is either fully typed or refused: readers never meet ``hits_per_round: 5``.
        """
        if not isinstance(info, dict):
            raise ValueError(f"extra_info is {type(info).__name__}, not an object")
        if info.get("fbcache_schema") != SCHEMA:
            raise ValueError(f"not an fbcache record (fbcache_schema={info.get('fbcache_schema')!r})")
        hints = _type_hints(cls)
        values: dict[str, Any] = {}
        for spec in fields(cls):
            if spec.name in ("schema", "metrics"):
                continue
            if spec.name not in info:
                if spec.default is MISSING and spec.default_factory is MISSING:
                    raise ValueError(f"extra_info.{spec.name} is missing")
                continue
            if spec.name == "threshold" and info["threshold"] is not None:  # a number, or a pair's object
                try:
                    values["threshold"] = threshold_from_json(info["threshold"])
                except ValueError as exc:
                    raise ValueError(f"extra_info.threshold = {_short(info['threshold'])}: {exc}") from None
                continue
            problem = type_problem(info[spec.name], hints[spec.name])
            if problem:
                raise ValueError(f"extra_info.{spec.name} = {_short(info[spec.name])}: {problem}")
            values[spec.name] = info[spec.name]
        for key in ("violations", "reported"):  # read by compare and report as lists of messages
            problem = type_problem(values.get("bounds", {}).get(key, []), list[str])
            if problem:
                raise ValueError(f"extra_info.bounds.{key}: {problem}")
        metrics = {}
        for metric in all_metrics():  # stored under their own names
            if metric.name in info:
                raw = info[metric.name]
                problem = type_problem(raw, float | None)
                if problem:
                    raise ValueError(f"extra_info.{metric.name} = {_short(raw)}: {problem}")
                metrics[metric.name] = metric.from_json(raw)
        return cls(**values, metrics=metrics)


_HINTS: dict[type, dict[str, Any]] = {}


def _type_hints(cls: type) -> dict[str, Any]:
    """The annotations of a record class, resolved once: resolving them costs more than checking a record."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def type_problem(value: Any, annotation: Any) -> str:
    """Why ``value`` (decoded JSON) does not fit ``annotation``; empty when it does.

    Handles what BenchRecord uses: float (finite; ints accepted), int, str, bool, Any, ``X | None``,
    ``list[X]`` and ``dict[str, X]``. bool is never accepted as a number.
    """
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return ""
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return ""
        problems = [type_problem(value, option) for option in options if option is not type(None)]
        return "" if any(p == "" for p in problems) else problems[0]
    if origin is list:
        if not isinstance(value, list):
            return f"expected a list, got {type(value).__name__}"
        (item,) = typing.get_args(annotation)
        for index, element in enumerate(value):
            problem = type_problem(element, item)
            if problem:
                return f"item {index}: {problem}"
        return ""
    if origin is dict:
        if not isinstance(value, dict):
            return f"expected an object, got {type(value).__name__}"
        _, item = typing.get_args(annotation)
        for key, element in value.items():
            problem = type_problem(element, item)
            if problem:
                return f"key {key!r}: {problem}"
        return ""
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number, got {type(value).__name__}"
        return "" if math.isfinite(value) else "not a finite number"
    if annotation is int:
        return "" if isinstance(value, int) and not isinstance(value, bool) else \
            f"expected a whole number, got {type(value).__name__}"
    if annotation in (str, bool):
        return "" if isinstance(value, annotation) else f"expected {annotation.__name__}, got {type(value).__name__}"
    return ""  # pragma: no cover - an annotation this checker does not know: accept


@dataclass(frozen=True)
class MetricSummary:
    mean: float | None
    worst: float | None


@dataclass
class ThresholdSummary:
    """A threshold over every prompt the run measured (``threshold is None``: the uncached rows)."""

    threshold: Threshold | None
    records: list[BenchRecord]
    #: sum over the prompts of each prompt's median time
    total_median_s: float | None
    speedup: float | None
    hits_mean: float | None
    hits_min: int | None
    hits_max: int | None
    steps: int
    metrics: dict[str, MetricSummary] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return label_of(self.threshold)

    @property
    def prompts(self) -> int:
        return len(self.records)

    @property
    def mean_median_s(self) -> float | None:
        return None if self.total_median_s is None else self.total_median_s / len(self.records)


def _mean(values: list[float]) -> float | None:
    """Mean over the prompts. Infinite values (PSNR of identical images) would make any mean infinite and
    hide the prompts that differ, so the mean is over the finite values; inf only when all are."""
    finite = [v for v in values if not math.isinf(v)]
    if not values:
        return None
    return statistics.fmean(finite) if finite else values[0]


def summarize_metric(metric: ImageMetric, records: list[BenchRecord]) -> MetricSummary:
    values = [v for r in records if (v := r.metrics.get(metric.name)) is not None]
    if not values:
        return MetricSummary(None, None)
    worst = min(values) if metric.higher_is_better else max(values)
    return MetricSummary(_mean(values), worst)


def _prompt_key(record: object) -> int:
    index = getattr(record, "prompt_index", None)
    return -1 if index is None else int(index)


class _HasThreshold(Protocol):
    @property
    def threshold(self) -> Threshold | None: ...


_Row = TypeVar("_Row", bound=_HasThreshold)


def order_key(row: _HasThreshold) -> tuple[bool, tuple[float, int, float], int]:
    """The sort key of :func:`ordered`."""
    threshold = row.threshold
    return threshold is not None, (0.0, 0, 0.0) if threshold is None else threshold_order(threshold), _prompt_key(row)


def ordered(rows: Iterable[_Row]) -> list[_Row]:
    """Records (or threshold summaries) in display order: the uncached baseline first, then thresholds by
    :func:`~fbcache.config.threshold_order`; a prompt set's prompts in order within each, a record without one first."""
    return sorted(rows, key=order_key)


def summarize(records: Iterable[BenchRecord]) -> list[ThresholdSummary]:
    """Per threshold (uncached first, then ascending), the records of every prompt folded together."""
    by_threshold: dict[Threshold | None, list[BenchRecord]] = {}
    for record in ordered(records):
        by_threshold.setdefault(record.threshold, []).append(record)
    uncached = by_threshold.get(None, [])
    uncached_by_prompt = {_prompt_key(r): r.median_s for r in uncached}
    summaries = []
    for threshold, group in by_threshold.items():
        medians = [r.median_s for r in group]
        total = sum(m for m in medians if m is not None) if all(m is not None for m in medians) else None
        speedup = None
        if threshold is not None:
            if len(group) == 1:
                speedup = group[0].speedup
            else:
                baseline = [uncached_by_prompt.get(_prompt_key(r)) for r in group]
                if total and all(b is not None for b in baseline):
                    speedup = sum(b for b in baseline if b is not None) / total
        hits = [r.hits for r in group if r.hits is not None]
        summaries.append(ThresholdSummary(
            threshold=threshold, records=group, total_median_s=total, speedup=speedup,
            hits_mean=statistics.fmean(hits) if hits else None, hits_min=min(hits) if hits else None,
            hits_max=max(hits) if hits else None, steps=group[0].steps,
            metrics={m.name: summarize_metric(m, group) for m in all_metrics()}))
    return summaries


def is_prompt_set(records: Iterable[BenchRecord]) -> bool:
    """Whether these records come from a run with a prompt set (any record names its prompt)."""
    return any(getattr(r, "prompt_index", None) is not None for r in records)


#: the run file's top-level key of :class:`Startup`
STARTUP_KEY = "fbcache_startup"
#: the row labels of the two startup series in compare, nightly and the report
LOAD_LABEL = "model load"
COLD_START_LABEL = "cold start"


@dataclass(frozen=True)
class Startup:
    """Wall-clock seconds, once per run; None where the session never got that far."""

    #: loading the pipeline onto the device
    model_load_s: float | None = None
    #: the session's first generation (its first warm-up round; its first timed round without warm-ups):
    #: what the first image after a load costs, one-time work (kernel loading, autotuning, compilation) included
    cold_start_s: float | None = None

    def by_label(self) -> dict[str, float]:
        """The series this run has a value for, by row label."""
        values = {LOAD_LABEL: self.model_load_s, COLD_START_LABEL: self.cold_start_s}
        return {label: value for label, value in values.items() if value is not None and value > 0}

    def to_json(self) -> dict[str, float]:
        return {name: value for name, value in (("model_load_s", self.model_load_s),
                                                ("cold_start_s", self.cold_start_s)) if value is not None}

    @classmethod
    def from_run(cls, data: dict[str, Any]) -> Startup | None:
        """The startup of a run file's document (None: saved without one); ValueError naming the field if malformed."""
        raw = data.get(STARTUP_KEY)
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise ValueError(f"{STARTUP_KEY} is {type(raw).__name__}, not an object")
        values: dict[str, float | None] = {}
        for name in ("model_load_s", "cold_start_s"):
            value = raw.get(name)
            problem = type_problem(value, float | None)
            if not problem and value is not None and value < 0:
                problem = "a duration below 0"
            if problem:
                raise ValueError(f"{STARTUP_KEY}.{name} = {_short(value)}: {problem}")
            values[name] = None if value is None else float(value)
        return cls(**values)


def slowest_startup(startups: Iterable[Startup | None]) -> Startup | None:
    """The shards of one sweep as one run: each value the slowest shard's, the one the sweep waited for."""
    known = [s for s in startups if s is not None]

    def worst(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return max(present) if present else None

    if not known:
        return None
    return Startup(worst([s.model_load_s for s in known]), worst([s.cold_start_s for s in known]))
