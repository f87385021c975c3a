"""``fbcache compare``: the latest run judged against its fingerprint's segmented history.

Exit 0 clean, 1 regression (and nothing else), 2 error. The judging itself is shared with
``fbcache nightly`` (:func:`fbcache.cli.judge_run`).
"""

from __future__ import annotations

import argparse

from fbcache.cli import (
    add_compare_options,
    add_storage_option,
    compare_settings,
    judge_run,
    output_file,
    pick,
    read_history,
    storage_path,
    write_file,
)
from fbcache.errors import EXIT_CLEAN, EXIT_REGRESSION
from fbcache.verdicts import markdown

HELP = "judge the latest run against its segmented history"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_storage_option(parser)
    parser.add_argument("--latest", help="run to judge (default: the newest)")
    add_compare_options(parser)
    parser.add_argument("--json", help="write the result here, for `fbcache alert`")
    parser.add_argument("--markdown", help="write the table here")


def run(args: argparse.Namespace) -> int:
    # checked before the history is read, so a typo costs a one-line error, not a finished compare
    json_path = output_file(args.json, "--json") if args.json else None
    markdown_path = output_file(args.markdown, "--markdown") if args.markdown else None
    runs = read_history(args.storage)
    latest = pick(runs, args.latest)
    result = judge_run(runs, latest, storage_path(args.storage), args.baseline, compare_settings(args))
    text = markdown(result)
    print(text)
    if json_path is not None:
        write_file(json_path, result.to_json(), "--json")
    if markdown_path is not None:
        write_file(markdown_path, text + "\n", "--markdown")
    return EXIT_REGRESSION if result.regression else EXIT_CLEAN
