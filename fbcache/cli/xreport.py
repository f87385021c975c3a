"""``fbcache xreport``: the same sweep on several GPUs, side by side, from the histories of several runners.

Each runner keeps its own history; fingerprints keep its runs apart from every other runner's. The
cross-hardware report takes the newest run of every fingerprint found in the given storages, puts
runs that measured the same thing (model, quantization, cache backend, workload: the fingerprint
minus the accelerator) into one table, and gives each accelerator its own columns: median time,
speedup, every registered image metric and hits, per threshold. A prompt set's thresholds are read
as a whole (mean over the prompts, see :mod:`fbcache.history`).

Storages are searched recursively, so a directory of downloaded CI artifacts, one history per
runner, can be given as it is.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fbcache import markup
from fbcache.cli import DEFAULT_STORAGE, storage_path
from fbcache.errors import EXIT_CLEAN, DataError
from fbcache.history import ThresholdSummary, ordered, summarize
from fbcache.history.fingerprint import FINGERPRINT_FIELDS, OPTIONAL_FIELDS
from fbcache.history.storage import Run, load_runs
from fbcache.metrics import ImageMetric, measured
from fbcache.render.report import TIMING_ONLY_NOTE, is_timing_only

HELP = "cross-hardware report: every GPU's newest run side by side"
MARKDOWN_NAME, HTML_NAME = "xreport.md", "xreport.html"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", action="append",
                        help="a history directory, searched recursively (repeat for several runners; "
                             "default .benchmarks)")
    parser.add_argument("--out", default="fbcache-xreport", help="output directory (default fbcache-xreport)")
    parser.add_argument("--step-summary", action="store_true",
                        help="also append the Markdown to $GITHUB_STEP_SUMMARY (when set)")


def run(args: argparse.Namespace) -> int:
    roots = [storage_path(raw) for raw in args.storage or [DEFAULT_STORAGE]]
    missing = [str(root) for root in roots if not root.is_dir()]
    if missing:
        raise DataError(f"no storage directory {', '.join(missing)}")
    written, groups, skipped = build_xreport(roots, Path(args.out))
    for message in skipped:
        print(f"fbcache: warning: {message}", file=sys.stderr)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if args.step_summary and summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(written[0].read_text(encoding="utf-8"))
    accelerators = sorted({c.accelerator for g in groups for c in g.columns})
    print(f"cross-hardware report: {len(groups)} workload(s), {len(accelerators)} accelerator(s) "
          f"({', '.join(accelerators)}); {', '.join(str(p) for p in written)}")
    return EXIT_CLEAN


@dataclass
class Column:
    """One accelerator's newest run of a workload."""

    accelerator: str
    run: Run
    summaries: dict[str, ThresholdSummary]


@dataclass
class Group:
    """Runs that measured the same thing on different accelerators."""

    title: str
    columns: list[Column]

    @property
    def labels(self) -> list[str]:
        """Every threshold label of any column, uncached first, then ascending."""
        seen: dict[str, ThresholdSummary] = {}
        for column in self.columns:
            seen.update(column.summaries)
        return [s.label for s in ordered(seen.values())]


def find_storages(roots: list[Path]) -> list[Path]:
    """Every directory under ``roots`` that holds pytest-benchmark run files (or machine-id folders of them)."""
    found: set[Path] = set()
    for root in roots:
        for path in root.rglob("[0-9][0-9][0-9][0-9]_*.json"):
            found.add(path.parent)
    return sorted(found)


def load_all(roots: list[Path]) -> tuple[list[Run], list[str]]:
    """Every readable fbcache run under the roots, and a warning per skipped file."""
    runs, skipped = [], []
    for directory in find_storages(roots):
        found, warnings = load_runs(directory)
        runs += [run for run in found if run.path.parent == directory]
        skipped += warnings
    return runs, skipped


def newest_per_fingerprint(runs: list[Run]) -> list[Run]:
    """The newest run (by its date) of every fingerprint."""
    newest: dict[str, Run] = {}
    for run in sorted(runs, key=lambda r: (r.datetime, r.name)):
        newest[run.fingerprint_id] = run
    return list(newest.values())


def workload_of(run: Run) -> tuple[str, ...]:
    """The fingerprint without the accelerator: what makes runs on different GPUs comparable."""
    fingerprint = run.fingerprint
    return tuple(f"{key} {fingerprint.get(key)}" for key in FINGERPRINT_FIELDS + OPTIONAL_FIELDS
                 if key != "accelerator" and fingerprint.get(key) is not None)


def build_groups(runs: list[Run]) -> list[Group]:
    groups: dict[tuple[str, ...], list[Column]] = {}
    for run in newest_per_fingerprint(runs):
        name = str(run.fingerprint.get("accelerator", "unknown"))
        column = Column(name, run, {s.label: s for s in summarize(run.records.values())})
        groups.setdefault(workload_of(run), []).append(column)
    result = []
    for key, columns in sorted(groups.items()):
        columns.sort(key=lambda c: c.accelerator)
        names = [c.accelerator for c in columns]
        for column in columns:
            if names.count(column.accelerator) > 1:  # same GPU name, other settings: tell them apart
                column.accelerator += f" [{column.run.fingerprint_id}]"
        result.append(Group(", ".join(key), columns))
    return result


# ------------------------------------------------------------------------------ cells


