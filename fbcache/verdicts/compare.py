"""What a compare says: verdicts per benchmark and metric, the settings behind them, and their Markdown.

The judging itself is in judge.py (one walk over the history, shared by ``fbcache compare``,
``fbcache nightly`` and the report's trends). This module is the result's shape, which
``fbcache alert`` reads back from JSON: ``regression``, ``alerts`` and :func:`markdown`.

Verdicts: **regression** and **changed** (hits) alert; **advisory** (CPU timing, by default),
**too noisy to judge**, **unstable**, **not judged**, **improvement**, **accepted** and **ok** do not.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from fbcache import markdown as render_markdown
from fbcache.metrics import all_metrics

#: verdicts that wake someone up
ALERTING = ("regression", "changed")
TOO_NOISY = "too noisy to judge"
_SEVERITY = {"regression": 6, "changed": 6, "advisory": 5, TOO_NOISY: 4, "unstable": 3, "not judged": 2,
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
    #: per image metric, a tolerance that replaces the metric's own (``metrics/<name>.py``); e.g. {"ssim": 0.02}
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

    @property
    def alerting(self) -> bool:
        return self.status in ALERTING


@dataclass
class ThresholdResult:
    label: str
    verdicts: list[Verdict]

    @property
    def status(self) -> str:
        return max((v.status for v in self.verdicts), key=lambda s: _SEVERITY.get(s, 0), default="ok")

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


def _change(verdict: Verdict | None) -> str:
    if verdict is None or verdict.effect is None:
        return "—"
    mde = f" (MDE {verdict.mde:.1%})" if verdict.mde is not None else ""
    return f"{verdict.effect:+.1%}{mde}"


def _speedup(verdict: Verdict | None) -> str:
    if verdict is None:
        return "—"
    text = _pair(verdict, 2)
    if verdict.interval:
        low, high, coverage = verdict.interval
        text += f" [{low:.2f}, {high:.2f}] {coverage:.0%}"
    return text


def markdown(result: CompareResult) -> str:
    header = ["threshold", "time s (now / base)", "time change (MDE)", "paired speedup (now / base) [CI]",
              "speedup change (MDE)", *(m.title for m in all_metrics()), "hits", "verdict"]
    rows = []
    for row in result.rows:
        hits = row.verdict("hits")
        hits_text = "—" if hits is None or hits.latest is None else f"{hits.latest:g} / {_number(hits.baseline, 0)}"
        rows.append([row.label, _pair(row.verdict("time"), 3), _change(row.verdict("time")),
                     _speedup(row.verdict("speedup")), _change(row.verdict("speedup")),
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
