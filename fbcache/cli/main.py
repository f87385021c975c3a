"""``fbcache``: verbs over pytest-benchmark's storage (``.benchmarks`` by default, or ``--storage``).

    fbcache history                  list saved runs and their fingerprints
    fbcache compare                  judge the latest run against its history; exit 0 clean, 1 regression, 2 error
    fbcache accept RUN               the level of RUN is intended: a new baseline segment starts there
    fbcache alert RESULT.json        step summary, webhook, issue; exit code of the result
    fbcache report [RUN]             Markdown + HTML + PNG report of a run
    fbcache calibrate [RUN] --out P  a bounds profile from a saved run
    fbcache nightly                  sweep, compare, report, alert: the nightly job in one verb
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from fbcache.alerts.channels import EXIT_CLEAN, EXIT_REGRESSION, EXIT_USAGE, Finding, WebhookSettings, alert
from fbcache.errors import FBCacheError
from fbcache.history.acceptance import Acceptance, load_acceptances, write_acceptance
from fbcache.history.selection import SelectionError, find_run
from fbcache.history.storage import Run, load_runs
from fbcache.verdicts.compare import CompareResult, CompareSettings, markdown
from fbcache.verdicts.judge import judge_latest

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
    return CompareSettings(alpha=args.alpha, min_effect=args.min_effect, max_mde=args.max_mde, history=args.history,
                           min_history=args.min_history, ssim_tolerance=args.ssim_tolerance,
                           judge_cpu_timing=args.judge_cpu_timing)


def read_acceptances(storage: Path) -> dict[str, Acceptance]:
    found, problems = load_acceptances(storage)
    for message in problems:
        print(f"fbcache: warning: {message}", file=sys.stderr)
    return found


def baseline_start(runs: list[Run], latest: Run, spec: str) -> Run | None:
    """``segment`` (None: the whole history, segmented) or the run where the baseline history starts."""
    if spec == "segment":
        return None
    if spec == "previous" or spec.startswith("median:"):
        raise SelectionError(f"--baseline {spec} is gone: one night as a baseline made persistent regressions "
                             "vanish; use segment (default) or a run name/number where the baseline starts")
    run = find_run(runs, spec)
    if run.fingerprint_id != latest.fingerprint_id:
        raise SelectionError(f"{run.name} has a different fingerprint than {latest.name}; runs are never mixed")
    if runs.index(run) >= runs.index(latest):
        raise SelectionError("the baseline must start at an earlier run than the latest one")
    return run


def judge_storage(storage: Path, latest_name: str | None, baseline_spec: str,
                  settings: CompareSettings) -> CompareResult:
    """What compare and nightly both run: the latest run judged against its segmented history."""
    runs = read_history(str(storage))
    latest = pick(runs, latest_name)
    start = baseline_start(runs, latest, baseline_spec)
    return judge_latest(runs, latest, read_acceptances(storage_path(str(storage))), settings, start)


def run_compare(storage: str, latest_name: str | None, baseline_spec: str, settings: CompareSettings) -> CompareResult:
    return judge_storage(storage_path(storage), latest_name, baseline_spec, settings)


def cmd_compare(args: argparse.Namespace) -> int:
    result = run_compare(args.storage, args.latest, args.baseline, settings_from(args))
    text = markdown(result)
    print(text)
    if args.json:
        Path(args.json).write_text(result.to_json(), encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(text + "\n", encoding="utf-8")
    return EXIT_REGRESSION if result.regression else EXIT_CLEAN


def cmd_accept(args: argparse.Namespace) -> int:
    runs = read_history(args.storage)
    run = find_run(runs, args.run)
    path = write_acceptance(run.path, run.fingerprint_id, args.reason)
    print(f"accepted {run.name}: a new baseline segment starts there ({args.reason}); recorded in {path}")
    return EXIT_CLEAN


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
    info = run.machine_info.get("fbcache", {})
    accelerator = str(fp.get("accelerator", ""))
    on_cpu = accelerator.startswith("cpu")
    workload = info.get("workload", {})
    match = {"model": fp.get("model", ""), "quantization": fp.get("quantization", ""),
             "cache_backend": fp.get("cache_backend", ""), "accelerator": "cpu" if on_cpu else accelerator,
             "steps": str(workload.get("steps", "")), "resolution": str(workload.get("resolution", ""))}
    text = calibrate(run.records.values(), args.speedup_margin, args.ssim_margin, name=args.name or Path(args.out).stem,
                     match={k: v for k, v in match.items() if v}, enforce_speedup=not on_cpu,
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
    parser.add_argument("--baseline", default="segment",
                        help="segment (default: each benchmark's last stable segment of its history), or a run "
                             "name/number where the baseline history starts")
    parser.add_argument("--alpha", type=float, default=defaults.alpha,
                        help="false-alarm probability of one whole compare, all tests together (0.01)")
    parser.add_argument("--min-effect", type=float, default=defaults.min_effect,
                        help="smallest relative time/speedup change that ever counts (0.01)")
    parser.add_argument("--max-mde", type=float, default=defaults.max_mde,
                        help="beyond this minimum detectable effect a benchmark is too noisy to judge (0.25)")
    parser.add_argument("--history", type=int, default=defaults.history,
                        help="most recent runs of a segment that set its level (20)")
    parser.add_argument("--min-history", type=int, default=defaults.min_history,
                        help="earlier runs needed before time and speedup are judged (3)")
    parser.add_argument("--ssim-tolerance", type=float, default=defaults.ssim_tolerance,
                        help="largest SSIM drop that is not a regression (0.01)")
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

    accept = verb("accept", "accept the level of RUN as intended: its benchmarks start a new baseline segment")
    accept.add_argument("run", help="run name or number")
    accept.add_argument("--reason", default="", help="why, e.g. the commit that made it slower on purpose")
    accept.set_defaults(func=cmd_accept)

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
