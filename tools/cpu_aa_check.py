"""CPU real-run checks of issue 11: A/A sweeps of the tiny model, judged, and speedups against hits.

    OMP_NUM_THREADS=1 python -m tools.cpu_aa_check --out DIR --runs 8

Runs ``--runs`` unchanged sweeps (the harness's default settings: 28 steps, 3 rounds; ``--steps N``
for shorter ones, as the first runs of this tool used: 8) into one history, judges each with
``fbcache compare`` (default settings, and with ``--judge-cpu-timing``), and checks in every sweep that the paired speedups are ordered as the hit
counts are (thresholds with equal hits within 3% of each other).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

from fbcache.history.storage import run_files

ROOT = Path(__file__).resolve().parent.parent


def ordered_as_hits(records: list[dict], tolerance: float = 0.03) -> list[str]:
    """The pairs of thresholds whose speedups contradict their hit counts (empty: ordered)."""
    problems = []
    for a, b in itertools.combinations(records, 2):
        (ha, sa), (hb, sb) = (a["hits"], a["speedup"]), (b["hits"], b["speedup"])
        name = f"{a['threshold']:g} ({ha} hits, {sa:.2f}x) vs {b['threshold']:g} ({hb} hits, {sb:.2f}x)"
        if ha == hb and abs(sa / sb - 1) > tolerance:
            problems.append(f"equal hits, speedups differ by {abs(sa / sb - 1):.1%}: {name}")
        elif (ha - hb) * (sa - sb) < 0:
            problems.append(f"more hits, lower speedup: {name}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="--fbcache-steps (default: the harness default)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    storage = out / "history"
    alarms = {"default": 0, "--judge-cpu-timing": 0}
    judged = ordered = 0
    for index in range(args.runs):
        done = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "benchmarks"), "-p", "no:cacheprovider", "-q",
                               f"--benchmark-storage=file://{storage}", "--benchmark-autosave",
                               "--fbcache-output-dir", str(out / "images"),
                               *(["--fbcache-steps", str(args.steps)] if args.steps else [])],
                              cwd=out, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:])
            return 2
        latest = json.loads(run_files(storage)[-1].read_text())
        records = [b["extra_info"] for b in latest["benchmarks"] if b["extra_info"]["threshold"] is not None]
        problems = ordered_as_hits(records)
        ordered += not problems
        line = [f"run {index + 1}: speedups " + ", ".join(f"{r['threshold']:g}:{r['speedup']:.2f}x/{r['hits']}h"
                                                           for r in records)]
        line.append("ordered as hits" if not problems else "NOT ordered: " + "; ".join(problems))
        if index >= 1:
            for name, extra in (("default", []), ("--judge-cpu-timing", ["--judge-cpu-timing"])):
                result = subprocess.run([sys.executable, "-m", "fbcache", "compare", "--storage", str(storage),
                                         *extra], cwd=ROOT, capture_output=True, text=True, check=False)
                alarm = result.returncode == 1
                alarms[name] += alarm
                noisy = result.stdout.count("too noisy to judge")
                line.append(f"{name}: {'REGRESSION' if alarm else 'clean'} ({noisy} too-noisy mentions)")
            judged += 1
        print(" | ".join(line), flush=True)
    print(f"\n{judged} A/A compares: false alarms default {alarms['default']}, "
          f"--judge-cpu-timing {alarms['--judge-cpu-timing']}; speedups ordered as hits in {ordered} of {args.runs}")
    if args.runs >= 3:
        verdict = plus_20_percent(storage, out / "edited")
        print(f"three real runs, then the third edited to +20% (every time), --judge-cpu-timing: {verdict}")
    return 0


def scale_times(bench: dict, factor: float, paired: bool = True) -> None:
    """Multiply every time of one saved benchmark (pytest-benchmark's stats and fbcache's extra_info) by
    ``factor``; ``paired``: its paired uncached rounds too, so that its paired speedup stays as it was."""
    stats, info = bench["stats"], bench["extra_info"]
    if "data" in stats:
        stats["data"] = [x * factor for x in stats["data"]]
    for key in ("min", "max", "mean", "median", "stddev", "iqr", "q1", "q3", "total", "ld15iqr", "hd15iqr"):
        if isinstance(stats.get(key), (int, float)):
            stats[key] *= factor
    for key in ("rounds_s", "paired_uncached_s") if paired else ("rounds_s",):
        if info.get(key):
            info[key] = [x * factor for x in info[key]]
    for key in ("first_s", "second_s", "median_s"):
        if info.get(key) is not None:
            info[key] *= factor


def plus_20_percent(storage: Path, edited: Path) -> str:
    """Runs 1-3 of ``storage`` and a copy of run 3 with every time x 1.2, judged with --judge-cpu-timing."""
    runs = run_files(storage)[:3]
    target = edited / runs[0].parent.name
    shutil.rmtree(edited, ignore_errors=True)
    target.mkdir(parents=True)
    for path in runs:
        shutil.copy(path, target / path.name)
    data = json.loads(runs[-1].read_text())
    for bench in data["benchmarks"]:
        scale_times(bench, 1.2)
    (target / "0004_plus-20-percent.json").write_text(json.dumps(data))
    result = subprocess.run([sys.executable, "-m", "fbcache", "compare", "--storage", str(edited),
                             "--judge-cpu-timing"], cwd=ROOT, capture_output=True, text=True, check=False)
    rows = [line for line in result.stdout.splitlines() if line.startswith("| uncached") or line.startswith("| all")]
    return ("REGRESSION" if result.returncode == 1 else f"exit {result.returncode}") + "; " + " ".join(rows)


if __name__ == "__main__":
    sys.exit(main())
