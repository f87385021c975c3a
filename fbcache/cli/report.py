"""``fbcache report [RUN]``: the Markdown, HTML and PNG report of a saved run (:mod:`fbcache.render.report`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fbcache.cli import add_storage_option, output_dir, pick, read_history
from fbcache.errors import EXIT_CLEAN
from fbcache.history.storage import images_mismatch
from fbcache.render.report import build_report

HELP = "Markdown, HTML and PNG report of a saved run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_storage_option(parser)
    parser.add_argument("run", nargs="?", help="run name or number (default: the newest)")
    parser.add_argument("--out", default="fbcache-report", help="output directory (default fbcache-report)")
    parser.add_argument("--images", default="fbcache-results", help="the sweep's --fbcache-output-dir")


def run(args: argparse.Namespace) -> int:
    out = output_dir(args.out, "--out")

    def progress(step: str) -> None:  # on stderr, so stdout keeps only the result line
        print(f"fbcache report: {step}", file=sys.stderr, flush=True)

    runs = read_history(args.storage)
    latest = pick(runs, args.run)
    images = Path(args.images) if args.images else None
    if images is not None:
        refused, note = images_mismatch(images, latest.fingerprint)
        if refused:
            print(f"fbcache report: warning: {note}", file=sys.stderr)
    written = build_report(runs, latest, out, images, progress)
    print(f"report of {latest.name}: {len(written)} files in {args.out}")
    return EXIT_CLEAN
