"""The results table (the seed's columns plus speedup, hits and similarity) and the hit map."""

from __future__ import annotations

from typing import Iterable

from fbcache.history.record import BenchRecord
from fbcache.metrics import all_metrics
from fbcache.render import markdown


def columns(compiled: bool = False) -> list[str]:
    """The seed's columns, then speedup and hits, then every registered image metric.

    A compiled session adds ``compile (s)``: its first call in each cache state minus the timed median.
    """
    extra = ["compile (s)"] if compiled else []
    return ["threshold", "1st (s)", "2nd (s)", "total (s)", "speedup", "hits/steps", *(m.title for m in all_metrics()),
            *extra]


def is_compiled(records: Iterable[BenchRecord]) -> bool:
    return any(r.compile_mode != "none" for r in records)


def ordered(records: Iterable[BenchRecord]) -> list[BenchRecord]:
    """The uncached baseline first, then thresholds ascending."""
    return sorted(records, key=lambda r: (r.threshold is not None, r.threshold or 0.0))


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def row(record: BenchRecord, compiled: bool = False) -> list[str]:
    first, second = record.first_s, record.second_s
    total = first + second if first is not None and second is not None else None
    if record.threshold is None:
        speedup, hits = "1.00 (ref)", "— (no cache)"
    else:
        speedup = "—" if record.speedup is None else f"{record.speedup:.2f}x"
        hits = "—" if record.hits is None else f"{record.hits}/{record.steps}"
        if not record.hits_consistent:
            hits += f" (varied: {sorted(set(record.hits_per_round))})"
    label = record.label + (" !" if not record.bounds_ok else "")
    measured = [m.format(record.metrics.get(m.name)) for m in all_metrics()]
    extra = ["—" if record.compile_s is None else f"{record.compile_s:.1f}"] if compiled else []
    return [label, _seconds(first), _seconds(second), _seconds(total), speedup, hits, *measured, *extra]


def markdown_table(records: Iterable[BenchRecord]) -> str:
    records = list(records)
    compiled = is_compiled(records)
    return markdown.table(columns(compiled), [row(r, compiled) for r in ordered(records)])


def hit_map(records: Iterable[BenchRecord]) -> str:
    """One line per threshold, one character per denoising step: '#' computed, '.' cache hit."""
    lines = []
    for record in ordered(records):
        if record.threshold is None or not record.hit_trace:
            continue
        steps = "".join("." if hit else "#" for hit in record.hit_trace)
        lines.append(f"{record.label:>8}  {steps}  {record.hits}/{record.steps} hits")
    return "\n".join(lines)


def residual_ranges(records: Iterable[BenchRecord]) -> str:
    """Range of the relative first-block residual difference per threshold (what the cache compared)."""
    lines = []
    for record in ordered(records):
        diffs = [d for d in record.residual_diff_trace if d is not None]
        if record.threshold is not None and diffs:
            lines.append(f"{record.label:>8}  min {min(diffs):.3f}  median {sorted(diffs)[len(diffs) // 2]:.3f}"
                         f"  max {max(diffs):.3f}")
    return "\n".join(lines)
