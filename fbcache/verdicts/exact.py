"""Verdicts on deterministic outputs: SSIM within a tolerance, hits exactly.

For a fixed seed and software stack, hits and SSIM do not vary between runs, so there is no noise to
measure: any hit change is reported, and an SSIM drop beyond the tolerance. Like the timings, they
are judged against the level at the start of the current segment (the first run, an accepted run,
or an SSIM improvement), not against the previous night, so a change stays visible on every later
run until it is undone or accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from fbcache.history.record import BenchRecord


@dataclass(frozen=True)
class ExactJudgement:
    status: str
    latest: float | None
    baseline: float | None
    detail: str
    since: int | None = None


@dataclass
class SsimTracker:
    tolerance: float
    reference: float | None = None
    since: int | None = None

    def judge(self, index: int, value: float | None, accepted: bool) -> ExactJudgement:
        if value is None:
            return ExactJudgement("not judged", None, self.reference, "no SSIM in this run")
        if accepted or self.reference is None:
            first = self.reference is None
            self.reference, self.since = value, None
            return ExactJudgement("not judged" if first and not accepted else ("accepted" if accepted else "ok"),
                                  value, value, "the first run of this benchmark" if first else "accepted")
        before = self.reference
        delta = value - before
        if delta < -self.tolerance:
            self.since = index if self.since is None else self.since
            return ExactJudgement("regression", value, before, f"{delta:+.4f}, beyond -{self.tolerance:g}", self.since)
        self.since = None
        if delta > self.tolerance:
            self.reference = value
            return ExactJudgement("improvement", value, before, f"{delta:+.4f}; the new reference")
        return ExactJudgement("ok", value, before, f"{delta:+.4f}, within ±{self.tolerance:g}")


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
        if accepted or self.reference is None:
            first = self.reference is None
            self.reference, self.since = record, None
            status = "accepted" if accepted else "not judged"
            return ExactJudgement(status, record.hits, record.hits, "the first run of this benchmark" if first
                                  else "accepted")
        before = self.reference
        if record.hits == before.hits and record.hit_trace == before.hit_trace:
            self.since = None
            return ExactJudgement("ok", record.hits, before.hits, "identical per step")
        self.since = index if self.since is None else self.since
        flipped = [i for i, (a, b) in enumerate(zip(record.hit_trace, before.hit_trace)) if a != b]
        return ExactJudgement("changed", record.hits, before.hits,
                              f"{before.hits} -> {record.hits} of {record.steps}; steps that flipped: {flipped}",
                              self.since)
