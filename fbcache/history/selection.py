"""Choosing runs from a history: a run by name, and the earlier runs that share its fingerprint.

Runs with different fingerprints (accelerator, model, quantization, cache backend, workload) are
never mixed: every selection here starts from the latest run's fingerprint. Baselines themselves are
the judge's segments (fbcache/verdicts/segments.py), not a choice of runs made here.
"""

from __future__ import annotations

import re

from fbcache.errors import SelectionError
from fbcache.history.storage import Run


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
