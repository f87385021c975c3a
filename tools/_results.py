"""What the GPU scripts' table tools (:mod:`tools.gpu_compile`, :mod:`tools.compile_matrix`) share: the latest
saved run of one storage, read through fbcache's own reader, the line naming the stack it ran on, and writing
the table out."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fbcache.errors import EXIT_CLEAN, EXIT_USAGE
from fbcache.history.storage import Run, load_runs


def latest_run(storage: Path) -> Run | None:
    """The latest well-formed fbcache run under ``storage`` (None: there is none); each file skipped as
    corrupt, partial or not fbcache's is named on stderr, so a broken file never hides behind a table."""
    runs, skipped = load_runs(storage)
    for line in skipped:
        print(line, file=sys.stderr)
    return runs[-1] if runs else None


def stack_line(machine: Mapping[str, Any], saved: str) -> str:
    """The card, driver, libraries and workload of a run's ``machine_info["fbcache"]``, and the day ``saved``."""
    accelerator, versions = machine.get("accelerator", {}), machine.get("versions", {})
    workload = machine.get("workload", {})
    return (f"{accelerator.get('name')} (driver {accelerator.get('driver')}, CUDA {accelerator.get('cuda')}); "
            f"torch {versions.get('torch')}, diffusers {versions.get('diffusers')}, torchao {versions.get('torchao')}; "
            f"{machine.get('model')}, {workload.get('resolution')}, {workload.get('steps')} steps; runs saved {saved[:10]}")


def emit(text: str, out: Path | None, found: int, nothing: str) -> int:
    """The table to ``out`` (or stdout), and the exit code: usage when ``found`` is 0 (``nothing`` says where)."""
    if out:
        out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if not found:
        print(f"no saved run in {nothing}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_CLEAN
