"""Where records become verdicts: the latest run against its baseline, threshold by threshold.

- **time**: a change counts when it is at least ``min_effect`` (5%) AND it is not noise. Within-run
  noise is excluded by Mann-Whitney U on the raw rounds (runs saved with ``--benchmark-save-data``),
  run-to-run noise by a band, median +- 3 MAD of the medians of the last runs with this fingerprint.
  Without raw rounds the band decides alone; with fewer than 3 earlier runs, time is not judged.
- **speedup**: a drop of at least ``min_effect`` outside the band of earlier speedups.
- **the whole sweep** (row "all benchmarks"): the geometric mean of all median times, judged like one
  benchmark against the band of earlier runs. Averaging over every benchmark cancels the transients
  that hit one benchmark at a time, so a slowdown of everything is caught in the first run that has it.
- **confirmation**: on a shared machine one benchmark of one run can be 25% slow for no reason (seen
  on a 2-core CPU with unchanged code). So a time or speedup excursion is only *suspect* until it is
  confirmed: by the whole run (the median change over all benchmarks is at least ``run_shift``, 10%)
  or by the previous run (the same benchmark was already an excursion in the same direction).
  Suspects are reported, never alerted.
- **CPU runs**: time and speedup are *advisory* (reported, never alerted) unless asked otherwise. On
  a shared 2-core CPU the tiny sweep's geometric mean time moved by up to 34% between runs of unchanged
  code (2026-11-25), so no test can tell a 15% regression from the machine; SSIM and hits stay exact.
- **SSIM**: a drop of more than ``ssim_tolerance`` (absolute).
- **hits**: any change. Hits are deterministic for a fixed seed and software stack.
- **bounds**: a run saved with broken bounds (see bounds.py) is a regression whatever its baseline.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fbcache.metrics import ImageMetric, all_metrics
from fbcache.render import markdown as render_markdown
from fbcache.verdicts import stats
from fbcache.history.selection import Baseline
from fbcache.history.record import BenchRecord
from fbcache.history.storage import Run

#: verdicts that wake someone up
ALERTING = ("regression", "changed")
_SEVERITY = {"regression": 5, "changed": 5, "suspect": 4, "advisory": 4, "unstable": 3, "not judged": 2,
             "improvement": 1, "ok": 0}


@dataclass(frozen=True)
class CompareSettings:
    min_effect: float = 0.05
    alpha: float = 0.05
    band_k: float = 3.0
    history: int = 10
    min_history: int = 3
    ssim_tolerance: float = 0.01
    run_shift: float = 0.10
    #: judge time and speedup of CPU runs too (by default they are advisory: see the module docstring)
    judge_cpu_timing: bool = False


@dataclass
class Verdict:
    metric: str
    status: str
    latest: float | None
    baseline: float | None
    detail: str

    @property
    def alerting(self) -> bool:
        return self.status in ALERTING


@dataclass
class ThresholdResult:
    label: str
    verdicts: list[Verdict]

    @property
    def status(self) -> str:
        return max((v.status for v in self.verdicts), key=_SEVERITY.__getitem__, default="ok")

    def verdict(self, metric: str) -> Verdict | None:
        return next((v for v in self.verdicts if v.metric == metric), None)


@dataclass
class CompareResult:
    latest: str
    baseline: str
    fingerprint: dict[str, str]
    settings: CompareSettings
    rows: list[ThresholdResult]
    notes: list[str] = field(default_factory=list)

    @property
    def regression(self) -> bool:
        return any(v.alerting for row in self.rows for v in row.verdicts)

    @property
    def alerts(self) -> list[tuple[str, Verdict]]:
        return [(row.label, v) for row in self.rows for v in row.verdicts if v.alerting]

    def to_json(self) -> str:
        payload = asdict(self)
        payload["regression"] = self.regression
        return json.dumps(payload, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "CompareResult":
        data = json.loads(text)
        rows = [ThresholdResult(r["label"], [Verdict(**v) for v in r["verdicts"]]) for r in data["rows"]]
        return cls(data["latest"], data["baseline"], data["fingerprint"], CompareSettings(**data["settings"]), rows,
                   data.get("notes", []))

    @classmethod
    def load(cls, path: Path) -> "CompareResult":
        return cls.from_json(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------ verdicts


def _relative(latest: float, baseline: float) -> float:
    return latest / baseline - 1.0


def judge_time(label: str, latest: Run, baseline: Baseline, history: list[Run], s: CompareSettings) -> Verdict:
    now, before = latest.records[label].median_s, baseline.median_s(label)
    if now is None or before is None:
        return Verdict("time", "not judged", now, before, "no timings on one side")
    effect = _relative(now, before)
    if abs(effect) < s.min_effect:
        return Verdict("time", "ok", now, before, f"{effect:+.1%}, within ±{s.min_effect:.0%}")
    direction = "regression" if effect > 0 else "improvement"
    evidence: list[str] = []
    within_ok: bool | None = None
    latest_raw, baseline_raw = latest.raw_data.get(label), baseline.raw_rounds(label)
    if latest_raw and baseline_raw:
        if stats.smallest_one_sided_p(len(latest_raw), len(baseline_raw)) > s.alpha:
            evidence.append(f"{len(latest_raw)}+{len(baseline_raw)} rounds cannot reach p <= {s.alpha:g}")
        else:
            slower, faster = (latest_raw, baseline_raw) if effect > 0 else (baseline_raw, latest_raw)
            p = stats.mann_whitney_greater(slower, faster)
            within_ok = p <= s.alpha
            evidence.append(f"Mann-Whitney p={p:.3g}")
    else:
        evidence.append("no raw rounds (save with --benchmark-save-data)")
    medians = [r.records[label].median_s for r in history[-s.history:] if label in r.records]
    medians = [m for m in medians if m is not None]
    if len(medians) < s.min_history:
        evidence.append(f"{len(medians)} earlier runs, the run-to-run band needs {s.min_history}")
        return Verdict("time", "not judged", now, before, f"{effect:+.1%}; " + "; ".join(evidence))
    band = stats.band(medians, s.band_k)
    outside = not band.contains(now)
    evidence.append(f"{'outside' if outside else 'inside'} band {band.low:.4g}..{band.high:.4g} s "
                    f"({band.runs} runs)")
    significant = outside and within_ok is not False
    return Verdict("time", direction if significant else "ok", now, before, f"{effect:+.1%}; " + "; ".join(evidence))


def judge_speedup(label: str, latest: Run, baseline: Baseline, history: list[Run], s: CompareSettings) -> Verdict:
    now, before = latest.records[label].speedup, baseline.metric(label, "speedup")
    if now is None or before is None:
        return Verdict("speedup", "not judged", now, before, "no speedup on one side")
    change = _relative(now, before)
    if abs(change) < s.min_effect:
        return Verdict("speedup", "ok", now, before, f"{change:+.1%}, within ±{s.min_effect:.0%}")
    earlier = [r.records[label].speedup for r in history[-s.history:] if label in r.records]
    earlier = [x for x in earlier if x is not None]
    if len(earlier) < s.min_history:
        return Verdict("speedup", "not judged", now, before,
                       f"{change:+.1%}; {len(earlier)} earlier runs, the band needs {s.min_history}")
    band = stats.band(earlier, s.band_k)
    if band.contains(now):
        return Verdict("speedup", "ok", now, before, f"{change:+.1%}, inside band {band.low:.3g}..{band.high:.3g}")
    status = "regression" if change < 0 else "improvement"
    return Verdict("speedup", status, now, before, f"{change:+.1%}, outside band {band.low:.3g}..{band.high:.3g}")


def judge_metric(metric: ImageMetric, latest: BenchRecord, before: float | None, s: CompareSettings) -> Verdict:
    """An image metric against the uncached image: deterministic, so any move beyond its tolerance counts."""
    now = latest.metrics.get(metric.name)
    tolerance = s.ssim_tolerance if metric.name == "ssim" else metric.tolerance
    if now is None or before is None:
        return Verdict(metric.name, "not judged", now, before, f"no {metric.title} on one side")
    worse = metric.worse_by(now, before)
    delta = f"{metric.format(before)} -> {metric.format(now)}" if worse else "unchanged"
    shown = metric.to_json(now), metric.to_json(before)  # JSON has no infinity (identical images)
    if worse > tolerance:
        return Verdict(metric.name, "regression", *shown, f"{delta}, beyond the tolerance {tolerance:g}")
    if worse < -tolerance:
        return Verdict(metric.name, "improvement", *shown, delta)
    return Verdict(metric.name, "ok", *shown, f"{delta}, within ±{tolerance:g}")


def judge_hits(latest: BenchRecord, before: BenchRecord | None) -> Verdict:
    if latest.threshold is None:
        return Verdict("hits", "ok", None, None, "uncached: no cache")
    if before is None or before.hits is None or latest.hits is None:
        return Verdict("hits", "not judged", latest.hits, None, "no hits on one side")
    if not latest.hits_consistent or not before.hits_consistent:
        return Verdict("hits", "unstable", latest.hits, before.hits, "hits varied between rounds of one run")
    if latest.hits == before.hits and latest.hit_trace == before.hit_trace:
        return Verdict("hits", "ok", latest.hits, before.hits, "identical per step")
    flipped = [i for i, (a, b) in enumerate(zip(latest.hit_trace, before.hit_trace)) if a != b]
    return Verdict("hits", "changed", latest.hits, before.hits,
                   f"{before.hits} -> {latest.hits} of {latest.steps}; steps that flipped: {flipped}")


RUN_LABEL = "all benchmarks"


def _geomean_median(run: Run, labels: list[str]) -> float | None:
    """Geometric mean of the benchmarks' median times: one number for a whole sweep."""
    medians = [run.records[label].median_s for label in labels if label in run.records]
    if len(medians) != len(labels) or any(m is None or m <= 0 for m in medians):
        return None
    return math.exp(sum(math.log(m) for m in medians) / len(medians))


