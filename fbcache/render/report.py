"""``fbcache report``: one saved run as Markdown, a self-contained HTML page and PNGs, in one directory.

The history holds numbers, not images: the generated images live in the sweep's output directory
(``--fbcache-output-dir``), so the report copies the ones it finds into ``images/`` and says plainly
which are missing. Everything the report refers to is in its own directory, under relative names,
so the directory can be moved, archived as a CI artifact or opened from disk as it is.

Trends cover only runs with the reported run's fingerprint (never mixed), oldest to newest, ending
at the reported run. Every run is judged as ``fbcache compare`` judged it that night (one walk over
the history, verdicts/judge.py), and the alerting points are marked. The run's model load and cold start
(once per run) are in the Run table and, across the trend, in their own plot.

Size. A run of any size is reported in seconds and megabytes. A run with thousands of benchmarks (a
large prompt set) would otherwise give every benchmark a row in the hit map, a line and legend entry
in each trend plot, two copied images, a grid row and table lines: figures of thousands of inches,
legends matplotlib lays out for minutes. The set's table (one line per threshold over every prompt)
and the verdicts always cover the whole run; the per-benchmark parts show a subset (:func:`subset`),
whole prompts in order with every threshold of each, and say so.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from PIL import Image, UnidentifiedImageError

from fbcache import explain, markup
from fbcache.errors import OutputWriteError
from fbcache.history import COLD_START_LABEL, GIB, LOAD_LABEL, UNCACHED, BenchRecord, is_prompt_set
from fbcache.history.storage import Acceptance, Run, images_mismatch, same_fingerprint_before
from fbcache.metrics import all_metrics, primary
from fbcache.render import (
    SINGLE_STREAM_MAP,
    columns,
    explanations_of,
    has_peaks,
    hit_map,
    is_compiled,
    markdown_table,
    ordered,
    peak_note,
    plots,
    prompt_legend,
    results,
    row,
    shown_metrics,
)
from fbcache.verdicts import CompareSettings
from fbcache.verdicts.judge import judge_series

TIMING_ONLY_NOTE = ("Timing only: this model has random weights. Its per-step cost is real, but its cache hits "
                    "and image metrics are not what trained weights would give; read the timings only.")
IMAGE_DIR = "images"
IMAGE_KINDS = ("first", "second")
#: "Why this speedup": measured against ideal speedup, and the stacked time breakdown
EXPLAIN_FIGURES = ("speedups.png", "breakdown.png")

#: benchmarks drawn one by one (hit map, trade-off, trends, image grid) and whose images are copied;
#: 64 keeps an 8-prompt set with 7 thresholds whole
FIGURE_LIMIT = 64
#: per-benchmark table lines (the per-prompt table and the text hit map)
TABLE_LIMIT = 1000
#: lines of a list (bounds violations, trend regressions)
LIST_LIMIT = 100


@dataclass(frozen=True)
class Subset:
    """The records a part of the report shows, and the note saying what was left out ("" when nothing was)."""

    records: list[BenchRecord]
    total: int
    note: str


def _prompt_names(indices: list[int]) -> str:
    return ", ".join(f"p{i}" for i in indices) if len(indices) <= 8 else f"p{indices[0]} to p{indices[-1]}"


def subset(records: Iterable[BenchRecord], limit: int, what: str) -> Subset:
    """At most ``limit`` of ``records`` (ordered): whole prompts of a set, else the first benchmarks."""
    every = ordered(records)
    if len(every) <= limit:
        return Subset(every, len(every), "")
    per_prompt = Counter(r.prompt_index for r in every if r.prompt_index is not None)
    if per_prompt:
        kept: list[int] = []
        count = 0
        for prompt in sorted(per_prompt):
            if kept and count + per_prompt[prompt] > limit:
                break
            kept.append(prompt)
            count += per_prompt[prompt]
        chosen = set(kept)
        shown = [r for r in every if r.prompt_index in chosen]
        scope = (f"{len(kept)} of {len(per_prompt)} prompts ({_prompt_names(kept)}), "
                 f"{len(shown)} of {len(every)} benchmarks")
    else:
        shown = every[:limit]
        scope = f"the first {len(shown)} of {len(every)} benchmarks ({shown[0].label} to {shown[-1].label})"
    return Subset(shown, len(every), f"{what} show {scope}; the run's JSON holds every benchmark.")


def capped(lines: list[str], limit: int, rest: str) -> list[str]:
    """The first ``limit`` lines, then one saying how many more there are and where (``rest``)."""
    if len(lines) <= limit:
        return lines
    return [*lines[:limit], f"... and {len(lines) - limit} more {rest}"]


@dataclass(frozen=True)
class TrendMetric:
    """A metric drawn across runs, and the compare verdict whose alerts mark it."""

    metric: str
    filename: str
    title: str
    ylabel: str
    value: Callable[[BenchRecord], float | None]
    with_uncached: bool


def trend_metrics() -> list[TrendMetric]:
    """Time, every registered image metric, hits (a pair's single-stream ones apart) and (GPU runs) peak memory: each
    across one fingerprint's runs."""
    def metric_of(name: str) -> Callable[[BenchRecord], float | None]:
        return lambda record: record.metrics.get(name)

    image_metrics = [TrendMetric(m.name, f"trend-{m.name}.png", f"{m.title} against uncached", m.title,
                                 metric_of(m.name), False) for m in all_metrics()]
    return [TrendMetric("time", "trend-time.png", "Median time per threshold", "median time (s)",
                        lambda r: r.median_s, True),
            *image_metrics,
            TrendMetric("hits", "trend-hits.png", "Cache hits", "hits (skipped steps)",
                        lambda r: None if r.hits is None else float(r.hits), False),
            # MULTI/SINGLE pairs only (no points, no figure otherwise); ringed where the hits verdict alerted
            TrendMetric("hits", "trend-single-hits.png", "Single-stream cache hits of MULTI/SINGLE pairs",
                        "single-stream hits (skipped steps)",
                        lambda r: None if r.single_hits is None else float(r.single_hits), False),
            TrendMetric("peak_memory", "trend-peak-memory.png", "Peak GPU memory per benchmark", "peak (GiB)",
                        lambda r: None if r.peak_memory_bytes is None else r.peak_memory_bytes / GIB, True)]


#: the run's model load and cold start across the trend (once per run, not per benchmark)
STARTUP_FIGURE, STARTUP_TITLE = "trend-startup.png", "Model load and cold start"


def figure_names() -> tuple[str, ...]:
    """Every fixed-name file a report may contain; a stale one from an earlier report is removed."""
    return ("image-grid.png", "tradeoff.png", "hitmap.png", *EXPLAIN_FIGURES, *(m.filename for m in trend_metrics()),
            STARTUP_FIGURE)


@dataclass(frozen=True)
class TrendAlert:
    """An alerting verdict of one run against the run before it with the same fingerprint."""

    run: str
    label: str
    metric: str
    status: str
    detail: str


@dataclass(frozen=True)
class ImageCell:
    """One expected image: its recorded name and, when found, its path relative to the report."""

    kind: str
    name: str | None
    copy: str | None


@dataclass
class Report:
    """Everything both renderers show, computed once."""

    run: Run
    metadata: list[tuple[str, str]]
    timing_only: bool
    records: list[BenchRecord]
    bounds: list[str]
    images: list[tuple[BenchRecord, list[ImageCell]]]
    image_notes: list[str]
    figures: set[str] = field(default_factory=set)
    trend: list[Run] = field(default_factory=list)
    alerts: list[TrendAlert] = field(default_factory=list)
    #: the records drawn one by one (figures, images) and listed one by one (tables): all of a normal
    #: run, a bounded subset of a very large one (:func:`subset`), each left-out part named in scale_notes
    shown: list[BenchRecord] = field(default_factory=list)
    listed: list[BenchRecord] = field(default_factory=list)
    scale_notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ content


def display_name(run: Run) -> str:
    """The run's name for headings and titles: pytest-benchmark's 40-character commit id in it cut to 12
    (the Run table keeps the full name)."""
    return re.sub(r"(?<![0-9a-f])([0-9a-f]{12})[0-9a-f]{28}(?![0-9a-f])", r"\1", run.name)


def _short_date(run: Run) -> str:
    """Seconds are enough to tell runs apart; the stored string is ISO 8601 in UTC."""
    return run.datetime[:19].replace("T", " ") or "unknown"


def run_metadata(run: Run) -> list[tuple[str, str]]:
    """What ran, from ``machine_info["fbcache"]``; fingerprint values stand in for older runs."""
    info = run.machine_info.get("fbcache") or {}
    fingerprint = run.fingerprint
    accelerator = info.get("accelerator") or {}
    details = [f"{key} {accelerator[key]}" for key in ("capability", "driver", "cuda") if accelerator.get(key)]
    accelerator_text = str(accelerator.get("name") or fingerprint.get("accelerator", "unknown"))
    if details:
        accelerator_text += f" ({', '.join(details)})"
    workload = info.get("workload") or {}
    prompt_set = workload.get("prompt_set")
    prompt_text = (f"prompt set {prompt_set.get('name')} ({prompt_set.get('count')} prompts, digest "
                   f"{prompt_set.get('digest')})" if isinstance(prompt_set, dict) else f"prompt \"{workload.get('prompt')}\"")
    workload_text = (f"{workload.get('steps')} steps, {workload.get('resolution')}, seed {workload.get('seed')}, "
                     f"{prompt_text}" if workload else fingerprint.get("workload", "unknown"))
    versions = ", ".join(f"{name} {version}" for name, version in (info.get("versions") or {}).items() if version)
    commit = run.commit_info.get("id")
    commit_text = f"{commit[:12]}{' (dirty)' if run.commit_info.get('dirty') else ''}" if commit else "unknown"
    return [
        ("run", run.name),
        ("date", _short_date(run)),
        ("accelerator", accelerator_text),
        ("model", str(info.get("model") or fingerprint.get("model", "unknown"))),
        ("quantization", str(info.get("quantization") or fingerprint.get("quantization", "unknown"))),
        ("cache backend", str(info.get("cache_backend") or fingerprint.get("cache_backend", "unknown"))),
        ("workload", workload_text),
        ("versions", versions or "unknown"),
        ("commit", commit_text),
        ("fingerprint", run.fingerprint_id),
        *_startup_rows(run),
    ]


def _startup_rows(run: Run) -> list[tuple[str, str]]:
    """The run's model load and first generation (wall time, once per run)."""
    startup = run.startup
    if startup is None:
        return [("model load, cold start", "not recorded (a run saved before fbcache stored them)")]
    shown = [(LOAD_LABEL, startup.model_load_s), (f"{COLD_START_LABEL} (first generation)", startup.cold_start_s)]
    return [(name, "not recorded" if value is None else f"{value:.2f} s") for name, value in shown]


def is_timing_only(run: Run) -> bool:
    """Random weights: the run's timings are real, its hits and similarity are not."""
    info = run.machine_info.get("fbcache") or {}
    return bool(info.get("timing_only")) or any(r.timing_only for r in run.records.values())


def bounds_lines(records: list[BenchRecord]) -> list[str]:
    """Bounds violations (enforced) and reported-only ones, per threshold."""
    lines = []
    for record in records:
        lines += [f"{record.label}: {message}" for message in record.bounds.get("violations") or []]
        lines += [f"{record.label}: {message} (reported, not enforced)"
                  for message in record.bounds.get("reported") or []]
    return lines


def _readable_png(path: Path) -> bool:
    """A truncated or foreign file is reported as missing rather than copied into the report."""
    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return False
    return True


def _find_image(images_dir: Path | None, name: str | None) -> Path | None:
    """The recorded image in the sweep's directory; names that are not plain file names are refused."""
    if images_dir is None or not name or Path(name).name != name or name in (".", ".."):
        return None
    candidate = images_dir / name
    return candidate if candidate.is_file() and _readable_png(candidate) else None


def collect_images(records: list[BenchRecord], images_dir: Path | None,
                   out_dir: Path) -> tuple[list[tuple[BenchRecord, list[ImageCell]]], list[str], list[Path]]:
    """Copy the images that exist into ``out_dir/images``; return the cells, notes on missing ones, copies."""
    rows, missing, copies = [], [], []
    for record in records:
        cells = []
        for kind in IMAGE_KINDS:
            name = record.images.get(kind)
            source = _find_image(images_dir, name)
            if source is None:
                missing.append(name or f"{record.label} {kind} (no image recorded)")
                cells.append(ImageCell(kind, name, None))
                continue
            target = out_dir / IMAGE_DIR / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            copies.append(target)
            cells.append(ImageCell(kind, name, f"{IMAGE_DIR}/{source.name}"))
        rows.append((record, cells))
    if not missing:
        return rows, [], copies
    where = ("no image directory was given (images are not in the history: pass the sweep's "
             "--fbcache-output-dir to `fbcache report --images`)" if images_dir is None
             else f"not found or unreadable in {images_dir}")
    expected = len(IMAGE_KINDS) * len(records)
    which = "all of them" if len(missing) == expected else ", ".join(missing)
    return rows, [f"{len(missing)} of {expected} images missing ({where}): {which}."], copies


def trend_runs(runs: list[Run], latest: Run) -> list[Run]:
    """The latest run's fingerprint only, oldest to newest, ending at the latest run."""
    return [*same_fingerprint_before(runs, latest), latest]


def trend_alerts(runs: list[Run], series: list[Run], settings: CompareSettings = CompareSettings(),
                 acceptances: dict[str, Acceptance] | None = None) -> list[TrendAlert]:
    """Every run of the series with the verdicts compare gave it (one walk over the history)."""
    alerts = []
    for result in judge_series(series, acceptances, settings)[1:]:
        alerts += [TrendAlert(result.latest, label, v.metric, v.status, v.detail) for label, v in result.alerts]
    return alerts


# ------------------------------------------------------------------------------ figures


def _grid_rows(images: list[tuple[BenchRecord, list[ImageCell]]], out_dir: Path) -> list[plots.GridRow]:
    """Label each row with what explains its images: threshold, hits and the primary image metric."""
    rows = []
    metric = primary()
    for record, cells in images:
        lines = [record.label if record.threshold is None else f"threshold {record.label}"]
        if record.hits is not None:
            lines.append(f"hits {record.hits}/{record.steps}")
        value = None if metric is None else record.metrics.get(metric.name)
        if metric is not None and value is not None and record.threshold is not None:
            lines.append(f"{metric.title} {metric.format(value)}")
        rows.append(plots.GridRow(tuple(lines), tuple(out_dir / c.copy if c.copy else None for c in cells)))
    return rows


def _trend_figures(series: list[Run], alerts: list[TrendAlert], out_dir: Path,
                   drawn: set[str] | None = None) -> dict[str, Path]:
    """One PNG per trend metric (``drawn``: only these labels); points whose verdict alerted are flagged."""
    names = [f"{run.name[:4]} {_short_date(run)[:16]}" for run in series]
    every_record = {record.label: record for run in series for record in run.records.values()
                    if drawn is None or record.label in drawn}
    labels = [record.label for record in ordered(every_record.values())]
    flagged = {(a.run, a.label, a.metric) for a in alerts}
    written = {}
    for metric in trend_metrics():
        shown = [label for label in labels if metric.with_uncached or label != UNCACHED]
        points = [plots.TrendPoint(label, i, value, (run.name, label, metric.metric) in flagged)
                  for i, run in enumerate(series) for label in shown
                  if label in run.records and (value := metric.value(run.records[label])) is not None]
        if not points:
            continue  # nothing measured: peak memory on a CPU (the results table says why), an opt-in metric not computed
        written[metric.filename] = plots.trend_plot(names, points, shown, out_dir / metric.filename,
                                                    f"{metric.title}: {len(series)} runs, fingerprint "
                                                    f"{series[-1].fingerprint_id}", metric.ylabel)
    return written


def _startup_figure(series: list[Run], alerts: list[TrendAlert], out_dir: Path) -> dict[str, Path]:
    """The model load and cold start of each run; none when no run of the trend recorded them."""
    labels = [LOAD_LABEL, COLD_START_LABEL]
    flagged = {(a.run, a.label) for a in alerts}
    points = [plots.TrendPoint(label, i, value, (run.name, label) in flagged)
              for i, run in enumerate(series) if run.startup is not None
              for label, value in run.startup.by_label().items()]
    if not points:
        return {}
    names = [f"{run.name[:4]} {_short_date(run)[:16]}" for run in series]
    return {STARTUP_FIGURE: plots.trend_plot(names, points, labels, out_dir / STARTUP_FIGURE,
                                             f"{STARTUP_TITLE}: {len(series)} runs, fingerprint "
                                             f"{series[-1].fingerprint_id}", "wall time (s)")}


def _figures(report: Report, runs: list[Run], out_dir: Path, draw_grid: bool,
             progress: Callable[[str], None] = lambda _: None) -> dict[str, Path]:
    """Every PNG of the report by name; sets ``report.alerts`` when there is a trend to judge."""
    written: dict[str, Path] = {}
    shown = report.shown or report.records
    if draw_grid:
        progress("drawing image-grid.png")
        written["image-grid.png"] = plots.image_grid(IMAGE_KINDS, _grid_rows(report.images, out_dir),
                                                     out_dir / "image-grid.png")
    fingerprint = report.run.fingerprint
    title = f"{display_name(report.run)} ({fingerprint.get('model', '?')}, {fingerprint.get('quantization', '?')})"
    title += " - timing only, random weights" if report.timing_only else ""
    for name, draw in (("tradeoff.png", plots.tradeoff_plot), ("hitmap.png", plots.hitmap_plot),
                       ("speedups.png", plots.speedups_plot), ("breakdown.png", plots.breakdown_plot)):
        progress(f"drawing {name}")
        figure = draw(shown, out_dir / name, title)
        if figure is not None:
            written[name] = figure
    if len(report.trend) > 1:
        progress(f"judging the trend of {len(report.trend)} runs")
        report.alerts = trend_alerts(runs, report.trend)
        progress("drawing the trend plots")
        written.update(_trend_figures(report.trend, report.alerts, out_dir, {r.label for r in shown}))
        written.update(_startup_figure(report.trend, report.alerts, out_dir))
    return written


def _remove_stale(out_dir: Path, written: dict[str, Path]) -> None:
    """A figure left by an earlier report into the same directory must not pass for this run's."""
    for name in figure_names():
        if name not in written:
            (out_dir / name).unlink(missing_ok=True)


# ------------------------------------------------------------------------------ Markdown


def _tradeoff_alt() -> str:
    metric = primary()
    return "speedup against " + ("quality" if metric is None else metric.title)


def render_markdown(report: Report) -> str:
    """``report.md``: readable as text and rendered by any Markdown viewer next to its PNGs."""
    lines = [f"# fbcache report: {display_name(report.run)}", ""]
    lines += [f"> **{TIMING_ONLY_NOTE}**", ""] if report.timing_only else []
    lines += ["## Run", "", markup.table(["field", "value"], report.metadata)]
    lines += [line for note in report.scale_notes for line in ("", f"> {markup.cell(note)}")]
    lines += ["", "## Results", "", markdown_table(report.records, report.listed or None), ""]
    if report.bounds:
        lines += ["Bounds violations:", "", *[f"- {markup.cell(line)}" for line in _bounds_shown(report)], ""]
    if "tradeoff.png" in report.figures:
        lines += ["## Speed against quality", "", f"![{_tradeoff_alt()}](tradeoff.png)", ""]
    lines += _markdown_explained(report)
    trace = hit_map(report.listed or report.records)
    if trace:
        lines += ["## Cache hits per step", ""]
        lines += ["![hit map](hitmap.png)", ""] if "hitmap.png" in report.figures else []
        lines += ["'#' computed, '.' cache hit (skipped):", "", "```", trace, "```", ""]
    single = hit_map(report.listed or report.records, single_stream=True)
    if single:
        lines += [f"Hits per step of {SINGLE_STREAM_MAP}:", "", "```", single, "```", ""]
    image_rows = [[record.label, *[f"![{record.label} {c.kind}]({quote(c.copy)})" if c.copy
                                   else f"missing: {c.name or 'not recorded'}" for c in cells]]
                  for record, cells in report.images]
    lines += ["## Images", "", markup.table(["threshold", *IMAGE_KINDS], image_rows), ""]
    lines += [f"- {markup.cell(note)}" for note in report.image_notes] + ([""] if report.image_notes else [])
    if "image-grid.png" in report.figures:
        lines += ["All images in one picture: ![image grid](image-grid.png)", ""]
    lines += _markdown_trend(report)
    return "\n".join(lines)


def _markdown_explained(report: Report) -> list[str]:
    """"Why this speedup": measured against ideal speedup, the time breakdown, the cost model (runs with profiles)."""
    section = explain.markdown_section(report.listed or report.records)
    if not section:
        return []
    lines = ["## Why this speedup", ""]
    lines += ["![measured, ideal and FLOPs speedup](speedups.png)", ""] if "speedups.png" in report.figures else []
    lines += ["![where the time goes](breakdown.png)", ""] if "breakdown.png" in report.figures else []
    return lines + [section, ""]


def _markdown_trend(report: Report) -> list[str]:
    """The trend section, or why there is none."""
    if len(report.trend) < 2:
        return ["## Trend", "", "No earlier run with this fingerprint: no trend yet.", ""]
    lines = ["## Trend", "", f"{len(report.trend)} runs with fingerprint {report.run.fingerprint_id}, oldest first: "
             + ", ".join(f"`{run.name}`" for run in report.trend) + ".", ""]
    for metric in trend_metrics():
        lines += [f"![{metric.title}]({metric.filename})", ""] if metric.filename in report.figures else []
    lines += [f"![{STARTUP_TITLE}]({STARTUP_FIGURE})", ""] if STARTUP_FIGURE in report.figures else []
    if report.alerts:
        lines += ["Regressions, each run as compare judged it (ringed in the plots):", ""]
        lines += capped([f"- `{a.run}` {a.label} {a.metric}: **{a.status}**: {markup.cell(a.detail)}"
                         for a in report.alerts], LIST_LIMIT, "regressions: `fbcache compare` lists them all")
    else:
        lines.append("No regression in any run of the trend.")
    return lines + [""]


# ------------------------------------------------------------------------------ HTML

_esc = markup.esc


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    """A table from already escaped cells."""
    return markup.html_table(header, rows, escaped=True)


def _img(src: str, alt: str) -> str:
    """An image linked to itself, so a click shows it full size."""
    url = _esc(quote(src))
    return f'<a href="{url}"><img src="{url}" alt="{_esc(alt)}"></a>'


def render_html(report: Report) -> str:
    """``report.html``: one page with inline CSS and no script; it refers only to files beside it."""
    # a long run name may break after its underscores
    parts = [f"<h1>fbcache report: {_esc(display_name(report.run)).replace('_', '_<wbr>')}</h1>"]
    parts += [f'<p class="note">{_esc(TIMING_ONLY_NOTE)}</p>'] if report.timing_only else []
    parts += ["<h2>Run</h2>", _html_table(["field", "value"], [[_esc(k), _esc(v)] for k, v in report.metadata])]
    parts += [f'<p class="note">{_esc(note)}</p>' for note in report.scale_notes]
    header, rows = results(report.records)
    parts += ["<h2>Results</h2>", _html_table([_esc(c) for c in header], [[_esc(cell) for cell in r] for r in rows])]
    explained = explanations_of(report.records)
    notes = [peak_note(report.records), None if explained is not None else explain.NOT_MEASURED_NOTE]
    parts += [f'<p class="note">{_esc(note)}</p>' for note in notes if note is not None]
    if is_prompt_set(report.records):
        compiled, peaks, shown = is_compiled(report.records), has_peaks(report.records), shown_metrics(report.records)
        parts += ["<h3>Per prompt</h3>", _html_table([_esc(c) for c in columns(compiled, peaks, explained is not None,
                                                                               shown)],
                                                     [[_esc(cell) for cell in row(r, compiled, peaks, explained, shown)]
                                                      for r in ordered(report.listed or report.records)]),
                  "<ul>", *[f"<li>{_esc(line)}</li>" for line in prompt_legend(report.listed or report.records)], "</ul>"]
    if report.bounds:
        parts += ['<p class="alert">Bounds violations:</p><ul>',
                  *[f"<li>{_esc(line)}</li>" for line in _bounds_shown(report)], "</ul>"]
    if "tradeoff.png" in report.figures:
        parts += ["<h2>Speed against quality</h2>", _img("tradeoff.png", _tradeoff_alt())]
    parts += _html_explained(report)
    trace = hit_map(report.listed or report.records)
    if trace:
        parts.append("<h2>Cache hits per step</h2>")
        parts += [_img("hitmap.png", "hit map")] if "hitmap.png" in report.figures else []
        parts.append(f"<p>'#' computed, '.' cache hit (skipped):</p><pre>{_esc(trace)}</pre>")
    single = hit_map(report.listed or report.records, single_stream=True)
    if single:
        parts.append(f"<p>Hits per step of {_esc(SINGLE_STREAM_MAP)}:</p><pre>{_esc(single)}</pre>")
    parts += ["<h2>Images</h2>", _html_table(["threshold", *IMAGE_KINDS], [
        [_esc(record.label), *[_img(c.copy, f"{record.label} {c.kind}") if c.copy else
                               f'<span class="missing">missing: {_esc(c.name or "not recorded")}</span>'
                               for c in cells]] for record, cells in report.images])]
    parts += [f'<p class="missing">{_esc(note)}</p>' for note in report.image_notes]
    if "image-grid.png" in report.figures:
        parts += ["<h3>All images in one picture</h3>", _img("image-grid.png", "image grid")]
    parts += _html_trend(report)
    return markup.page(f"fbcache report: {display_name(report.run)}", parts)


def _html_explained(report: Report) -> list[str]:
    """The HTML of :func:`_markdown_explained`."""
    records = report.listed or report.records
    if not explain.has_explanations(records):
        return []
    parts = ["<h2>Why this speedup</h2>"]
    parts += [_img("speedups.png", "measured, ideal and FLOPs speedup")] if "speedups.png" in report.figures else []
    parts += [_img("breakdown.png", "where the time goes")] if "breakdown.png" in report.figures else []
    model = explain.fit(records)
    parts += [f"<p>{_esc(explain.model_title(model))}: <code>{_esc(model.formula())}</code></p>"] if model else []
    parts.append(_html_table([_esc(c) for c in explain.SPEEDUP_HEADER],
                             [[_esc(cell) for cell in r] for r in explain.speedup_rows(records)]))
    parts.append(f"<p>{_esc(explain.LEGEND)}</p>")
    breakdown = explain.breakdown_rows(records)
    if breakdown:
        parts += ["<p>Where the time goes (each benchmark's profiled generation, untimed):</p>",
                  _html_table([_esc(c) for c in explain.BREAKDOWN_HEADER], [[_esc(c) for c in r] for r in breakdown])]
    return parts


def _html_trend(report: Report) -> list[str]:
    """The trend section, or why there is none."""
    if len(report.trend) < 2:
        return ["<h2>Trend</h2>", "<p>No earlier run with this fingerprint: no trend yet.</p>"]
    parts = ["<h2>Trend</h2>", f"<p>{len(report.trend)} runs with fingerprint {_esc(report.run.fingerprint_id)}, "
             f"oldest first: {_esc(', '.join(run.name for run in report.trend))}.</p>"]
    parts += [_img(m.filename, m.title) for m in trend_metrics() if m.filename in report.figures]
    parts += [_img(STARTUP_FIGURE, STARTUP_TITLE)] if STARTUP_FIGURE in report.figures else []
    if report.alerts:
        parts += ['<p class="alert">Regressions, each run as compare judged it (ringed in the plots):</p><ul>',
                  *capped([f"<li>{_esc(a.run)} {_esc(a.label)} {_esc(a.metric)}: <b>{_esc(a.status)}</b>: "
                           f"{_esc(a.detail)}</li>" for a in report.alerts], LIST_LIMIT,
                          "regressions: <code>fbcache compare</code> lists them all"), "</ul>"]
    else:
        parts.append("<p>No regression in any run of the trend.</p>")
    return parts


# ------------------------------------------------------------------------------ entry point


def _bounds_shown(report: Report) -> list[str]:
    return capped(report.bounds, LIST_LIMIT, "bounds violations: the results table marks each with '!'")


def build_report(runs: list[Run], latest: Run, out_dir: Path, images_dir: Path | None,
                 progress: Callable[[str], None] = lambda _: None) -> list[Path]:
    """Write the report of ``latest`` into ``out_dir``; ``runs`` is the whole history. Returns the files written.

    Images from a directory that records another sweep's fingerprint are not embedded (the report says so).
    A very large run is drawn and listed in part (:func:`subset`), the report says which part.
    ``progress`` hears each step as it starts (a large history takes a while).
    Every file is written into a hidden folder of ``out_dir`` first and moved into place only once all
    are written: a write that fails (a full disk) leaves ``out_dir`` as it was and raises OutputWriteError.

    Raises MissingDependencyError before writing anything when matplotlib (``fbcache[report]``) is absent.
    """
    plots.require_matplotlib()
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".fbcache-report-", suffix=".partial"))
    except OSError as exc:
        raise OutputWriteError(f"cannot write the report into {out_dir}: {exc.strerror or exc}") from None
    try:
        staged = _write_report(runs, latest, staging, images_dir, progress)
        moved = [_move(staging, path, out_dir) for path in staged]
    except BaseException as exc:  # nothing half-written stays behind, whatever stopped the report
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            out_dir.rmdir()  # it holds nothing else: this call made it
        if not isinstance(exc, OSError):
            raise
        raise OutputWriteError(f"cannot write the report into {out_dir}: {exc.strerror or exc}; nothing of it "
                               f"was kept{'' if created else ' (the files there are as they were)'}") from None
    shutil.rmtree(staging)  # empty folders only: every file has moved
    _remove_stale(out_dir, {path.name: path for path in moved})
    return moved


