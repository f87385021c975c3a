"""Accepted changes: ``fbcache accept RUN`` says "this run's level is the new normal".

An acceptance is a small JSON sidecar next to the run files (``fbcache-accept-<run>.json``), never
an edit of pytest-benchmark's run file, so the history stays pytest-benchmark's own format. The
name does not start with four digits, so neither pytest-benchmark nor :func:`run_files` takes it
for a run. It is written whole or not at all (temporary file, then an atomic rename).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from fbcache.history.storage import RUN_FILE_MODE, replace_file

PREFIX = "fbcache-accept-"


@dataclass(frozen=True)
class Acceptance:
    run: str
    reason: str
    accepted_at: str
    fingerprint_id: str


def acceptance_path(run_file: Path) -> Path:
    return run_file.with_name(f"{PREFIX}{run_file.stem}.json")


def write_acceptance(run_file: Path, fingerprint_id: str, reason: str) -> Path:
    """Record that the run in ``run_file`` starts a new baseline segment; replaces an earlier record."""
    record = Acceptance(run_file.stem, reason, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        fingerprint_id)
    target = acceptance_path(run_file)
    replace_file(target, json.dumps(asdict(record), indent=2).encode(), RUN_FILE_MODE)
    return target


def load_acceptances(storage: Path) -> tuple[dict[str, Acceptance], list[str]]:
    """Every acceptance under ``storage`` by run name, and a warning per unreadable file."""
    found: dict[str, Acceptance] = {}
    problems: list[str] = []
    for path in sorted([*storage.glob(f"*/{PREFIX}*.json"), *storage.glob(f"{PREFIX}*.json")]):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            record = Acceptance(str(data["run"]), str(data.get("reason", "")), str(data.get("accepted_at", "")),
                                str(data.get("fingerprint_id", "")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"skipped acceptance {path}: {exc}")
            continue
        found[record.run] = record
    return found, problems
