"""The report's PNG figures: the image grid (Pillow) and the charts (matplotlib, Agg backend).

matplotlib is the optional extra ``fbcache[report]``, so it is imported inside the functions that
draw, never at module level: ``import fbcache.plots`` works without it, and :func:`require_matplotlib`
says what to install before anything is written. Figures are drawn on an explicit Agg canvas rather
than through pyplot, so no global backend is switched and no window can open. With the same
libraries, the same runs give byte-identical PNGs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from fbcache import explain
from fbcache.errors import MissingDependencyError
from fbcache.history import UNCACHED, BenchRecord
from fbcache.metrics import ImageMetric, primary
from fbcache.render import ordered

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install 'fbcache[report]'"
#: colours for computed and skipped steps in the hit map
COMPUTED_COLOUR, SKIPPED_COLOUR = "#26415e", "#9fd3a8"
ALERT_COLOUR = "#d62728"
#: one shape per threshold, so points that overlap in colour still differ in shape
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h", "<", ">")
#: cycled over a trend's lines with the markers, so lines on top of each other still differ
LINESTYLES = ("-", "--", "-.", ":")
TITLE_SIZE = 10
#: width of an average title character in font sizes (DejaVu Sans digits are 0.64; a little over, to be safe)
TITLE_CHAR_WIDTH = 0.66


def require_matplotlib() -> None:
    """Fail before a report is half written when the optional plotting extra is absent."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(f"the report's plots need matplotlib: {INSTALL_HINT}") from exc


def _new_figure(width: float, height: float) -> Figure:
    """A figure bound to an Agg canvas, independent of pyplot's global state."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def wrap_title(text: str, width: int) -> str:
    """``text`` in lines of at most ``width`` characters, broken after spaces and underscores (run names
    are ``0001_<commit>_<date>``); a piece longer than a line is cut."""
    pieces = [chunk for piece in re.split(r"(?<=[ _])", text) if piece
              for chunk in (piece[i:i + width] for i in range(0, len(piece), width))]
    lines = [""]
    for piece in pieces:
        if lines[-1] and len(lines[-1] + piece.rstrip()) > width:
            lines[-1] = lines[-1].rstrip()
            lines.append("")
        lines[-1] += piece
    return "\n".join(line.rstrip() for line in lines)


def _title(figure: Figure, title: str) -> None:
    """The figure's title, centred on the figure and wrapped to its width: a long run name is never clipped."""
    width = int(figure.get_figwidth() * 72 / (TITLE_SIZE * TITLE_CHAR_WIDTH))
    figure.suptitle(wrap_title(title, width), fontsize=TITLE_SIZE)


def _save(figure: Figure, path: Path) -> Path:
    """PNG without matplotlib's Software entry: a version string is not a change in the report."""
    figure.savefig(path, format="png", metadata={"Software": None})
    return path


def palette(labels: Sequence[str]) -> dict[str, str]:
    """One stable colour per threshold label, shared by every chart; uncached is black."""
    require_matplotlib()
    from matplotlib import colormaps

    cycle = colormaps["tab10"].colors  # type: ignore[attr-defined]  # a ListedColormap
    cached = [label for label in labels if label != UNCACHED]
    colours = {label: _hex(cycle[i % len(cycle)]) for i, label in enumerate(cached)}
    colours[UNCACHED] = "#000000"
    return colours


def _hex(rgb: Sequence[float]) -> str:
    """tab10's RGB tuples as hex strings, the same type as uncached's black."""
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb[:3])


# ------------------------------------------------------------------------------ trade-off


def tradeoff_plot(records: Sequence[BenchRecord], path: Path, title: str,
                  metric: ImageMetric | None = None) -> Path | None:
    """Speedup against an image metric (default: the primary one), one point per threshold; None when no
    threshold has both values."""
    figure = tradeoff_figure(records, title, metric)
    return None if figure is None else _save(figure, path)


def _finite(value: float | None) -> float | None:
    """A value a chart can place: an infinite one (identical images' PSNR) has no point."""
    return value if value is not None and math.isfinite(value) else None


