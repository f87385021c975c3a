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
        medians = [m for r in self.runs if label in r.records and (m := r.records[label].median_s) is not None]
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
        values = [v for r in self.runs if label in r.records and (v := r.records[label].metrics.get(name)) is not None]
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


def covering(earlier: list[Run], latest: Run) -> list[Run]:
    """The earlier runs that measured every benchmark the latest run did.

    A ``-k`` subset run shares the fingerprint of a full one; as the baseline of the next full run it
    would leave most benchmarks uncompared. When no earlier run covers them all, every run is kept
    and :func:`coverage_note` says what is missing.
    """
    full = [run for run in earlier if set(latest.records) <= set(run.records)]
    return full or earlier


def coverage_note(latest: Run, baseline: Baseline) -> str:
    """Which of the latest run's benchmarks the baseline never measured (empty when none)."""
    if not baseline.runs:
        return ""
    missing = [label for label in latest.records if all(label not in run.records for run in baseline.runs)]
    if not missing:
        return ""
    return (f"the baseline ({baseline.description}) lacks {len(missing)} of {len(latest.records)} benchmarks "
            f"({', '.join(missing)}): no earlier run of this fingerprint covers them, so they are not compared")


FIRST_RUN = "nothing: the first run with this fingerprint"


def baseline_for(runs: list[Run], latest: Run, spec: str) -> Baseline:
    """:func:`choose_baseline`, except that the first run of a fingerprint under the default ``previous``
    gets an empty baseline (every verdict "not judged", a clean exit) instead of an error."""
    if spec == "previous" and not same_fingerprint_before(runs, latest):
        return Baseline(FIRST_RUN, [])
    return choose_baseline(runs, latest, spec)


def choose_baseline(runs: list[Run], latest: Run, spec: str) -> Baseline:
    """``previous``, ``median:K`` or a run name; always within the latest run's fingerprint, and for
    ``previous``/``median:K`` only among runs that cover the latest run's benchmarks (see :func:`covering`)."""
    earlier = same_fingerprint_before(runs, latest)
    if spec == "previous":
        if not earlier:
            raise SelectionError(f"no earlier run with the fingerprint of {latest.name} to compare with")
        chosen = covering(earlier, latest)[-1]
        why = "" if chosen is earlier[-1] else f" (newer run {earlier[-1].name} skipped: it lacks benchmarks of this run)"
        return Baseline(f"previous run {chosen.name}{why}", [chosen])
    match = re.fullmatch(r"median:(\d+)", spec)
    if match:
        count = int(match.group(1))
        if count < 1 or not earlier:
            raise SelectionError(f"median:{count} needs K >= 1 and earlier runs with the same fingerprint")
        last = covering(earlier, latest)[-count:]
        return Baseline(f"median of the last {len(last)} runs", last)
    run = find_run(runs, spec)
    if run.fingerprint_id != latest.fingerprint_id:
        raise SelectionError(f"{run.name} has a different fingerprint than {latest.name}; runs are never mixed")
    if run is latest:
        raise SelectionError("the baseline must be an earlier run than the latest one")
    return Baseline(f"run {run.name}", [run])
