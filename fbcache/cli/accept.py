"""``fbcache accept RUN``: the level of RUN is intended; its benchmarks start a new baseline segment."""

from __future__ import annotations

import argparse

from fbcache.cli import add_storage_option, read_history
from fbcache.errors import EXIT_CLEAN
from fbcache.history.storage import find_run, write_acceptance

HELP = "accept the level of RUN as intended: its benchmarks start a new baseline segment"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_storage_option(parser)
    parser.add_argument("run", help="run name or number")
    parser.add_argument("--reason", default="", help="why, e.g. the commit that made it slower on purpose")


def run(args: argparse.Namespace) -> int:
    runs = read_history(args.storage)
    run = find_run(runs, args.run)
    path = write_acceptance(run.path, run.fingerprint_id, args.reason)
    print(f"accepted {run.name}: a new baseline segment starts there ({args.reason or 'no reason given'}); "
          f"recorded in {path}")
    return EXIT_CLEAN
