"""``fbcache``: verbs over pytest-benchmark's storage (``.benchmarks`` by default, or ``--storage``).

    fbcache history                  list saved runs and their fingerprints
    fbcache compare                  latest run against a baseline; exit 0 clean, 1 regression, 2 error
    fbcache alert RESULT.json        step summary, webhook, issue; exit code of the result
    fbcache report [RUN]             Markdown + HTML + PNG report of a run
    fbcache calibrate [RUN] --out P  a bounds profile from a saved run
    fbcache nightly                  sweep, compare, report, alert: the nightly job in one verb
    fbcache agree                    one workload through every installed cache backend, side by side
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from fbcache.alerts.channels import EXIT_CLEAN, EXIT_REGRESSION, EXIT_USAGE, Finding, WebhookSettings, alert
from fbcache.verdicts.compare import CompareResult, CompareSettings, compare_runs, markdown
from fbcache.errors import FBCacheError
from fbcache.history.selection import SelectionError, choose_baseline, find_run, same_fingerprint_before
from fbcache.history.fingerprint import match_facts
from fbcache.history.storage import Run, load_runs

DEFAULT_STORAGE = ".benchmarks"


class DataError(FBCacheError):
    """Missing or unusable history: exit code 2."""


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


# ------------------------------------------------------------------------------------- verbs


def cmd_history(args: argparse.Namespace) -> int:
    runs = read_history(args.storage)
    for run in runs:
        fp = run.fingerprint
        print(f"{run.name}  {run.datetime[:19]}  [{run.fingerprint_id}] {fp.get('accelerator')} | {fp.get('model')} | "
              f"{fp.get('quantization')} | {fp.get('cache_backend')} | {fp.get('workload')}")
    return EXIT_CLEAN


def settings_from(args: argparse.Namespace) -> CompareSettings:
    return CompareSettings(min_effect=args.min_effect, alpha=args.alpha, band_k=args.band_k, history=args.history,
                           min_history=args.min_history, ssim_tolerance=args.ssim_tolerance,
                           run_shift=args.run_shift, judge_cpu_timing=args.judge_cpu_timing)


def run_compare(storage: str, latest_name: str | None, baseline_spec: str, settings: CompareSettings) -> CompareResult:
    runs = read_history(storage)
    latest = pick(runs, latest_name)
    baseline = choose_baseline(runs, latest, baseline_spec)
    return compare_runs(latest, baseline, same_fingerprint_before(runs, latest), settings)


def cmd_compare(args: argparse.Namespace) -> int:
    result = run_compare(args.storage, args.latest, args.baseline, settings_from(args))
    text = markdown(result)
    print(text)
    if args.json:
        Path(args.json).write_text(result.to_json(), encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(text + "\n", encoding="utf-8")
    return EXIT_REGRESSION if result.regression else EXIT_CLEAN


def webhook_from(args: argparse.Namespace) -> WebhookSettings | None:
    url = args.webhook or os.environ.get("FBCACHE_WEBHOOK_URL")
    if not url:
        return None
    return WebhookSettings(url, timeout_s=args.webhook_timeout, attempts=args.webhook_attempts)


def cmd_alert(args: argparse.Namespace) -> int:
    if (args.result is None) == (args.broken is None):
        raise DataError("give a compare result (RESULT.json) or --broken REASON, not both or neither")
    if args.broken is not None:
        finding = Finding(broken=args.broken, context=args.context)
    else:
        try:
            finding = Finding(result=CompareResult.load(Path(args.result)), context=args.context)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"cannot read compare result {args.result}: {exc}") from None
    return alert(finding, webhook_from(args), issue=args.issue, post_when_clean=args.always)


def cmd_report(args: argparse.Namespace) -> int:
    from fbcache.render.report import build_report

    runs = read_history(args.storage)
    latest = pick(runs, args.run)
    images = Path(args.images) if args.images else None
    written = build_report(runs, latest, Path(args.out), images)
    print(f"report of {latest.name}: {len(written)} files in {args.out}")
    return EXIT_CLEAN


def cmd_calibrate(args: argparse.Namespace) -> int:
    from fbcache.verdicts.bounds import calibrate

    run = pick(read_history(args.storage), args.run)
    fp = run.fingerprint
    accelerator = str(fp.get("accelerator", ""))
    on_cpu = accelerator.startswith("cpu")
    match = match_facts(run.machine_info.get("fbcache", {}))
    text = calibrate(run.records.values(), args.speedup_margin, args.ssim_margin, name=args.name or Path(args.out).stem,
                     match=match, enforce_speedup=not on_cpu,
                     measured_on=f"{accelerator}, run {run.name} ({run.datetime[:10]})")
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"wrote {args.out} from {run.name}")
    return EXIT_CLEAN


def cmd_nightly(args: argparse.Namespace) -> int:
    from fbcache.cli.nightly import NightlySettings, run_nightly

    return run_nightly(NightlySettings.from_args(args))


# ------------------------------------------------------------------------------------ parser


def _compare_options(parser: argparse.ArgumentParser) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fbcache", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--storage", default=DEFAULT_STORAGE, help="pytest-benchmark storage (default .benchmarks)")
        return sub

    verb("history", "list saved runs with their fingerprints").set_defaults(func=cmd_history)

    compare = verb("compare", "judge the latest run against a baseline")
    compare.add_argument("--latest", help="run to judge (default: the newest)")
    _compare_options(compare)
    compare.add_argument("--json", help="write the result here, for `fbcache alert`")
    compare.add_argument("--markdown", help="write the table here")
    compare.set_defaults(func=cmd_compare)

    alert_parser = verb("alert", "send a compare result (or a broken sweep) to the step summary, a webhook, an issue")
    alert_parser.add_argument("result", nargs="?", help="JSON written by `fbcache compare --json`")
    alert_parser.add_argument("--broken", help="the sweep broke: say why (exit code 3, not a regression)")
    alert_parser.add_argument("--context", default="", help="where this ran, e.g. the workflow run URL")
    alert_parser.add_argument("--webhook", help="URL to POST to (default: $FBCACHE_WEBHOOK_URL)")
    alert_parser.add_argument("--webhook-timeout", type=float, default=10.0, help="seconds per attempt (10)")
    alert_parser.add_argument("--webhook-attempts", type=int, default=3, help="attempts in all (3)")
    alert_parser.add_argument("--issue", action="store_true", help="file a GitHub issue with gh on regression")
    alert_parser.add_argument("--always", action="store_true", help="post to the webhook even when clean")
    alert_parser.set_defaults(func=cmd_alert)

    report = verb("report", "Markdown, HTML and PNG report of a saved run")
    report.add_argument("run", nargs="?", help="run name or number (default: the newest)")
    report.add_argument("--out", default="fbcache-report", help="output directory (default fbcache-report)")
    report.add_argument("--images", default="fbcache-results", help="the sweep's --fbcache-output-dir")
    report.set_defaults(func=cmd_report)

    calibrate = verb("calibrate", "write a bounds profile from a saved run")
    calibrate.add_argument("run", nargs="?", help="run name or number (default: the newest)")
    calibrate.add_argument("--out", required=True, help="profile to write, e.g. benchmarks/bounds/mine.toml")
    calibrate.add_argument("--name", help="profile name (default: the file stem)")
    calibrate.add_argument("--speedup-margin", type=float, default=0.15, help="relative, below measured (0.15)")
    calibrate.add_argument("--ssim-margin", type=float, default=0.02, help="absolute, below measured (0.02)")
    calibrate.set_defaults(func=cmd_calibrate)

    nightly = verb("nightly", "the nightly job: sweep, compare, report, alert")
    from fbcache.cli.nightly import add_nightly_options

    add_nightly_options(nightly)
    _compare_options(nightly)
    nightly.set_defaults(func=cmd_nightly)

    from fbcache.cli import agree as agree_verb

    agree = verbs.add_parser("agree", help="run one workload through every installed cache backend and compare "
                             "their hit maps; exit 0 agree, 1 disagree, 2 error",
                             description=agree_verb.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    agree_verb.add_agree_options(agree)
    agree.set_defaults(func=agree_verb.cmd_agree)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (DataError, SelectionError, FBCacheError) as exc:
        print(f"fbcache {args.verb}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