def tradeoff_figure(records: Sequence[BenchRecord], title: str, metric: ImageMetric | None = None) -> Figure | None:
    """The trade-off chart (see :func:`tradeoff_plot`).

    Points are named in a legend rather than beside them: on random weights most thresholds sit on
    the same spot, and labels printed there would overwrite each other.
    """
    metric = metric or primary()
    if metric is None:
        return None
    quality = {r.label: value for r in records if (value := _finite(r.metrics.get(metric.name))) is not None}
    cached = [r for r in ordered(records) if r.threshold is not None and r.speedup is not None and r.label in quality]
    if not cached:
        return None
    colours = palette([r.label for r in ordered(records)])
    figure = _new_figure(7.5, 4.8)
    ax = figure.add_subplot()
    reference = next((quality[r.label] for r in ordered(records) if r.threshold is None and r.label in quality), None)
    if reference is not None:  # the uncached image against itself: the metric's best value
        ax.scatter([1.0], [reference], s=120, marker="*", color=colours[UNCACHED], zorder=4,
                   label="uncached (reference)")
    for i, record in enumerate(cached):
        ax.scatter([record.speedup or 0.0], [quality[record.label]], s=55, marker=MARKERS[i % len(MARKERS)],
                   color=colours[record.label], zorder=3, alpha=0.85,
                   label=f"{record.label}: {record.speedup:.2f}x, {metric.title} {metric.format(quality[record.label])}")
    ax.axvline(1.0, color="#999999", linestyle="--", linewidth=1)
    ax.margins(0.08)
    ax.set_xlabel("speedup over uncached (x)")
    ax.set_ylabel(f"{metric.title} against uncached")
    _title(figure, title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="threshold", title_fontsize=8)
    return figure


# ------------------------------------------------------------------------------ tune's frontier

#: a pattern that keeps every floor of ``fbcache tune``
HOLDS_COLOUR = "#2ca02c"


@dataclass(frozen=True)
class FrontierPoint:
    """One hit pattern ``fbcache tune`` measured: its worst prompt's quality and its speed."""

    quality: float | None
    #: steps over computed steps: the speedup if reused steps cost nothing (untimed); None when none is computed
    step_ratio: float | None
    #: the timed speedup and its interval (None: not timed)
    speedup: float | None = None
    low: float | None = None
    high: float | None = None
    #: "recommended", "next faster", "next slower" or ""
    label: str = ""
    #: whether it keeps every floor
    holds: bool = True


def frontier_plot(points: Sequence[FrontierPoint], metric: ImageMetric, floor: float, title: str,
                  path: Path) -> Path | None:
    """Worst-prompt quality against speed, one point per measured hit pattern: steps per computed step (open
    markers), timed speedups with their interval (filled), the floor dashed; None when no point has a
    finite quality (identical images' PSNR is infinite)."""
    shown = [p for p in points if _finite(p.quality) is not None and _finite(p.step_ratio) is not None]
    if not shown:
        return None
    figure = _new_figure(7.5, 4.8)
    ax = figure.add_subplot()
    for holds, colour, name in ((True, HOLDS_COLOUR, "keeps every floor"), (False, ALERT_COLOUR, "breaks a floor")):
        group = [p for p in shown if p.holds == holds]
        if group:
            ax.scatter([p.step_ratio or 0.0 for p in group], [p.quality or 0.0 for p in group], s=40,
                       facecolors="none", edgecolors=colour, zorder=3,
                       label=f"{name}: steps / computed steps (untimed)")
    for i, point in enumerate(p for p in shown if p.speedup is not None and p.low is not None and p.high is not None):
        speedup, low, high = point.speedup or 0.0, point.low or 0.0, point.high or 0.0
        ax.errorbar([speedup], [point.quality or 0.0], xerr=[[speedup - low], [high - speedup]],
                    fmt=MARKERS[i % len(MARKERS)], color=HOLDS_COLOUR if point.holds else ALERT_COLOUR, capsize=3,
                    zorder=4, label=f"{point.label or 'timed'}: {speedup:.2f}x ({low:.2f}-{high:.2f})")
    ax.axhline(floor, color="#999999", linestyle="--", linewidth=1, label=f"floor: {metric.title} {floor:g}")
    ax.axvline(1.0, color="#999999", linestyle=":", linewidth=1)
    ax.set_xscale("log")  # a ratio: 2x and 20x both readable
    ax.xaxis.set_major_formatter("{x:g}")
    ax.margins(0.08)
    ax.set_xlabel("speedup over uncached (x, log scale)")
    ax.set_ylabel(f"worst prompt's {metric.title} against uncached")
    _title(figure, title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _save(figure, path)


# ------------------------------------------------------------------------------ hit map


def hitmap_plot(records: Sequence[BenchRecord], path: Path, title: str) -> Path | None:
    """Denoising step by threshold, computed or skipped; None when no threshold has a hit trace. MULTI/SINGLE
    pairs add a second panel below: each pair's single-stream decision."""
    figure = hitmap_figure(records, title)
    return None if figure is None else _save(figure, path)


#: the second panel's title: which decision of a MULTI/SINGLE pair it shows
SINGLE_STREAM_PANEL = "single-stream decision of each MULTI/SINGLE pair"


def hitmap_figure(records: Sequence[BenchRecord], title: str) -> Figure | None:
    """The hit map (see :func:`hitmap_plot`)."""
    rows = [r for r in ordered(records) if r.threshold is not None and r.hit_trace]
    if not rows:
        return None
    require_matplotlib()
    from matplotlib.patches import Patch

    singles = [r for r in rows if r.single_hit_trace]
    steps = max(len(trace) for r in rows for trace in (r.hit_trace, r.single_hit_trace))
    height = 1.6 + len(rows) * 0.38
    if singles:  # a second panel, its own rows; a run without pairs keeps the one-panel figure it always had
        height += 0.6 + len(singles) * 0.38
    figure = _new_figure(max(6.0, 2.5 + steps * 0.22), height)
    if singles:
        top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [len(rows), len(singles)]})
        _hitmap_panel(top, rows, [r.hit_trace for r in rows], [r.hits for r in rows], steps)
        top.set_xlabel("")
        top.set_title("double-stream decision (after the first block)", fontsize=9)
        _hitmap_panel(bottom, singles, [r.single_hit_trace for r in singles], [r.single_hits for r in singles],
                      steps)
        bottom.set_title(SINGLE_STREAM_PANEL, fontsize=9)
    else:
        _hitmap_panel(figure.add_subplot(), rows, [r.hit_trace for r in rows], [r.hits for r in rows], steps)
    figure.legend(handles=[Patch(color=COMPUTED_COLOUR, label="computed"),
                           Patch(color=SKIPPED_COLOUR, label="skipped (cache hit)")],
                  loc="outside lower center", ncol=2, frameon=False)
    _title(figure, title)
    return figure


