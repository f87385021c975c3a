"""``fbcache history``: the saved runs, oldest first, and what changed where a fingerprint changes."""

from __future__ import annotations

import argparse

from fbcache.cli import add_storage_option, read_history
from fbcache.errors import EXIT_CLEAN
from fbcache.history.fingerprint import fingerprint_changes
from fbcache.history.storage import Run

HELP = "list saved runs with their fingerprints"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_storage_option(parser)


def run(args: argparse.Namespace) -> int:
    runs = read_history(args.storage)
    for previous, run in zip([None, *runs], runs):
        fp = run.fingerprint
        print(f"{run.name}  {run.datetime[:19]}  [{run.fingerprint_id}] {fp.get('accelerator')} | {fp.get('model')} | "
              f"{fp.get('quantization')} | {fp.get('cache_backend')} | {fp.get('workload')} | {bounds_state(run)}")
        # the line shows a few fields; a new fingerprint says which of all its fields changed
        if previous is not None and previous.fingerprint_id != run.fingerprint_id:
            changes = fingerprint_changes(previous.machine_info, run.machine_info)
            print(f"    fingerprint differs from {previous.name}: {'; '.join(changes)}")
    return EXIT_CLEAN


def bounds_state(run: Run) -> str:
    """'BOUNDS BROKEN: 0.5, 0.8' for a run saved with broken bounds (kept, marked), else what was checked."""
    broken = [r.label for r in run.records.values() if not r.bounds_ok]
    if broken:
        return "BOUNDS BROKEN: " + ", ".join(broken)
    profiles = {str(r.bounds.get("profile")) for r in run.records.values() if r.bounds.get("profile")}
    return f"bounds kept ({', '.join(sorted(profiles))})" if profiles else "no bounds"
