"""One line per threshold from the records of a run: a prompt set's benchmarks folded into their threshold.

A run with a prompt set holds one benchmark per (threshold, prompt). Tables, the cross-hardware
report and bounds read a threshold as a whole: the mean over the prompts and the worst prompt. For a
run of one prompt every aggregate is that prompt's own value, so a single-prompt run reads as before.

The set's speedup is the uncached time of the whole set over the cached time of the whole set (the
ratio of the sums of per-prompt median times): what a user of the set would wait, not a mean of
ratios that lets one fast prompt hide a slow one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from fbcache.history.record import BenchRecord, label_of
from fbcache.metrics import ImageMetric, all_metrics


@dataclass(frozen=True)
class MetricSummary:
    mean: float | None
    worst: float | None


@dataclass
class ThresholdSummary:
    """A threshold over every prompt the run measured (``threshold is None``: the uncached rows)."""

    threshold: float | None
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


def _prompt_key(record: BenchRecord) -> int:
    index = getattr(record, "prompt_index", None)
    return -1 if index is None else int(index)


def summarize(records: Iterable[BenchRecord]) -> list[ThresholdSummary]:
    """Per threshold (uncached first, then ascending), the records of every prompt folded together."""
    by_threshold: dict[float | None, list[BenchRecord]] = {}
    for record in records:
        by_threshold.setdefault(record.threshold, []).append(record)
    uncached = by_threshold.get(None, [])
    uncached_by_prompt = {_prompt_key(r): r.median_s for r in uncached}
    summaries = []
    for threshold in sorted(by_threshold, key=lambda t: (t is not None, t or 0.0)):
        group = sorted(by_threshold[threshold], key=_prompt_key)
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
