"""The one judge: walk a fingerprint's history oldest first and give every run its verdicts.

``fbcache compare`` and ``fbcache nightly`` show the last step of the walk; the report's trends
mark every step. Each benchmark has up to four noisy series (stats.py): its median time, its
paired speedup over the uncached run (cached thresholds), its efficiency (cached thresholds with
hits, runs with profiles: ideal time / measured time per round, fbcache/explain.py), and the
geometric mean of all median times (row "all benchmarks"); and exact ones (:class:`MetricTracker`, :class:`HitsTracker`): each image
metric of the registry and hits. At every run:

1. each series' run-to-run residuals so far and its within-run noise (stats.py) are pooled over
   the benchmarks of that metric;
2. the number of tests of this compare (a level test and a drift test per noisy series) sets the
   per-test false-alarm budget (stats.py); each series is judged against its reference segment;
3. rules that need more than one series: a slower uncached baseline makes every speedup rise, and
   that is never reported as an improvement (the uncached time itself is the regression); CPU
   timing is advisory unless ``judge_cpu_timing``.

Exact values. For a fixed seed and software stack, hits and image metrics do not vary between runs,
so there is no noise to measure: any hit change is reported, and an image metric's move the wrong way
beyond its tolerance. Like the timings, they are judged against the level at the start of the current
segment (the first run, an accepted run, or an improvement of the metric), not against the previous
night, so a change stays visible on every later run until it is undone or accepted.

Peak GPU memory (:class:`PeakMemoryTracker`) is nearly exact: an allocator's peak barely moves between
identical runs. Its reference is the median peak of the current segment and its tolerance is
``max(2%, 3 x spread)``, where the spread is the largest relative distance of the segment's peaks from
that median; a rise beyond the tolerance is a regression, a fall beyond it an improvement (and the new
reference). Like the other exact values it is judged from a benchmark's second run; a CPU run has no
allocator peak (None) and is not judged.

Startup (rows "model load" and "cold start", from the run's :class:`~fbcache.history.Startup`): one value
a run, so no within-run noise exists. Each is a noisy time series judged by the same tracker, with its
run-to-run noise from its own history alone, and two guards against that noise being underestimated
(startup times have a long upper tail: docs/verdicts.md shows the measured case): it is "too noisy to
judge" until its noise has ``STARTUP_MIN_DF`` degrees of freedom (a few quiet runs by chance would set
a narrow gate), and it alerts only on a confirmed step: a second run beyond the gate in the same
regression (a regression since the first). A first run beyond the gate, and whatever else the tracker
calls a regression without two runs beyond the gate, is advisory: shown, not alerting (a false alarm
costs more than a late one).

FLOPs (:class:`FlopsTracker`) are exact on every device, a CPU's included: any change against the
segment's count is a finding, "work changed: +x%".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from fbcache import explain
from fbcache.history import COLD_START_LABEL, GIB, LOAD_LABEL, BenchRecord, label_of, ordered
from fbcache.history.storage import Acceptance, Run
from fbcache.metrics import ImageMetric, all_metrics
from fbcache.verdicts import (
    RUN_LABEL,
    CompareResult,
    CompareSettings,
    ThresholdResult,
    Verdict,
)
from fbcache.verdicts.stats import (
    GateSettings,
    Judgement,
    MedianInterval,
    Point,
    SeriesNoise,
    Tracker,
    dispersion,
    logs,
    median_interval,
    median_variance,
    paired_ratios,
    pool,
)

TIME, SPEEDUP, PEAK_MEMORY = "time", "speedup", "peak_memory"
#: the series key of the startup times (their verdicts are "time" verdicts of their own rows)
STARTUP = "startup"
#: degrees of freedom a startup series' run-to-run noise needs before it is judged (about 11 runs)
STARTUP_MIN_DF = 10
#: issue 24: ideal time / measured time per round (noisy, like speedup); FLOPs of one generation (exact)
EFFICIENCY, FLOPS = "efficiency", "flops"
#: noisy series whose smaller values are worse
_HIGHER_IS_BETTER = (SPEEDUP, EFFICIENCY)
#: the peak-memory tolerance never falls below this relative change ...
PEAK_MEMORY_FLOOR = 0.02
#: ... and is at least this many times the segment's run-to-run spread
PEAK_MEMORY_SPREADS = 3.0
#: tests per noisy series: its level, the pair of its last two runs, and its drift
TESTS_PER_SERIES = 3


@dataclass(frozen=True)
class Observation:
    """One run's value of one noisy series: the log of its median, and the logs of its rounds."""

    value: float
    rounds: list[float]
    interval: MedianInterval | None = None
    paired: bool = True