def _hitmap_panel(ax: Axes, rows: Sequence[BenchRecord], traces: Sequence[Sequence[bool]],
                  hits: Sequence[int | None], steps: int) -> None:
    """One hit map panel: a row per benchmark, its trace's steps computed or skipped, its hit count on the right."""
    import numpy as np
    from matplotlib.colors import ListedColormap

    grid = np.full((len(rows), steps), np.nan)
    for i, trace in enumerate(traces):
        grid[i, : len(trace)] = [1.0 if hit else 0.0 for hit in trace]
    ax.imshow(np.ma.masked_invalid(grid), cmap=ListedColormap([COMPUTED_COLOUR, SKIPPED_COLOUR]),
              vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(0, steps, 1 if steps <= 30 else 5))
    ax.set_yticks(range(len(rows)), [r.label for r in rows])
    ax.set_xticks([x - 0.5 for x in range(1, steps)], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, len(rows))], minor=True)
    ax.grid(which="minor", color="white", linewidth=0.8)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("denoising step")
    ax.set_ylabel("threshold")
    right = ax.twinx()
    right.set_ylim(ax.get_ylim())
    right.set_yticks(range(len(rows)), [f"{h}/{r.steps}" if h is not None else "—" for r, h in zip(rows, hits)])
    right.set_ylabel("hits")


# ------------------------------------------------------------------------------ why this speedup

#: one colour per part of a generation (fbcache/explain.py's PARTS), in stacking order
PART_COLOURS = ("#8c6d31", "#26415e", "#6b8fb3", "#d6a84e", "#9fd3a8", "#bbbbbb")


def speedups_plot(records: Sequence[BenchRecord], path: Path, title: str) -> Path | None:
    """Measured against ideal (and FLOPs) speedup per threshold; None when no threshold has an ideal speedup."""
    figure = speedups_figure(records, title)
    return None if figure is None else _save(figure, path)


