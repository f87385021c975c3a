"""What every verb shares: reading the storage, picking runs, and the compare options.

Both ``fbcache compare`` and ``fbcache nightly`` read their compare settings from here, so the
two verbs cannot drift apart and neither imports the other.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fbcache.errors import DataError
from fbcache.history.selection import find_run
from fbcache.history.storage import Run, load_runs
from fbcache.verdicts.compare import CompareSettings

DEFAULT_STORAGE = ".benchmarks"


def storage_path(raw: str) -> Path:
    return Path(raw[len("file://"):] if raw.startswith("file://") else raw)


def read_history(raw_storage: str) -> list[Run]:
    """All fbcache runs in the storage, oldest first; skipped files are named on stderr."""
    path = storage_path(raw_storage)
    if not path.is_dir():
        raise DataError(f"no storage directory {path} (run `pytest benchmarks --benchmark-autosave` first)")
    runs, skipped = load_runs(path)
    for message in skipped:
        print(f"fbcache: warning: {message}", file=sys.stderr)
    if not runs:
        raise DataError(f"no fbcache runs in {path}")
    return runs


def pick(runs: list[Run], name: str | None) -> Run:
    return find_run(runs, name) if name else runs[-1]


def output_file(raw: str, option: str) -> Path:
    """A file we may write: its directory exists and is writable, and it is not a directory. Checked
    before any work, so a typo costs a one-line error (exit 2), not a finished compare thrown away."""
    path = Path(raw).expanduser()
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise DataError(f"{option} {raw}: is a directory; give a file path")
    if not parent.is_dir():
        raise DataError(f"{option} {raw}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise DataError(f"{option} {raw}: not writable")
    return path


def output_dir(raw: str, option: str) -> Path:
    """A directory we may write into (created later if absent); an existing file there is refused."""
    path = Path(raw).expanduser()
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise DataError(f"{option} {raw}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise DataError(f"{option} {raw}: {probe} is not writable")
    return path


def write_file(path: Path, text: str, option: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{option} {path}: {exc.strerror or exc}") from None


def compare_settings(args: argparse.Namespace) -> CompareSettings:
    return CompareSettings(min_effect=args.min_effect, alpha=args.alpha, band_k=args.band_k, history=args.history,
                           min_history=args.min_history, ssim_tolerance=args.ssim_tolerance,
                           run_shift=args.run_shift, judge_cpu_timing=args.judge_cpu_timing)


def add_compare_options(parser: argparse.ArgumentParser) -> None:
    defaults = CompareSettings()
    parser.add_argument("--baseline", default="previous",
                        help="previous (default), median:K (median of the last K runs), or a run name/number")
    parser.add_argument("--min-effect", type=float, default=defaults.min_effect,
                        help="smallest relative time/speedup change that counts (default 0.05)")
    parser.add_argument("--alpha", type=float, default=defaults.alpha, help="Mann-Whitney significance (0.05)")
    parser.add_argument("--band-k", type=float, default=defaults.band_k, help="band half-width in MADs (3)")
    parser.add_argument("--history", type=int, default=defaults.history, help="earlier runs in the band (10)")
    parser.add_argument("--min-history", type=int, default=defaults.min_history,
                        help="earlier runs needed before time and speedup are judged (3)")
    parser.add_argument("--ssim-tolerance", type=float, default=defaults.ssim_tolerance,
                        help="largest SSIM drop that is not a regression (0.01)")
    parser.add_argument("--run-shift", type=float, default=defaults.run_shift,
                        help="median change over all benchmarks that confirms a lone excursion at once (0.10)")
    parser.add_argument("--judge-cpu-timing", action="store_true",
                        help="alert on time/speedup of CPU runs too (default: advisory, CPU timing is noisy)")