def observe_time(record: BenchRecord) -> Observation | None:
    rounds = logs(record.rounds_s)
    if not rounds:
        return None
    return Observation(statistics.median(rounds), rounds)


def observe_speedup(record: BenchRecord, uncached: BenchRecord | None) -> Observation | None:
    """Paired ratios from recorded partner times; runs saved before interleaving pair rounds by index."""
    if record.threshold is None:
        return None
    paired = bool(record.paired_uncached_s)
    if paired:
        ratios = record.paired_speedups
    elif uncached is not None:
        ratios = paired_ratios(uncached.rounds_s, record.rounds_s)
    else:
        return None
    rounds = logs(ratios)
    if not rounds:
        return None
    return Observation(statistics.median(rounds), rounds, median_interval(ratios), paired)


def observe_efficiency(record: BenchRecord, uncached: BenchRecord | None, blocks: float | None) -> Observation | None:
    """Efficiency per round (fbcache/explain.py): only rows with hits and a run with profiles; at zero hits it
    would be the paired speedup, judged as such."""
    rounds = logs(explain.efficiency_rounds(record, uncached, blocks))
    if not rounds:
        return None
    return Observation(statistics.median(rounds), rounds, paired=bool(record.paired_uncached_s))


def observe_geomean(run: Run, labels: list[str]) -> Observation | None:
    """Geometric mean of the benchmarks' times, per round and of the medians: one number for the sweep."""
    records = [run.records.get(label) for label in labels]
    if len(labels) < 2 or any(r is None or not logs(r.rounds_s) for r in records):
        return None
    per_label = [logs(r.rounds_s) for r in records if r is not None]
    width = min(len(x) for x in per_label)
    rounds = [sum(x[j] for x in per_label) / len(per_label) for j in range(width)]
    value = sum(statistics.median(x) for x in per_label) / len(per_label)
    return Observation(value, rounds)


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
    #: a MULTI/SINGLE pair's single-stream hits, [latest, baseline]; None for a single threshold
    single: list[float | None] | None = None


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
        judged = self._judge(index, record, accepted)
        if record.single_hits is None or judged.latest is None:
            return judged
        # a MULTI/SINGLE pair: its single-stream hits beside the verdict, the baseline's from the same reference
        base = None if judged.baseline is None or self.reference is None else self.reference.single_hits
        return replace(judged, single=[record.single_hits, base])

    def _judge(self, index: int, record: BenchRecord, accepted: bool) -> ExactJudgement:
        if record.threshold is None:
            return ExactJudgement("ok", None, None, "uncached: no cache")
        if record.hits is None:
            return ExactJudgement("not judged", None, None, "no hits recorded")
        if not record.hits_consistent:
            single = f", single-stream {record.single_hits_per_round}" if record.single_hits_per_round else ""
            return ExactJudgement("unstable", record.hits, None if self.reference is None else self.reference.hits,
                                  f"hits varied between rounds of one run: {record.hits_per_round}{single}")
        if accepted:
            self.reference, self.since = record, None
            return ExactJudgement("accepted", record.hits, record.hits, "accepted")
        if self.reference is None:
            self.reference, self.since = record, None
            return ExactJudgement("not judged", record.hits, None, FIRST_RUN, runs_needed=1)
        before = self.reference
        # a MULTI/SINGLE pair: the single-stream decisions count as much as the double-stream ones
        if (record.hits, record.hit_trace, record.single_hit_trace) == (before.hits, before.hit_trace,
                                                                         before.single_hit_trace):
            self.since = None
            return ExactJudgement("ok", record.hits, before.hits, "identical per step")
        self.since = index if self.since is None else self.since
        flipped = [i for i, (a, b) in enumerate(zip(record.hit_trace, before.hit_trace)) if a != b]
        why = f"{before.hits} -> {record.hits} of {record.steps}; steps that flipped: {flipped}"
        if record.single_hit_trace != before.single_hit_trace:
            pairs = zip(record.single_hit_trace, before.single_hit_trace)
            why += (f"; single-stream {before.single_hits} -> {record.single_hits}, steps that flipped: "
                    f"{[i for i, (a, b) in enumerate(pairs) if a != b]}")
        return ExactJudgement("changed", record.hits, before.hits, why, self.since)