def speedups_figure(records: Sequence[BenchRecord], title: str) -> Figure | None:
    """Per cached benchmark: the measured speedup, the ideal one for its hits, and the FLOPs speedup, side by side."""
    explained = explain.explain(records)
    rows = [r for r in ordered(records) if r.threshold is not None and explained[r.label].ideal_speedup is not None]
    if not rows:
        return None
    figure = _new_figure(max(6.0, 2.0 + len(rows) * 0.9), 4.2)
    ax = figure.add_subplot()
    series = (("measured", "#26415e", lambda r: r.speedup),
              ("ideal (only the skipped blocks saved)", "#9fd3a8", lambda r: explained[r.label].ideal_speedup),
              ("FLOPs", "#d6a84e", lambda r: explained[r.label].flops_speedup))
    width = 0.27
    for i, (name, colour, value) in enumerate(series):
        xs = [x + (i - 1) * width for x in range(len(rows))]
        heights = [value(r) or 0.0 for r in rows]
        bars = ax.bar(xs, heights, width, color=colour, label=name)
        ax.bar_label(bars, labels=[explain.ratio_text(value(r)) if value(r) else "" for r in rows], fontsize=7)
    ax.set_xticks(range(len(rows)), [f"{r.label}\n{r.hits}/{r.steps} hits\neff. "
                                     f"{explain.fraction_text(explained[r.label].efficiency)}" for r in rows],
                  fontsize=8)
    ax.axhline(1.0, color="#999999", linestyle="--", linewidth=1)
    ax.set_xlabel("threshold")
    ax.set_ylabel("speedup over uncached (x)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, axis="y", alpha=0.3)
    _title(figure, title)
    return figure


def breakdown_plot(records: Sequence[BenchRecord], path: Path, title: str) -> Path | None:
    """Where each benchmark's profiled generation spent its time, stacked; None when no benchmark has a profile."""
    figure = breakdown_figure(records, title)
    return None if figure is None else _save(figure, path)


def breakdown_figure(records: Sequence[BenchRecord], title: str) -> Figure | None:
    """One stacked bar per benchmark (its profiled generation's parts, ms), its timed median as a black tick."""
    rows = [(r, p) for r in ordered(records) if (p := explain.Profile.of(r)) is not None]
    if not rows:
        return None
    figure = _new_figure(8.0, 1.6 + len(rows) * 0.42)
    ax = figure.add_subplot()
    ys = list(range(len(rows)))
    left = [0.0] * len(rows)
    for part, colour in zip(explain.PARTS, PART_COLOURS):
        widths = [max(0.0, p.parts()[part]) * 1000 for _, p in rows]
        ax.barh(ys, widths, left=left, color=colour, label=part, height=0.7)
        left = [a + b for a, b in zip(left, widths)]
    medians = [(y, r.median_s * 1000) for y, (r, _) in zip(ys, rows) if r.median_s is not None]
    ax.scatter([m for _, m in medians], [y for y, _ in medians], marker="|", s=300, color="#000000", zorder=3,
               label="timed median")
    ax.set_yticks(ys, [r.label if r.threshold is None else f"{r.label} ({p.hits}/{p.steps})" for r, p in rows])
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds of one generation")
    ax.grid(True, axis="x", alpha=0.3)
    figure.legend(loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    _title(figure, title)
    return figure


# ------------------------------------------------------------------------------ trends


@dataclass(frozen=True)
class TrendPoint:
    """One value of one threshold in one run; ``alert`` marks a regression against the run before."""

    label: str
    run_index: int
    value: float
    alert: bool


def trend_plot(run_names: Sequence[str], points: Sequence[TrendPoint], labels: Sequence[str], path: Path,
               title: str, ylabel: str) -> Path:
    """One line per threshold across runs (oldest left); alerting points ringed in red."""
    return _save(trend_figure(run_names, points, labels, title, ylabel), path)


def identical_series(points: Sequence[TrendPoint], labels: Sequence[str]) -> list[list[str]]:
    """The labels with values, grouped where every run's value is the same (in ``labels`` order): each group is
    one line, named by all its labels, so lines drawn exactly on top of each other are not lost."""
    groups: dict[tuple[tuple[int, float], ...], list[str]] = {}
    for label in labels:
        series = tuple(sorted((p.run_index, p.value) for p in points if p.label == label))
        if series:
            groups.setdefault(series, []).append(label)
    return list(groups.values())


def trend_figure(run_names: Sequence[str], points: Sequence[TrendPoint], labels: Sequence[str], title: str,
                 ylabel: str) -> Figure:
    """The trend chart (see :func:`trend_plot`). Each threshold keeps its colour and its trade-off marker
    (hollow, so a point under another still shows); line styles cycle; identical series are one line."""
    colours = palette(labels)
    cached = [label for label in labels if label != UNCACHED]
    figure = _new_figure(max(6.5, 2.5 + len(run_names) * 0.9), 4.6)
    ax = figure.add_subplot()
    for index, group in enumerate(identical_series(points, labels)):
        first = group[0]
        mine = sorted((p for p in points if p.label == first), key=lambda p: p.run_index)
        marker = "*" if first == UNCACHED else MARKERS[cached.index(first) % len(MARKERS)]
        name = first if len(group) == 1 else f"{', '.join(group)} (identical)"
        ax.plot([p.run_index for p in mine], [p.value for p in mine], marker=marker, markersize=7,
                markerfacecolor="none", markeredgewidth=1.5, linestyle=LINESTYLES[index % len(LINESTYLES)],
                color=colours[first], label=name)
    alerts = [p for p in points if p.alert]
    if alerts:
        ax.scatter([p.run_index for p in alerts], [p.value for p in alerts], s=180, facecolors="none",
                   edgecolors=ALERT_COLOUR, linewidths=2, zorder=4, label="regression vs previous run")
    if not points:
        ax.text(0.5, 0.5, "no values in these runs", transform=ax.transAxes, ha="center", va="center")
    ax.set_xticks(range(len(run_names)), run_names, rotation=30, ha="right", fontsize=8)
    ax.set_xlim(-0.5, len(run_names) - 0.5)
    ax.set_ylabel(ylabel)
    _title(figure, title)
    ax.grid(True, alpha=0.3)
    if points:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="threshold", title_fontsize=8)
    return figure


# ------------------------------------------------------------------------------ image grid


@dataclass(frozen=True)
class GridRow:
    """One threshold's row in the image grid: its label lines and one image per column (None: missing)."""

    lines: tuple[str, ...]
    images: tuple[Path | None, ...]


GRID_CELL = 256
GRID_LABEL_WIDTH = 200
GRID_HEADER = 40
GRID_PAD = 8


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size`` (Pillow >= 10.1), else its fixed-size bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def _fit(image: Image.Image, size: int) -> Image.Image:
    """Scale to fit a square cell; small images are enlarged with hard pixel edges, not blurred."""
    scale = size / max(image.size)
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.convert("RGB").resize(new_size, resample)


def _text(draw: ImageDraw.ImageDraw, x: int, y: int, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
          fill: str, centred: bool) -> None:
    """Text vertically centred on ``y``, starting at ``x`` or centred on it (bitmap fonts take no anchor)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    origin_x = x - (right - left) // 2 - left if centred else x - left
    draw.text((origin_x, y - (bottom - top) // 2 - top), text, fill=fill, font=font)


def image_grid(columns: Sequence[str], rows: Sequence[GridRow], path: Path) -> Path:
    """Rows of images under column headers, each row labelled; missing images are grey cells saying so."""
    step = GRID_CELL + GRID_PAD
    width = GRID_LABEL_WIDTH + len(columns) * step + GRID_PAD
    height = GRID_HEADER + len(rows) * step + GRID_PAD
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    header, label_font, small = _font(20), _font(18), _font(14)
    for c, name in enumerate(columns):
        _text(draw, GRID_LABEL_WIDTH + c * step + GRID_CELL // 2, GRID_HEADER // 2, name, header, "black", True)
    for r, row in enumerate(rows):
        top = GRID_HEADER + r * step
        first_line = top + GRID_CELL // 2 - 12 * (len(row.lines) - 1)
        for i, line in enumerate(row.lines):
            _text(draw, GRID_PAD, first_line + i * 24, line, label_font if i == 0 else small, "black", False)
        for c, image_path in enumerate(row.images):
            left = GRID_LABEL_WIDTH + c * step
            if image_path is None:
                draw.rectangle((left, top, left + GRID_CELL - 1, top + GRID_CELL - 1), fill="#dddddd")
                _text(draw, left + GRID_CELL // 2, top + GRID_CELL // 2, "missing", label_font, "#555555", True)
                continue
            with Image.open(image_path) as source:
                fitted = _fit(source, GRID_CELL)
            canvas.paste(fitted, (left + (GRID_CELL - fitted.width) // 2, top + (GRID_CELL - fitted.height) // 2))
    canvas.save(path, format="PNG")
    return path