def _move(staging: Path, path: Path, out_dir: Path) -> Path:
    """A written file from the staging folder to its place in ``out_dir`` (a rename: no new space needed)."""
    target = out_dir / path.relative_to(staging)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    return target


def _write_report(runs: list[Run], latest: Run, out_dir: Path, images_dir: Path | None,
                  progress: Callable[[str], None]) -> list[Path]:
    """Every file of the report, written into ``out_dir``: report.md, report.html, the figures, the images."""
    refuse, provenance_note = images_mismatch(images_dir, latest.fingerprint) if images_dir else (False, "")
    records = ordered(latest.records.values())
    drawn = subset(records, FIGURE_LIMIT, "Figures and images")
    listed = subset(records, TABLE_LIMIT, "Per-benchmark tables and the hit map")
    progress(f"{latest.name}: {len(records)} benchmarks" + (f"; copying the images of {len(drawn.records)}"
                                                            if images_dir is not None and not refuse else ""))
    images, image_notes, copies = collect_images(drawn.records, None if refuse else images_dir, out_dir)
    if refuse:
        image_notes = [provenance_note]  # instead of "no image directory was given"
    elif provenance_note:
        image_notes = [provenance_note, *image_notes]
    report = Report(latest, run_metadata(latest), is_timing_only(latest), records, bounds_lines(records),
                    images, image_notes, trend=trend_runs(runs, latest), shown=drawn.records, listed=listed.records,
                    scale_notes=[note for note in (drawn.note, listed.note) if note])
    written = _figures(report, runs, out_dir, draw_grid=bool(copies), progress=progress)
    report.figures = set(written)
    markdown_path, html_path = out_dir / "report.md", out_dir / "report.html"
    progress("writing report.md and report.html")
    markdown_path.write_text(render_markdown(report), encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return [markdown_path, html_path, *written.values(), *copies]