@dataclass
class FlopsTracker:
    """A benchmark's FLOPs against its segment's: deterministic, so any change is a finding ("work changed")."""

    reference: BenchRecord | None = None
    since: int | None = None

    def judge(self, index: int, record: BenchRecord, accepted: bool) -> ExactJudgement:
        flops = record.flops
        if flops is None:
            return ExactJudgement("not judged", None, None, "no FLOPs count in this run")
        if accepted:
            self.reference, self.since = record, None
            return ExactJudgement("accepted", flops, flops, "accepted")
        if self.reference is None or self.reference.flops is None:
            self.reference, self.since = record, None
            return ExactJudgement("not judged", flops, None, FIRST_RUN, runs_needed=1)
        before, base = self.reference, self.reference.flops
        if flops == base:
            self.since = None
            return ExactJudgement("ok", flops, base, f"identical: {explain.flops_text(flops)}")
        self.since = index if self.since is None else self.since
        change = flops / base - 1 if base else float("inf")
        detail = (f"work changed: {change:+.1%} ({explain.flops_text(base)} -> {explain.flops_text(flops)} "
                  "per generation)")
        if record.flops_hits != before.flops_hits:
            detail += f"; its hits changed too ({before.flops_hits} -> {record.flops_hits})"
        return ExactJudgement("changed", flops, base, detail, self.since)


@dataclass
class PeakMemoryTracker:
    """A benchmark's allocator peak against its segment's median, within ``max(2%, 3 x spread)``."""

    segment: list[int] = field(default_factory=list)
    since: int | None = None

    def tolerance(self) -> float:
        centre = statistics.median(self.segment)
        spread = max(abs(p / centre - 1.0) for p in self.segment)
        return max(PEAK_MEMORY_FLOOR, PEAK_MEMORY_SPREADS * spread)

    def judge(self, index: int, peak: int | None, accepted: bool) -> ExactJudgement:
        if peak is None or peak <= 0:
            return ExactJudgement("not judged", None, None, "no GPU allocator peak in this run")
        latest = peak / GIB
        if accepted:
            self.segment, self.since = [peak], None
            return ExactJudgement("accepted", latest, latest, "accepted")
        if not self.segment:
            self.segment = [peak]
            return ExactJudgement("not judged", latest, None, FIRST_RUN, runs_needed=1)
        centre = statistics.median(self.segment)
        tolerance = self.tolerance()
        change = peak / centre - 1.0
        delta = f"{centre / GIB:.3f} -> {latest:.3f} GiB ({change:+.1%})"
        rule = f"tolerance {tolerance:.1%} = max({PEAK_MEMORY_FLOOR:.0%}, {PEAK_MEMORY_SPREADS:g} x run-to-run spread)"
        if change > tolerance:
            self.since = index if self.since is None else self.since
            return ExactJudgement("regression", latest, centre / GIB, f"{delta}, beyond the {rule}", self.since)
        self.since = None
        if change < -tolerance:
            self.segment = [peak]
            return ExactJudgement("improvement", latest, centre / GIB, f"{delta}, beyond the {rule}; the new reference")
        self.segment.append(peak)
        return ExactJudgement("ok", latest, centre / GIB, f"{delta}, within the {rule}")


@dataclass
class _Series:
    tracker: Tracker
    within: list[list[float]]