def judge_run_time(latest: Run, baseline: Baseline, history: list[Run], s: CompareSettings) -> Verdict:
    """The sweep as a whole: a transient on one benchmark moves this little, a real slowdown moves it all."""
    labels = sorted(latest.records)
    now = _geomean_median(latest, labels)
    before_values = [v for r in baseline.runs if (v := _geomean_median(r, labels)) is not None]
    before = statistics.median(before_values) if before_values else None
    if now is None or before is None:
        return Verdict("time", "not judged", now, before, "the runs do not share every benchmark")
    effect = _relative(now, before)
    if abs(effect) < s.min_effect:
        return Verdict("time", "ok", now, before, f"geometric mean {effect:+.1%}, within ±{s.min_effect:.0%}")
    earlier = [v for r in history[-s.history:] if (v := _geomean_median(r, labels)) is not None]
    if len(earlier) < s.min_history:
        return Verdict("time", "not judged", now, before,
                       f"geometric mean {effect:+.1%}; {len(earlier)} earlier runs, the band needs {s.min_history}")
    band = stats.band(earlier, s.band_k)
    if band.contains(now):
        return Verdict("time", "ok", now, before,
                       f"geometric mean {effect:+.1%}, inside band {band.low:.4g}..{band.high:.4g} s")
    return Verdict("time", "regression" if effect > 0 else "improvement", now, before,
                   f"geometric mean {effect:+.1%}, outside band {band.low:.4g}..{band.high:.4g} s ({band.runs} runs)")