def _quantities(metrics: Sequence[ImageMetric]) -> list[str]:
    return ["time (s)", "speedup", *(m.title for m in metrics), "hits"]


def _cells(summary: ThresholdSummary | None, metrics: Sequence[ImageMetric]) -> list[str]:
    """Median time, speedup, each image metric (mean over prompts) and hits for one accelerator."""
    if summary is None:
        return ["—"] * (3 + len(metrics))
    time = "—" if summary.mean_median_s is None else f"{summary.mean_median_s:.3f}"
    if summary.threshold is None:
        return [time, "1.00 (ref)", *["—" for _ in metrics], "—"]
    speedup = "—" if summary.speedup is None else f"{summary.speedup:.2f}x"
    values = [m.format(summary.metrics[m.name].mean) for m in metrics]
    if summary.hits_mean is None:
        hits = "—"
    elif summary.prompts == 1:
        hits = f"{summary.hits_min}/{summary.steps}"
    else:
        hits = f"{summary.hits_mean:.1f}/{summary.steps}"
    return [time, speedup, *values, hits + _single_stream(summary)]


def _single_stream(summary: ThresholdSummary) -> str:
    """A MULTI/SINGLE pair's single-stream hits, as the results table shows them after its double-stream hits
    (a prompt set's: the mean over its prompts); empty for a single threshold."""
    singles = [r.single_hits for r in summary.records if r.single_hits is not None]
    if not singles or summary.hits_mean is None:
        return ""
    if summary.prompts == 1:
        return f", single-stream {singles[0]}/{summary.steps}"
    return f", single-stream {statistics.fmean(singles):.1f}/{summary.steps}"


def group_table(group: Group) -> tuple[list[str], list[list[str]]]:
    """Header and rows: threshold, then each accelerator's quantities side by side."""
    # the image metrics some run of the group computed (an opt-in one none did has no column)
    metrics = measured(r.metrics for c in group.columns for s in c.summaries.values() for r in s.records)
    header = ["threshold"] + [f"{c.accelerator}: {q}" for c in group.columns for q in _quantities(metrics)]
    rows = [[label] + [cell for c in group.columns for cell in _cells(c.summaries.get(label), metrics)]
            for label in group.labels]
    return header, rows


def runs_table(groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    header = ["accelerator", "run", "date", "fingerprint", "prompts", "history"]
    rows = []
    for group in groups:
        for column in group.columns:
            prompts = max((s.prompts for s in column.summaries.values()), default=0)
            rows.append([column.accelerator, column.run.name, column.run.datetime[:19].replace("T", " "),
                         column.run.fingerprint_id, str(prompts), str(column.run.path.parent)])
    return header, rows


# ------------------------------------------------------------------------------ renderers

EXPLAIN = ("Each accelerator's newest run of each workload; time is the median per generation (a prompt set's: "
           "the mean over its prompts), speedup and image metrics are against that accelerator's own uncached "
           "run, a prompt set's image metrics and hits are means over its prompts.")


def render_markdown(groups: list[Group], notes: list[str]) -> str:
    lines = ["# fbcache cross-hardware report", "", EXPLAIN, ""]
    if any(is_timing_only(c.run) for g in groups for c in g.columns):
        lines += [f"> **{TIMING_ONLY_NOTE}**", ""]
    lines += ["## Runs", "", markup.table(*runs_table(groups)), ""]
    for group in groups:
        lines += [f"## {group.title}", "", markup.table(*group_table(group)), ""]
        if len(group.columns) == 1:
            lines += ["Only one accelerator ran this workload.", ""]
    lines += [f"- {markup.cell(note)}" for note in notes]
    return "\n".join(lines).rstrip() + "\n"


_esc = markup.esc
_html_table = markup.html_table


def render_html(groups: list[Group], notes: list[str]) -> str:
    parts = ["<h1>fbcache cross-hardware report</h1>", f"<p>{_esc(EXPLAIN)}</p>"]
    if any(is_timing_only(c.run) for g in groups for c in g.columns):
        parts.append(f'<p class="note">{_esc(TIMING_ONLY_NOTE)}</p>')
    parts += ["<h2>Runs</h2>", _html_table(*runs_table(groups))]
    for group in groups:
        parts += [f"<h2>{_esc(group.title)}</h2>", _html_table(*group_table(group))]
        if len(group.columns) == 1:
            parts.append("<p>Only one accelerator ran this workload.</p>")
    if notes:
        parts += ['<ul class="missing">', *[f"<li>{_esc(note)}</li>" for note in notes], "</ul>"]
    return markup.page("fbcache cross-hardware report", parts)


def build_xreport(roots: list[Path], out_dir: Path) -> tuple[list[Path], list[Group], list[str]]:
    """Write ``xreport.md`` and ``xreport.html`` into ``out_dir``; return the files, the groups and warnings.

    Raises DataError when no fbcache run is found under any root.
    """
    runs, skipped = load_all(roots)
    if not runs:
        raise DataError(f"no fbcache runs under {', '.join(str(r) for r in roots)}")
    groups = build_groups(runs)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / MARKDOWN_NAME, out_dir / HTML_NAME]
    written[0].write_text(render_markdown(groups, skipped), encoding="utf-8")
    written[1].write_text(render_html(groups, skipped), encoding="utf-8")
    return written, groups, skipped