class HistoryJudge:
    """Walks one fingerprint's runs (oldest first); :meth:`walk` returns one result per run."""

    def __init__(self, runs: list[Run], acceptances: Mapping[str, Acceptance] | None = None,
                 settings: CompareSettings | None = None) -> None:
        self.runs = runs
        self.acceptances = dict(acceptances or {})
        self.settings = settings = settings or CompareSettings()
        self.gates = GateSettings(alpha=settings.alpha, floor=settings.min_effect, max_mde=settings.max_mde)
        self.labels = [r.label for r in ordered(runs[-1].records.values())] if runs else []
        self.series: dict[tuple[str, str], _Series] = {}
        self.image_metrics: dict[tuple[str, str], MetricTracker] = {}
        self.hits: dict[str, HitsTracker] = {}
        self.peaks: dict[str, PeakMemoryTracker] = {}
        self.flops: dict[str, FlopsTracker] = {}
        self._current = ""

    def _series(self, metric: str, label: str) -> _Series:
        key = (metric, label)
        if key not in self.series:
            worse = -1 if metric in _HIGHER_IS_BETTER else 1
            min_df = STARTUP_MIN_DF if metric == STARTUP else 1
            self.series[key] = _Series(Tracker(worse, self.gates, self.settings.history, min_df=min_df), [])
        return self.series[key]

    def walk(self) -> list[CompareResult]:
        return [self._judge_run(index) for index in range(len(self.runs))]

    # ---------------------------------------------------------------- one run
    def _observations(self, run: Run) -> dict[tuple[str, str], Observation]:
        found: dict[tuple[str, str], Observation] = {}
        model = explain.fit(run.records.values())
        blocks = model.blocks if model is not None else None
        for record in ordered(run.records.values()):
            if (obs := observe_time(record)) is not None:
                found[(TIME, record.label)] = obs
            uncached = run.records.get(label_of(None, record.prompt_index))
            if (obs := observe_speedup(record, uncached)) is not None:
                found[(SPEEDUP, record.label)] = obs
            if (obs := observe_efficiency(record, uncached, blocks)) is not None:
                found[(EFFICIENCY, record.label)] = obs
        if (obs := observe_geomean(run, self.labels)) is not None:
            found[(TIME, RUN_LABEL)] = obs
        for label, seconds in (run.startup.by_label() if run.startup is not None else {}).items():
            value = math.log(seconds)
            found[(STARTUP, label)] = Observation(value, [value])  # one value: no within-run noise
        return found

    def _noisy_judgements(self, index: int, accepted: str | None) -> dict[tuple[str, str], tuple[Judgement, Observation]]:
        observations = self._observations(self.runs[index])
        variances: dict[tuple[str, str], float] = {}
        for key, obs in observations.items():
            series = self._series(*key)
            series.within.append(obs.rounds)
            variances[key] = median_variance(dispersion(series.within), len(obs.rounds))
        noise = {k: SeriesNoise(self.series[k].tracker.residuals(), variances[k]) for k in observations}
        pooled = {metric: pool(n for k, n in noise.items() if k[0] == metric)
                  for metric in (TIME, SPEEDUP, EFFICIENCY, STARTUP)}
        judged = sum(1 for k in observations if self._tested(self.series[k].tracker))
        tests = max(1, TESTS_PER_SERIES * judged)
        results = {}
        for key, obs in observations.items():
            sigma, df = pooled[key[0]].moderated(noise[key])
            judgement = self.series[key].tracker.judge(Point(index, obs.value), sigma, df, tests,
                                                       self.settings.min_history, accepted)
            results[key] = (judgement, obs)
        return results

    def _tested(self, tracker: Tracker) -> bool:
        """Whether this series is tested at this run (and so takes a share of the false-alarm budget)."""
        if tracker.seen < self.settings.min_history:
            return False
        return tracker.min_df <= 1 or tracker.residuals().df >= tracker.min_df

    def _judge_run(self, index: int) -> CompareResult:
        run = self.runs[index]
        self._current = run.name
        acceptance = self.acceptances.get(run.name)
        accepted = (acceptance.reason or "no reason given") if acceptance is not None else None
        noisy = self._noisy_judgements(index, accepted)
        rows: list[ThresholdResult] = []
        for record in ordered(run.records.values()):
            verdicts = [_bounds_verdict(record)] if record.bounds.get("profile") or record.bounds.get("violations") else []
            for metric in (TIME, SPEEDUP, EFFICIENCY):
                if (metric, record.label) in noisy:
                    verdicts.append(self._noisy_verdict(index, metric, *noisy[(metric, record.label)]))
            if record.threshold is not None:
                for image_metric in all_metrics():
                    name = image_metric.name
                    if name not in record.metrics and (name, record.label) not in self.image_metrics:
                        continue  # never computed for this benchmark (an opt-in metric): nothing to judge
                    tolerance = self.settings.tolerances.get(name, image_metric.tolerance)
                    tracker = self.image_metrics.setdefault((name, record.label), MetricTracker(image_metric, tolerance))
                    judged = tracker.judge(index, record.metrics.get(name), accepted is not None)
                    verdicts.append(self._exact_verdict(name, judged))
                hits = self.hits.setdefault(record.label, HitsTracker())
                verdicts.append(self._exact_verdict("hits", hits.judge(index, record, accepted is not None)))
            if record.flops is not None:  # exact on every device, CPU included
                flops = self.flops.setdefault(record.label, FlopsTracker())
                verdicts.append(self._exact_verdict(FLOPS, flops.judge(index, record, accepted is not None)))
            if record.peak_memory_bytes is not None:  # a CPU run has no allocator peak: no verdict, shown "—"
                peaks = self.peaks.setdefault(record.label, PeakMemoryTracker())
                verdicts.append(self._exact_verdict(PEAK_MEMORY, peaks.judge(index, record.peak_memory_bytes,
                                                                            accepted is not None)))
            rows.append(ThresholdResult(record.label, verdicts))
        if (TIME, RUN_LABEL) in noisy:
            rows.append(ThresholdResult(RUN_LABEL, [self._noisy_verdict(index, TIME, *noisy[(TIME, RUN_LABEL)],
                                                                        geomean=True)]))
        for label in (LOAD_LABEL, COLD_START_LABEL):
            if (STARTUP, label) in noisy:
                rows.append(ThresholdResult(label, [self._startup_verdict(index, *noisy[(STARTUP, label)])]))
        notes = self._notes(index)
        _no_improvement_from_a_slower_baseline(rows, run)
        if str(run.fingerprint.get("accelerator", "")).startswith("cpu") and not self.settings.judge_cpu_timing:
            _demote_cpu_timing(rows, notes)
        return CompareResult(run.name, self._baseline_text(index), run.fingerprint, self.settings, rows, notes)

    # ---------------------------------------------------------------- verdicts
    def _name(self, index: int | None) -> str | None:
        return None if index is None else self.runs[index].name

    def _noisy_verdict(self, index: int, metric: str, judgement: Judgement, obs: Observation,
                       geomean: bool = False) -> Verdict:
        latest = math.exp(obs.value)
        baseline = None if judgement.reference_centre is None else math.exp(judgement.reference_centre)
        detail = judgement.detail
        since = self._name(judgement.since) if judgement.status == "regression" else None
        if since is not None and judgement.since != index:
            detail = f"regressed since run {since}: {detail}"
        if geomean:
            detail = f"geometric mean of all median times: {detail}"
        if metric in _HIGHER_IS_BETTER and not obs.paired:
            detail += "; rounds paired by index (run not interleaved)"
        if metric == EFFICIENCY and judgement.status == "regression":
            detail = f"the cached path got slower than its hits explain: {detail}"
        interval = None if obs.interval is None else [obs.interval.low, obs.interval.high, obs.interval.coverage]
        mde = None if judgement.gate is None else judgement.gate.mde
        return Verdict(metric, judgement.status, latest, baseline, detail, judgement.effect, mde, since, interval,
                       judgement.runs_needed)

    def _startup_verdict(self, index: int, judgement: Judgement, obs: Observation) -> Verdict:
        """A startup time's verdict. It alerts only on a confirmed step: this run beyond the gate, and an earlier run
        of the same regression beyond its own; any other regression (a first run beyond the gate, a run inside it,
        a pair or a drift inside it) is advisory, since one slow value may be the tail of the noise."""
        verdict = self._noisy_verdict(index, TIME, judgement, obs)
        if verdict.status != "regression":
            return verdict
        beyond = judgement.gate is not None and judgement.effect is not None and judgement.effect > judgement.gate.mde
        if beyond and judgement.beyond_runs >= 2:
            return verdict
        verdict.status = "advisory"
        verdict.detail += "; one value a run: it alerts once a second run is beyond the gate"
        return verdict

    def _exact_verdict(self, metric: str, judgement: ExactJudgement) -> Verdict:
        since = self._name(judgement.since)
        detail = judgement.detail if since is None or since == self._current else f"since run {since}: {judgement.detail}"
        return Verdict(metric, judgement.status, judgement.latest, judgement.baseline, detail, since=since,
                       runs_needed=judgement.runs_needed, single=judgement.single)

    def _notes(self, index: int) -> list[str]:
        run = self.runs[index]
        notes = []
        if index > 0:
            previous = self.runs[index - 1]
            for label in [r.label for r in ordered(previous.records.values()) if r.label not in run.records]:
                notes.append(f"{label}: in the previous run but not in this one")
            before = (previous.machine_info.get("fbcache") or {}).get("versions") or {}
            now = (run.machine_info.get("fbcache") or {}).get("versions") or {}
            changed = [f"{k} {before.get(k)} -> {now.get(k)}" for k in sorted(set(before) | set(now))
                       if before.get(k) != now.get(k)]
            if changed:
                notes.append("library versions changed since the previous run: " + ", ".join(changed))
        for record in ordered(run.records.values()):
            for warning in (record.machine_state or {}).get("warnings", []):
                notes.append(f"{record.label}: machine state: {warning}")
            if record.compile_cache.get("finding"):
                notes.append(f"compile cache: {record.compile_cache['finding']}")
        acceptance = self.acceptances.get(run.name)
        if acceptance is not None:
            notes.append(f"this run was accepted as the new baseline ({acceptance.accepted_at}): {acceptance.reason}")
        return notes

    def _baseline_text(self, index: int) -> str:
        if index == 0:
            return "nothing: the first run with this fingerprint"
        fingerprint = self.runs[index].fingerprint_id
        return (f"the baseline segments of {index} earlier run(s) with fingerprint {fingerprint} "
                f"({self.runs[0].name} .. {self.runs[index - 1].name})")


