"""``fbcache``: verbs over pytest-benchmark's storage (``.benchmarks`` by default, or ``--storage``).

    fbcache history                  list saved runs and their fingerprints
    fbcache compare                  judge the latest run against its history; exit 0 clean, 1 regression, 2 error
    fbcache accept RUN               the level of RUN is intended: a new baseline segment starts there
    fbcache alert RESULT.json        send it through every alert sink its options turn on; exit code of the result
    fbcache report [RUN]             Markdown + HTML + PNG report of a run
    fbcache calibrate [RUN] --out P  a bounds profile from a saved run
    fbcache nightly                  sweep, compare, report, alert: the nightly job in one verb
    fbcache xreport --storage D ...  the newest run of every GPU side by side, from several histories
    fbcache merge SHARD... --out S   the shards of a sharded sweep as one run file in storage S
    fbcache agree                    one workload through every installed cache backend, side by side
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from fbcache.alerts import Finding, add_sink_options, alert, all_sinks, configured_sinks
from fbcache.cli.common import (
    DEFAULT_STORAGE,
    PlainHelpFormatter,
    add_compare_options,
    add_metric_amounts,
    compare_settings,
    judge_storage,
    metric_amounts,
    output_dir,
    output_file,
    pick,
    read_history,
    storage_path,
    write_file,
)
from fbcache.cli.nightly import add_nightly_options, cmd_nightly
from fbcache.errors import EXIT_CLEAN, EXIT_REGRESSION, EXIT_USAGE, DataError, FBCacheError
from fbcache.history.acceptance import write_acceptance
from fbcache.history.fingerprint import fingerprint_changes, match_facts
from fbcache.history.selection import find_run
from fbcache.history.storage import Run
from fbcache.verdicts.compare import CompareResult, CompareSettings, markdown

# ------------------------------------------------------------------------------------- verbs


def cmd_history(args: argparse.Namespace) -> int:
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


def run_compare(storage: str, latest_name: str | None, baseline_spec: str, settings: CompareSettings) -> CompareResult:
    """The latest run judged against its fingerprint's segmented history (the first run: "not judged")."""
    return judge_storage(storage, latest_name, baseline_spec, settings)


def cmd_accept(args: argparse.Namespace) -> int:
    runs = read_history(args.storage)
    run = find_run(runs, args.run)
    path = write_acceptance(run.path, run.fingerprint_id, args.reason)
    print(f"accepted {run.name}: a new baseline segment starts there ({args.reason or 'no reason given'}); "
          f"recorded in {path}")
    return EXIT_CLEAN


def cmd_compare(args: argparse.Namespace) -> int:
    json_path = output_file(args.json, "--json") if args.json else None
    markdown_path = output_file(args.markdown, "--markdown") if args.markdown else None
    result = run_compare(args.storage, args.latest, args.baseline, compare_settings(args))
    text = markdown(result)
    print(text)
    if json_path is not None:
        write_file(json_path, result.to_json(), "--json")
    if markdown_path is not None:
        write_file(markdown_path, text + "\n", "--markdown")
    return EXIT_REGRESSION if result.regression else EXIT_CLEAN


def cmd_alert(args: argparse.Namespace) -> int:
    if (args.result is None) == (args.broken is None):
        raise DataError("give a compare result (RESULT.json) or --broken REASON, not both or neither")
    sinks = configured_sinks(args)  # every destination checked before anything is sent
    if args.broken is not None:
        finding = Finding(broken=args.broken, context=args.context)
    else:
        try:
            finding = Finding(result=CompareResult.load(Path(args.result)), context=args.context)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
            raise DataError(f"cannot read compare result {args.result}: {' '.join(str(reason).split())}") from None
    return alert(finding, sinks)


def cmd_report(args: argparse.Namespace) -> int:
    from fbcache.history.provenance import mismatch
    from fbcache.render.report import build_report

    out = output_dir(args.out, "--out")
    runs = read_history(args.storage)
    latest = pick(runs, args.run)
    images = Path(args.images) if args.images else None
    if images is not None:
        refused, note = mismatch(images, latest.fingerprint)
        if refused:
            print(f"fbcache report: warning: {note}", file=sys.stderr)
    written = build_report(runs, latest, out, images)
    print(f"report of {latest.name}: {len(written)} files in {args.out}")
    return EXIT_CLEAN


def cmd_calibrate(args: argparse.Namespace) -> int:
    from fbcache.verdicts.bounds import calibrate

    margins = metric_amounts(args, "margin")
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


def cmd_xreport(args: argparse.Namespace) -> int:
    from fbcache.render.xreport import build_xreport

    roots = [storage_path(raw) for raw in args.storage or [DEFAULT_STORAGE]]
    missing = [str(root) for root in roots if not root.is_dir()]
    if missing:
        raise DataError(f"no storage directory {', '.join(missing)}")
    try:
        written, groups, skipped = build_xreport(roots, Path(args.out))
    except ValueError as exc:
        raise DataError(str(exc)) from None
    for message in skipped:
        print(f"fbcache: warning: {message}", file=sys.stderr)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if args.step_summary and summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(written[0].read_text(encoding="utf-8"))
    accelerators = sorted({c.accelerator for g in groups for c in g.columns})
    print(f"cross-hardware report: {len(groups)} workload(s), {len(accelerators)} accelerator(s) "
          f"({', '.join(accelerators)}); {', '.join(str(p) for p in written)}")
    return EXIT_CLEAN


