"""What a compare says: verdicts per benchmark and metric, the settings behind them, and their Markdown.

The judging itself is in judge.py (one walk over the history, shared by ``fbcache compare``,
``fbcache nightly`` and the report's trends). This module is the result's shape, which
``fbcache alert`` reads back from JSON: ``regression``, ``alerts`` and :func:`markdown`.

Verdicts: **regression** and **changed** (hits) alert; **advisory** (CPU timing, by default),
**too noisy to judge**, **unstable**, **not judged**, **improvement**, **accepted** and **ok** do not.
A row's verdict is its most severe judged one; a short history's "not judged yet" verdicts are
summed up once, under the table, by :func:`coverage` (what was judged, and when the rest will be).

"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from fbcache import markup
from fbcache.explain import flops_text
from fbcache.metrics import ImageMetric, all_metrics

#: verdicts that wake someone up
ALERTING = ("regression", "changed")
TOO_NOISY = "too noisy to judge"
NOT_JUDGED = "not judged"
_SEVERITY = {"regression": 6, "changed": 6, "advisory": 5, TOO_NOISY: 4, "unstable": 3, NOT_JUDGED: 2,
             "improvement": 1, "accepted": 1, "ok": 0}
RUN_LABEL = "all benchmarks"


@dataclass(frozen=True)
class CompareSettings:
    #: family-wise false-alarm probability of one compare (all time and speedup tests together)
    alpha: float = 0.01
    #: smallest relative time/speedup change that ever counts
    min_effect: float = 0.01
    #: a benchmark whose MDE exceeds this is "too noisy to judge"
    max_mde: float = 0.25
    #: reference runs (most recent of the segment) that set its centre
    history: int = 20
    #: earlier runs of a benchmark before its time and speedup are judged
    min_history: int = 3
    #: per image metric, a tolerance that replaces the metric's own (``metrics/<name>.py``), by metric name
    tolerances: dict[str, float] = field(default_factory=dict)
    #: judge time and speedup of CPU runs too (by default they are advisory)
    judge_cpu_timing: bool = False


@dataclass
class Verdict:
    metric: str
    status: str
    latest: float | None
    baseline: float | None
    detail: str
    #: relative change against the baseline segment's centre
    effect: float | None = None
    #: minimum detectable effect of this test (relative)
    mde: float | None = None
    #: the run since which a regression persists
    since: str | None = None
    #: paired speedup: order-statistic interval of the median and its coverage
    interval: list[float] | None = None
    #: "not judged" for want of history: how many more runs before it is judged
    runs_needed: int | None = None
    #: hits of a MULTI/SINGLE pair: its single-stream hits, [latest, baseline]; absent from the JSON otherwise
    single: list[float | None] | None = None

    @property
    def alerting(self) -> bool:
        return self.status in ALERTING

    @property
    def pending(self) -> bool:
        """Not judged yet, only for want of earlier runs (it will be, after ``runs_needed`` more)."""
        return self.status == NOT_JUDGED and self.runs_needed is not None


@dataclass
class ThresholdResult:
    label: str
    verdicts: list[Verdict]

    @property
    def status(self) -> str:
        """The most severe verdict; one still waiting for history counts only when nothing else was judged."""
        judged = [v.status for v in self.verdicts if not v.pending] or [v.status for v in self.verdicts]
        return max(judged, key=lambda s: _SEVERITY.get(s, 0), default="ok")

    def verdict(self, metric: str) -> Verdict | None:
        return next((v for v in self.verdicts if v.metric == metric), None)


def _known(cls: type, data: dict) -> dict:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


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

    def row(self, label: str) -> ThresholdResult | None:
        return next((r for r in self.rows if r.label == label), None)

    def to_json(self) -> str:
        payload = asdict(self)
        for row in payload["rows"]:  # a run without pairs writes the JSON it always wrote
            for verdict in row["verdicts"]:
                if verdict["single"] is None:
                    del verdict["single"]
        payload["regression"] = self.regression
        return json.dumps(payload, indent=2)

    @classmethod
    def from_json(cls, text: str) -> CompareResult:
        """Reads results of this and earlier versions (unknown fields are ignored)."""
        data = json.loads(text)
        rows = [ThresholdResult(r["label"], [Verdict(**_known(Verdict, v)) for v in r["verdicts"]])
                for r in data["rows"]]
        return cls(data["latest"], data["baseline"], data["fingerprint"],
                   CompareSettings(**_known(CompareSettings, data["settings"])), rows, data.get("notes", []))

    @classmethod
    def load(cls, path: Path) -> CompareResult:
        return cls.from_json(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------ rendering


def _number(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _pair(verdict: Verdict | None, digits: int) -> str:
    if verdict is None:
        return "—"
    return f"{_number(verdict.latest, digits)} / {_number(verdict.baseline, digits)}"


def _metric_pair(verdict: Verdict | None, metric: ImageMetric) -> str:
    """An image metric's "now / base" in the metric's own format (an identical image's PSNR is inf, stored as
    null); "—" where there is no value: none recorded in this run, or no baseline yet."""
    if verdict is None:
        return "—"
    missing = verdict.status == NOT_JUDGED and not verdict.pending
    now = "—" if missing else metric.format(metric.from_json(verdict.latest))
    no_base = verdict.pending or (missing and verdict.baseline is None)
    return f"{now} / {'—' if no_base else metric.format(metric.from_json(verdict.baseline))}"


def _percent_pair(verdict: Verdict | None) -> str:
    if verdict is None:
        return "—"
    return " / ".join("—" if v is None else f"{v:.0%}" for v in (verdict.latest, verdict.baseline))


def _flops_pair(verdict: Verdict | None) -> str:
    if verdict is None:
        return "—"
    return f"{flops_text(verdict.latest)} / {flops_text(verdict.baseline)}"


def _change(verdict: Verdict | None) -> str:
    if verdict is None or verdict.effect is None:
        return "—"
    mde = f" (MDE {verdict.mde:.1%})" if verdict.mde is not None else ""
    return f"{verdict.effect:+.1%}{mde}" + (" (not judged yet)" if verdict.pending else "")


def _speedup(verdict: Verdict | None) -> str:
    if verdict is None:
        return "—"
    text = _pair(verdict, 2)
    if verdict.interval:
        low, high, coverage = verdict.interval
        text += f" [{low:.2f}, {high:.2f}] {coverage:.0%}"
    return text


def markdown(result: CompareResult) -> str:
    # the image metrics judged in this run (an opt-in one the history never computed has no column)
    shown = [m for m in all_metrics() if any(row.verdict(m.name) is not None for row in result.rows)]
    header = ["threshold", "time s (now / base)", "time change (MDE)", "paired speedup (now / base) [CI]",
              "speedup change (MDE)", *(m.title for m in shown), "hits", "verdict"]
    # a CPU run has no allocator peak: the column appears only when some benchmark has one
    peaks = any(row.verdict("peak_memory") is not None for row in result.rows)
    if peaks:
        header.insert(-1, "peak GiB (now / base)")
    # runs with profiles and FLOPs counts (fbcache/explain.py): their columns only where some benchmark has them
    efficiency = any(row.verdict("efficiency") is not None for row in result.rows)
    flops = any(row.verdict("flops") is not None for row in result.rows)
    header[-1:-1] = (["efficiency (now / base)", "efficiency change (MDE)"] if efficiency else []) + \
        (["FLOPs (now / base)"] if flops else [])
    rows = []
    for row in result.rows:
        hits = row.verdict("hits")
        hits_text = "—" if hits is None or hits.latest is None else f"{hits.latest:g} / {_number(hits.baseline, 0)}"
        if hits is not None and hits.single:  # a MULTI/SINGLE pair, like the results table: both stages
            hits_text += f", single-stream {_number(hits.single[0], 0)} / {_number(hits.single[1], 0)}"
        cells = [row.label, _pair(row.verdict("time"), 3), _change(row.verdict("time")),
                 _speedup(row.verdict("speedup")), _change(row.verdict("speedup")),
                 *[_metric_pair(row.verdict(m.name), m) for m in shown], hits_text]
        if peaks:
            cells.append(_pair(row.verdict("peak_memory"), 2))
        if efficiency:
            cells += [_percent_pair(row.verdict("efficiency")), _change(row.verdict("efficiency"))]
        if flops:
            cells.append(_flops_pair(row.verdict("flops")))
        rows.append([*cells, row.status.upper() if row.status in ALERTING else row.status])
    lines = [f"**fbcache compare**: `{result.latest}` against {result.baseline}", "", markup.table(header, rows)]
    judged = coverage(result)
    if judged:
        lines += ["", *judged]
    # what waits for history is said once, above, not once per benchmark
    details = [f"- {row.label} {v.metric}: **{v.status}**: {v.detail}" for row in result.rows for v in row.verdicts
               if v.status != "ok" and not v.pending]
    if details:
        lines += ["", *details]
    if result.notes:
        lines += ["", *[f"- note: {n}" for n in result.notes]]
    lines += ["", "Verdict: " + ("REGRESSION" if result.regression else "clean")]
    return "\n".join(lines)


def _metric_titles() -> dict[str, str]:
    """Display names, in the order coverage lists them."""
    return {"bounds": "bounds", "hits": "hits", **{m.name: m.title for m in all_metrics()}, "peak_memory": "peak memory",
            "time": "time", "speedup": "paired speedup", "efficiency": "efficiency", "flops": "FLOPs"}


def coverage(result: CompareResult) -> list[str]:
    """On a history too short for some verdicts: what this compare judged, and when the rest will be.

    Empty once every verdict has the history it needs.
    """
    titles = _metric_titles()
    judged: dict[str, set[str]] = {}
    pending: dict[str, dict[str, int]] = {}
    for row in result.rows:
        for verdict in row.verdicts:
            if verdict.pending:
                pending.setdefault(verdict.metric, {})[row.label] = verdict.runs_needed or 1
            elif verdict.status != NOT_JUDGED:
                judged.setdefault(verdict.metric, set()).add(row.label)
    if not pending:
        return []
    order = [*titles, *sorted(set(judged) | set(pending))]
    judged_text = ", ".join(titles.get(m, m) for m in dict.fromkeys(order) if m in judged) or "nothing yet"
    waits: dict[int, list[str]] = {}
    for metric in (m for m in dict.fromkeys(order) if m in pending):
        labels = pending[metric]
        name = titles.get(metric, metric)
        if metric in judged:  # judged for some benchmarks; these are new
            name += f" of {', '.join(labels)}"
        waits.setdefault(max(labels.values()), []).append(name)
    when = [f"{', '.join(names)} {'from the next run' if runs == 1 else f'after {runs} more runs'}"
            for runs, names in sorted(waits.items())]
    return [f"Judged on this run: {judged_text}.",
            f"Not judged yet: {'; '.join(when)}. Hits and image metrics are exact (any change counts) and are "
            f"judged from a benchmark's second run; time and speedup once {result.settings.min_history} earlier "
            "runs measure their run-to-run noise."]