def judge_bounds(record: BenchRecord) -> list[Verdict]:
    """A run saved with broken bounds is a real measurement, and a regression."""
    violations = record.bounds.get("violations") or []
    if not violations:
        return []
    return [Verdict("bounds", "regression", None, None, "; ".join(violations))]


def compare_runs(latest: Run, baseline: Baseline, history: list[Run],
                 settings: CompareSettings = CompareSettings()) -> CompareResult:
    """Every benchmark of the latest run against the baseline; ``history`` = earlier same-fingerprint runs."""
    rows, notes = [], []
    ordered = sorted(latest.records.values(), key=lambda r: (r.threshold is not None, r.threshold or 0.0,
                                                              r.prompt_index or 0))
    for record in ordered:
        label = record.label
        verdicts = judge_bounds(record)
        if baseline.record(label) is None:
            notes.append(f"{label}: not in the baseline, not compared")
        else:
            verdicts.append(judge_time(label, latest, baseline, history, settings))
            if record.threshold is not None:
                verdicts += [judge_speedup(label, latest, baseline, history, settings),
                             *[judge_metric(m, record, baseline.image_metric(label, m.name), settings)
                               for m in all_metrics()],
                             judge_hits(record, baseline.record(label))]
        if verdicts:
            rows.append(ThresholdResult(label, verdicts))
    for label in sorted({lbl for run in baseline.runs for lbl in run.records} - set(latest.records)):
        notes.append(f"{label}: in the baseline but not in the latest run")
    confirm_excursions(rows, latest, history, settings, notes)
    if len(latest.records) > 1 and baseline.runs:
        rows.append(ThresholdResult(RUN_LABEL, [judge_run_time(latest, baseline, history, settings)]))
    if str(latest.fingerprint.get("accelerator", "")).startswith("cpu") and not settings.judge_cpu_timing:
        demote_cpu_timing(rows, notes)
    return CompareResult(latest.name, baseline.description, latest.fingerprint, settings, rows, notes)


