"""``fbcache calibrate [RUN] --out P``: a bounds profile from a saved run (:func:`fbcache.verdicts.bounds.calibrate`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fbcache.cli import (
    add_metric_amounts,
    add_storage_option,
    metric_amounts,
    output_file,
    pick,
    read_history,
    write_file,
)
from fbcache.errors import EXIT_CLEAN
from fbcache.history.fingerprint import match_facts
from fbcache.verdicts.bounds import calibrate

HELP = "write a bounds profile from a saved run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_storage_option(parser)
    parser.add_argument("run", nargs="?", help="run name or number (default: the newest)")
    parser.add_argument("--out", required=True, help="profile to write, e.g. benchmarks/bounds/mine.toml")
    parser.add_argument("--name", help="profile name (default: the file stem)")
    parser.add_argument("--speedup-margin", type=float, default=0.15, help="relative, below measured (0.15)")
    add_metric_amounts(parser, "margin", "how far beyond the measured value an image metric's bound goes (a "
                       "fraction of it where the metric's margin is relative)",
                       lambda metric: metric.margin_text(metric.calibrate_margin))


def run(args: argparse.Namespace) -> int:
    margins = metric_amounts(args, "margin", margins=True)
    out = output_file(args.out, "--out")
    run = pick(read_history(args.storage), args.run)
    fp = run.fingerprint
    accelerator = str(fp.get("accelerator", ""))
    on_cpu = accelerator.startswith("cpu")
    match = match_facts(run.machine_info.get("fbcache", {}))
    text = calibrate(run.records.values(), args.speedup_margin, margins, name=args.name or Path(args.out).stem,
                     match=match, enforce_speedup=not on_cpu,
                     measured_on=f"{accelerator}, run {run.name} ({run.datetime[:10]})")
    write_file(out, text, "--out")
    print(f"wrote {args.out} from {run.name}")
    return EXIT_CLEAN
