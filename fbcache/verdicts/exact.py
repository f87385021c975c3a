"""Verdicts on deterministic outputs: each registered image metric within its tolerance, hits exactly.

For a fixed seed and software stack, hits and image metrics do not vary between runs, so there is no noise to
measure: any hit change is reported, and an image metric's move the wrong way beyond its tolerance. Like
the timings, they are judged against the level at the start of the current segment (the first run, an
accepted run, or an improvement of the metric), not against the previous night, so a change stays
visible on every later run until it is undone or accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from fbcache.history.record import BenchRecord
from fbcache.metrics import ImageMetric

#: exact values need no noise model: the next run is judged against this one
FIRST_RUN = "the first run of this benchmark; exact, so judged from the next run on"


@dataclass(frozen=True)
class ExactJudgement:
    status: str
    latest: float | None
    baseline: float | None
    detail: str
    since: int | None = None
    #: "not judged" for want of history: how many more runs before it is judged
    runs_needed: int | None = None


@dataclass
class MetricTracker:
    """An image metric against the uncached image, within its tolerance."""

    metric: ImageMetric
    tolerance: float
    reference: float | None = None
    since: int | None = None

    def judge(self, index: int, value: float | None, accepted: bool) -> ExactJudgement:
        metric, shown = self.metric, self.metric.to_json
        if value is None:
            return ExactJudgement("not judged", None, shown(self.reference), f"no {metric.title} in this run")
        if accepted:
            self.reference, self.since = value, None
            return ExactJudgement("accepted", shown(value), shown(value), "accepted")
        if self.reference is None:
            self.reference, self.since = value, None
            return ExactJudgement("not judged", shown(value), None, FIRST_RUN, runs_needed=1)
        before = self.reference
        worse = metric.worse_by(value, before)
        delta = f"{metric.format(before)} -> {metric.format(value)}" if worse else "unchanged"
        if worse > self.tolerance:
            self.since = index if self.since is None else self.since
            return ExactJudgement("regression", shown(value), shown(before),
                                  f"{delta}, beyond the tolerance {self.tolerance:g}", self.since)
        self.since = None
        if worse < -self.tolerance:
            self.reference = value
            return ExactJudgement("improvement", shown(value), shown(before), f"{delta}; the new reference")
        return ExactJudgement("ok", shown(value), shown(before), f"{delta}, within ±{self.tolerance:g}")


@dataclass
class HitsTracker:
    reference: BenchRecord | None = None
    since: int | None = None

    def judge(self, index: int, record: BenchRecord, accepted: bool) -> ExactJudgement:
        if record.threshold is None:
            return ExactJudgement("ok", None, None, "uncached: no cache")
        if record.hits is None:
            return ExactJudgement("not judged", None, None, "no hits recorded")
        if not record.hits_consistent:
            return ExactJudgement("unstable", record.hits, None if self.reference is None else self.reference.hits,
                                  f"hits varied between rounds of one run: {record.hits_per_round}")
        if accepted:
            self.reference, self.since = record, None
            return ExactJudgement("accepted", record.hits, record.hits, "accepted")
        if self.reference is None:
            self.reference, self.since = record, None
            return ExactJudgement("not judged", record.hits, None, FIRST_RUN, runs_needed=1)
        before = self.reference
        if record.hits == before.hits and record.hit_trace == before.hit_trace:
            self.since = None
            return ExactJudgement("ok", record.hits, before.hits, "identical per step")
        self.since = index if self.since is None else self.since
        flipped = [i for i, (a, b) in enumerate(zip(record.hit_trace, before.hit_trace)) if a != b]
        return ExactJudgement("changed", record.hits, before.hits,
                              f"{before.hits} -> {record.hits} of {record.steps}; steps that flipped: {flipped}",
                              self.since)