def _bounds_verdict(record: BenchRecord) -> Verdict:
    """Bounds are absolute floors: judged on every run, the first included."""
    violations = record.bounds.get("violations") or []
    if violations:
        return Verdict("bounds", "regression", None, None, "; ".join(violations))
    return Verdict("bounds", "ok", None, None, f"within profile {record.bounds.get('profile')}")


def _no_improvement_from_a_slower_baseline(rows: list[ThresholdResult], run: Run) -> None:
    """When an uncached run got slower, its prompt's speedups rise: that is the uncached regression, not a gain."""
    by_label = {row.label: row for row in rows}  # a lookup per record: a run may hold thousands
    slower = {record.prompt_index for record in run.records.values() if record.threshold is None
              and (row := by_label.get(record.label)) is not None
              and (verdict := row.verdict(TIME)) is not None and verdict.status == "regression"}
    for row in rows:
        record = run.records.get(row.label)
        if record is None or record.prompt_index not in slower:
            continue
        for verdict in (row.verdict(SPEEDUP), row.verdict(EFFICIENCY)):
            if verdict is not None and verdict.status == "improvement":
                verdict.status = "ok"
                verdict.detail += "; not an improvement: the uncached baseline itself got slower (see its time)"


def _demote_cpu_timing(rows: list[ThresholdResult], notes: list[str]) -> None:
    """CPU timing verdicts become advisory: shown in full, never alerting."""
    demoted = 0
    for row in rows:
        for verdict in row.verdicts:
            if verdict.metric in (TIME, SPEEDUP, EFFICIENCY) and verdict.status == "regression":
                verdict.status = "advisory"
                verdict.detail += "; advisory: CPU timing (--judge-cpu-timing to alert on it)"
                demoted += 1
    if demoted:
        notes.append(f"{demoted} CPU timing verdict(s) reported as advisory, not alerted")


def judge_series(runs: list[Run], acceptances: Mapping[str, Acceptance] | None = None,
                 settings: CompareSettings | None = None) -> list[CompareResult]:
    """Every run of one fingerprint's series (oldest first), each judged as it would have been that night."""
    return HistoryJudge(runs, acceptances, settings).walk()


def judge_latest(runs: list[Run], latest: Run, acceptances: Mapping[str, Acceptance] | None = None,
                 settings: CompareSettings | None = None, start: Run | None = None) -> CompareResult:
    """``latest`` judged against its own fingerprint's history in ``runs`` (from ``start``, if given)."""
    series = [r for r in runs[:runs.index(latest)] if r.fingerprint_id == latest.fingerprint_id]
    if start is not None:
        series = series[series.index(start):] if start in series else []
    return judge_series([*series, latest], acceptances, settings)[-1]
