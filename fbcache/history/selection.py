"""Choosing runs from a history: the latest, its baseline, and the earlier runs that share its fingerprint.

Runs with different fingerprints (accelerator, model, quantization, cache backend, workload) are
never mixed: every selection here starts from the latest run's fingerprint.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

from fbcache.errors import SelectionError
from fbcache.history.record import BenchRecord
from fbcache.history.storage import Run


@dataclass
class Baseline:
    """What the latest run is compared with: one run, or the median of several."""

    description: str
    runs: list[Run]

    def median_s(self, label: str) -> float | None:
        medians = [r.records[label].median_s for r in self.runs if label in r.records]
        medians = [m for m in medians if m is not None]
        return statistics.median(medians) if medians else None

    def raw_rounds(self, label: str) -> list[float] | None:
        """Raw rounds pooled over the baseline runs, or None if any of them lacks raw data."""
        pooled: list[float] = []
        for run in self.runs:
            if label not in run.raw_data:
                return None
            pooled += run.raw_data[label]
        return pooled

    def record(self, label: str) -> BenchRecord | None:
        """The most recent baseline record of this benchmark (for deterministic fields: hits, SSIM)."""
        for run in reversed(self.runs):
            if label in run.records:
                return run.records[label]
        return None

    def image_metric(self, label: str, name: str) -> float | None:
        """Median of an image metric over the baseline runs (they agree when the stack is unchanged)."""
        values = [r.records[label].metrics.get(name) for r in self.runs if label in r.records]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    def metric(self, label: str, field: str) -> float | None:
        values = [getattr(r.records[label], field) for r in self.runs if label in r.records]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None


def find_run(runs: list[Run], name: str) -> Run:
    """A run by file stem, by its 4-digit number, or by a unique prefix."""
    if re.fullmatch(r"\d{1,4}", name):
        name = f"{int(name):04d}_"
    matches = [r for r in runs if r.name == name or r.name.startswith(name)]
    if len(matches) != 1:
        known = ", ".join(r.name for r in runs[-5:]) or "(none)"
        raise SelectionError(f"run {name!r} matches {len(matches)} runs; latest runs: {known}")
    return matches[0]


def same_fingerprint_before(runs: list[Run], latest: Run) -> list[Run]:
    """Earlier runs with the latest run's fingerprint, oldest first."""
    index = runs.index(latest)
    return [r for r in runs[:index] if r.fingerprint_id == latest.fingerprint_id]


def choose_baseline(runs: list[Run], latest: Run, spec: str) -> Baseline:
    """``previous``, ``median:K`` or a run name; always within the latest run's fingerprint."""
    earlier = same_fingerprint_before(runs, latest)
    if spec == "previous":
        if not earlier:
            raise SelectionError(f"no earlier run with the fingerprint of {latest.name} to compare with")
        return Baseline(f"previous run {earlier[-1].name}", earlier[-1:])
    match = re.fullmatch(r"median:(\d+)", spec)
    if match:
        count = int(match.group(1))
        if count < 1 or not earlier:
            raise SelectionError(f"median:{count} needs K >= 1 and earlier runs with the same fingerprint")
        chosen = earlier[-count:]
        return Baseline(f"median of the last {len(chosen)} runs", chosen)
    run = find_run(runs, spec)
    if run.fingerprint_id != latest.fingerprint_id:
        raise SelectionError(f"{run.name} has a different fingerprint than {latest.name}; runs are never mixed")
    if run is latest:
        raise SelectionError("the baseline must be an earlier run than the latest one")
    return Baseline(f"run {run.name}", [run])