def cmd_merge(args: argparse.Namespace) -> int:
    from fbcache.history.merge import MergeError, merge_shards, resolve_inputs, write_merged
    from fbcache.history.storage import parse_run
    from fbcache.render.table import markdown_table

    try:
        inputs = [Path(p) for p in args.shards]
        merged = merge_shards(inputs)
        # the shards' pytest-benchmark machine id: the folder their run files are in
        machine_id = args.machine_id or resolve_inputs(inputs)[0].parent.name
        path = write_merged(merged, storage_path(args.out), args.name, machine_id)
    except MergeError as exc:
        raise DataError(str(exc)) from None
    run = parse_run(path, merged)
    shards = merged["machine_info"]["fbcache"]["merged_from"]
    print(markdown_table(run.records.values()))
    print(f"merged {shards['world_size']} shards ({', '.join(shards['runs'])}) into {path}")
    return EXIT_CLEAN


# ------------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fbcache", description=__doc__, formatter_class=PlainHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text, formatter_class=PlainHelpFormatter)
        sub.add_argument("--storage", default=DEFAULT_STORAGE, help="pytest-benchmark storage (default .benchmarks)")
        return sub

    verb("history", "list saved runs with their fingerprints").set_defaults(func=cmd_history)

    compare = verb("compare", "judge the latest run against its segmented history")
    compare.add_argument("--latest", help="run to judge (default: the newest)")
    add_compare_options(compare)
    compare.add_argument("--json", help="write the result here, for `fbcache alert`")
    compare.add_argument("--markdown", help="write the table here")
    compare.set_defaults(func=cmd_compare)

    accept = verb("accept", "accept the level of RUN as intended: its benchmarks start a new baseline segment")
    accept.add_argument("run", help="run name or number")
    accept.add_argument("--reason", default="", help="why, e.g. the commit that made it slower on purpose")
    accept.set_defaults(func=cmd_accept)

    alert_parser = verb("alert", "send a compare result (or a broken sweep) through the alert sinks its options turn "
                        f"on ({', '.join(sink.name for sink in all_sinks())})")
    alert_parser.add_argument("result", nargs="?", help="JSON written by `fbcache compare --json`")
    alert_parser.add_argument("--broken", help="the sweep broke: say why (exit code 3, not a regression)")
    alert_parser.add_argument("--context", default="", help="where this ran, e.g. the workflow run URL")
    add_sink_options(alert_parser)
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
    add_metric_amounts(calibrate, "margin", "how far beyond the measured value an image metric's bound goes",
                       lambda metric: metric.calibrate_margin)
    calibrate.set_defaults(func=cmd_calibrate)

    xreport = verbs.add_parser("xreport", help="cross-hardware report: every GPU's newest run side by side",
                               description="cross-hardware report: every GPU's newest run side by side",
                               formatter_class=PlainHelpFormatter)
    xreport.add_argument("--storage", action="append",
                         help="a history directory, searched recursively (repeat for several runners; "
                              "default .benchmarks)")
    xreport.add_argument("--out", default="fbcache-xreport", help="output directory (default fbcache-xreport)")
    xreport.add_argument("--step-summary", action="store_true",
                         help="also append the Markdown to $GITHUB_STEP_SUMMARY (when set)")
    xreport.set_defaults(func=cmd_xreport)

    merge = verbs.add_parser("merge", help="merge the shards of a sharded sweep into one run file",
                             formatter_class=PlainHelpFormatter,
                             description="merge the shards of a sharded sweep (torchrun or --fbcache-shard) into "
                                         "one pytest-benchmark run file")
    merge.add_argument("shards", nargs="+", help="shard run files, or shard directories (their newest run), "
                                                 "e.g. .benchmarks/shards/0-of-2 .benchmarks/shards/1-of-2")
    merge.add_argument("--out", default=DEFAULT_STORAGE, help="storage to save the merged run in (default .benchmarks)")
    merge.add_argument("--name", default="merged", help="saved as NNNN_<name>.json (default merged)")
    merge.add_argument("--machine-id", help="storage folder (default: the shards' pytest-benchmark machine id)")
    merge.set_defaults(func=cmd_merge)

    nightly = verb("nightly", "the nightly job: sweep, compare, report, alert")
    add_nightly_options(nightly)
    nightly.set_defaults(func=cmd_nightly)

    from fbcache.cli import agree as agree_verb

    agree = verbs.add_parser("agree", help="run one workload through every installed cache backend and compare "
                             "their hit maps; exit 0 agree, 1 disagree, 2 error",
                             description=agree_verb.__doc__, formatter_class=PlainHelpFormatter)
    agree_verb.add_agree_options(agree)
    agree.set_defaults(func=agree_verb.cmd_agree)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes (fbcache.errors): 0 clean, 1 regression and nothing else, 2 usage or I/O error, 3 broken sweep."""
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on bad arguments
    try:
        return args.func(args)
    except FBCacheError as exc:
        print(f"fbcache {args.verb}: error: {' '.join(str(exc).split())}", file=sys.stderr)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"fbcache {args.verb}: error:{where}: {exc.strerror or exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"fbcache {args.verb}: interrupted", file=sys.stderr)
    except Exception:  # a bug must not read as a regression (exit 1) in CI
        traceback.print_exc()
        print(f"fbcache {args.verb}: internal error (not a regression); the traceback is above", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
