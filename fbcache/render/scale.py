"""Bounds on what a report draws and lists, so that a run of any size is reported in seconds and megabytes.

A run with thousands of benchmarks (a large prompt set) would otherwise give every benchmark a row
in the hit map, a line and legend entry in each trend plot, two copied images, a grid row and table
lines: figures of thousands of inches, legends matplotlib lays out for minutes. The set's table (one
line per threshold over every prompt) and the verdicts always cover the whole run; the per-benchmark
parts show a subset, whole prompts in order with every threshold of each, and say so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from fbcache.history.record import BenchRecord
from fbcache.render.table import ordered

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