_JUDGES = {"time": judge_time, "speedup": judge_speedup}


def demote_cpu_timing(rows: list[ThresholdResult], notes: list[str]) -> None:
    """CPU timing verdicts become advisory: shown in full, never alerting."""
    demoted = 0
    for row in rows:
        for verdict in row.verdicts:
            if verdict.metric in _JUDGES and verdict.status in ("regression", "suspect"):
                verdict.status = "advisory"
                verdict.detail += "; advisory: CPU timing (--judge-cpu-timing to alert on it)"
                demoted += 1
    if demoted:
        notes.append(f"{demoted} CPU timing verdict(s) reported as advisory, not alerted")


def _run_shift(rows: list[ThresholdResult], metric: str) -> float | None:
    """Median relative change of ``metric`` over every benchmark of the run: how far the whole run moved."""
    changes = [v.latest / v.baseline - 1 for row in rows if (v := row.verdict(metric)) is not None
               and v.latest is not None and v.baseline]
    return statistics.median(changes) if changes else None


def confirm_excursions(rows: list[ThresholdResult], latest: Run, history: list[Run], s: CompareSettings,
                       notes: list[str]) -> None:
    """Demote lone time/speedup regressions to 'suspect' unless the run or the previous run confirms them."""
    for metric, worse in (("time", 1.0), ("speedup", -1.0)):
        shift = _run_shift(rows, metric)
        run_moved = shift is not None and shift * worse >= s.run_shift
        if shift is not None and run_moved:
            notes.append(f"the whole run moved: median {metric} change {shift:+.1%}")
        for row in rows:
            verdict = row.verdict(metric) if row.label != RUN_LABEL else None
            if verdict is None or verdict.status != "regression" or run_moved:
                continue
            previous = history[-1] if len(history) >= 2 else None
            if previous is not None and row.label in previous.records and _JUDGES[metric](
                    row.label, previous, Baseline("", history[-2:-1]), history[:-1], s).status == "regression":
                verdict.detail += "; confirmed: the previous run was an excursion too"
                continue
            verdict.status = "suspect"
            verdict.detail += ("; suspect: only this benchmark moved, in this run only (alerts if the next "
                               "run repeats it)")


# ------------------------------------------------------------------------------------ rendering


def _number(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _pair(verdict: Verdict | None, digits: int) -> str:
    if verdict is None:
        return "—"
    return f"{_number(verdict.latest, digits)} / {_number(verdict.baseline, digits)}"


def markdown(result: CompareResult) -> str:
    header = ["threshold", "time s (now / base)", "speedup", *(m.title for m in all_metrics()), "hits", "verdict"]
    rows = []
    for row in result.rows:
        hits = row.verdict("hits")
        hits_text = "—" if hits is None or hits.latest is None else f"{hits.latest:g} / {_number(hits.baseline, 0)}"
        rows.append([row.label, _pair(row.verdict("time"), 3), _pair(row.verdict("speedup"), 2),
                     *[_pair(row.verdict(m.name), m.decimals) for m in all_metrics()], hits_text,
                     row.status.upper() if row.status in ALERTING else row.status])
    lines = [f"**fbcache compare**: `{result.latest}` against {result.baseline}", "", render_markdown.table(header, rows)]
    details = [f"- {row.label} {v.metric}: **{v.status}**: {v.detail}" for row in result.rows for v in row.verdicts
               if v.status != "ok"]
    if details:
        lines += ["", *details]
    if result.notes:
        lines += ["", *[f"- note: {n}" for n in result.notes]]
    lines += ["", "Verdict: " + ("REGRESSION" if result.regression else "clean")]
    return "\n".join(lines)
