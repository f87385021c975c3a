"""The nightly job as one verb, so the workflow YAML holds no logic and CI can run the same path.

1. sweep:   ``pytest benchmarks --benchmark-autosave --benchmark-save-data`` (a subprocess);
2. compare: the new run judged against its fingerprint's segmented history (``--baseline``),
   exactly as ``fbcache compare`` judges it (cli/__init__.py: judge_run);
3. report:  Markdown/HTML/PNG into the report directory;
4. alert:   the step summary always; webhook and issue on regression or broken sweep.

Bad options (the sweep's, from the command line, FBCACHE_* variables or --pytest-args, a --baseline
not in the history, and every alert sink's) are a usage error (exit 2) before the sweep starts. A sweep that pytest still refuses to start is announced
as "did NOT START" (exit 2). A sweep that saved no run is BROKEN (exit 3), reported as such, never as
a regression. A run that broke a bound was saved, marked; it is judged like any other run and its
broken bounds alert.
"""

from __future__ import annotations

import argparse
import codecs
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fbcache.alerts import ConfiguredSink, Finding, add_sink_options, alert, configured_sinks
from fbcache.cli import (
    add_compare_options,
    add_storage_option,
    check_baseline_spec,
    compare_settings,
    judge_run,
    storage_path,
)
from fbcache.configure import build_config, option_name, options
from fbcache.errors import BrokenSweep, ConfigError, MissingDependencyError, SelectionError
from fbcache.history.storage import Run, find_run, load_runs, run_files
from fbcache.verdicts import CompareSettings, markdown

HELP = "the nightly job: sweep, compare, report, alert"
LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class NightlySettings:
    storage: Path
    report_dir: Path
    images_dir: Path
    pytest_args: list[str] = field(default_factory=list)
    compare: CompareSettings = CompareSettings()
    baseline: str = "segment"
    sinks: list[ConfiguredSink] = field(default_factory=list)
    context: str = ""
    benchmarks: str = "benchmarks"

    @classmethod
    def from_args(cls, args: argparse.Namespace, sinks: list[ConfiguredSink] | None = None) -> NightlySettings:
        passthrough = [f"{spec.cli}={value}" for spec in options()
                       if spec.nightly and (value := getattr(args, spec.name, None)) not in (None, "")]
        return cls(storage=storage_path(args.storage), report_dir=Path(args.report_dir), images_dir=Path(args.images),
                   pytest_args=passthrough + split_pytest_args(args.pytest_args), compare=compare_settings(args),
                   baseline=args.baseline, sinks=configured_sinks(args) if sinks is None else sinks,
                   context=args.context, benchmarks=args.benchmarks)


def split_pytest_args(raw: str | None) -> list[str]:
    try:
        return shlex.split(raw or "")
    except ValueError as exc:  # an unclosed quote
        raise ConfigError("--pytest-args", raw, "pytest arguments as one shell-quoted string", str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The nightly verb's own options, the sweep options it passes on, the compare and alert options."""
    add_storage_option(parser)
    parser.add_argument("--report-dir", default="fbcache-report", help="where the report goes")
    parser.add_argument("--images", default="fbcache-results", help="--fbcache-output-dir of the sweep")
    parser.add_argument("--benchmarks", default="benchmarks", help="path of the benchmark suite")
    for spec in options():
        if spec.nightly:
            parser.add_argument("--" + spec.name.replace("_", "-"), dest=spec.name, help=f"passed on as {spec.cli}")
    parser.add_argument("--pytest-args", default="", help="more pytest arguments, one shell-quoted string")
    parser.add_argument("--context", default="", help="where this ran, e.g. the workflow run URL")
    add_compare_options(parser)
    add_sink_options(parser)


def given_options(args: argparse.Namespace) -> dict[str, tuple[str, str]]:
    """Sweep options this job sets, by name: (value, where it was set), with the sweep's precedence:
    FBCACHE_* variables, then ``--images`` and nightly's own flags, then ``--pytest-args`` (last wins)."""
    given: dict[str, tuple[str, str]] = {}
    by_name = {spec.name: spec for spec in options()}
    for spec in options():
        if (value := os.environ.get(spec.env)) not in (None, ""):
            given[spec.name] = (str(value), spec.env)
    given["output_dir"] = (args.images, "--images")
    for spec in options():
        if spec.nightly and (value := getattr(args, spec.name, None)) not in (None, ""):
            given[spec.name] = (value, "--" + spec.name.replace("_", "-"))
    tokens = split_pytest_args(args.pytest_args)
    for index, token in enumerate(tokens):
        flag, equals, value = token.partition("=")
        name = option_name(flag)
        if name is None:
            continue
        if by_name[name].flag:
            value = "true"
        elif not equals:
            value = tokens[index + 1] if index + 1 < len(tokens) else ""
        given[name] = (value, flag)
    return given


def check_sweep_options(args: argparse.Namespace) -> None:
    """The sweep's options parsed as the sweep will parse them, and ``--baseline`` looked up, so a bad one
    costs a one-line usage error (exit 2) instead of a sweep. Problems with options this job does not
    set are left to the sweep, which also reads the ini file."""
    given = given_options(args)
    try:
        build_config({name: value for name, (value, _) in given.items()})
    except ConfigError as exc:
        name = option_name(exc.option)
        if name in given:
            raise exc.from_source(given[name][1]) from None
    except Exception as exc:  # the check itself could not run (torch unimportable): the sweep will say so, alerted
        print(f"fbcache nightly: warning: sweep options not checked: {type(exc).__name__}: {exc}", file=sys.stderr)
    if args.baseline != "segment":
        storage = storage_path(args.storage)
        try:
            check_baseline_spec(args.baseline)
            find_run(load_runs(storage)[0] if storage.is_dir() else [], args.baseline)
        except SelectionError as exc:
            raise ConfigError("--baseline", args.baseline, "segment, or the name or number of a run in the history",
                              str(exc)) from None


def sweep(settings: NightlySettings) -> tuple[int, str]:
    """Run the benchmark suite, passing its output on as it comes, unfinished lines included (pytest's
    line of test results, the sweep's progress lines; a GPU sweep takes long); return pytest's exit
    code and the whole output, whose tail goes into a broken-sweep alert."""
    command = [sys.executable, "-m", "pytest", settings.benchmarks, "-p", "no:cacheprovider",
               "--benchmark-autosave", "--benchmark-save-data", f"--benchmark-storage=file://{settings.storage}",
               f"--fbcache-output-dir={settings.images_dir}", *settings.pytest_args]
    print("fbcache nightly: " + shlex.join(command), flush=True)
    chunks: list[str] = []
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env) as child:
        assert child.stdout is not None
        # os.read returns whatever the pipe holds; reading by lines would hold back a line until it ends
        while data := os.read(child.stdout.fileno(), 65536):
            text = decoder.decode(data)
            sys.stdout.write(text)
            sys.stdout.flush()
            chunks.append(text)
        chunks.append(decoder.decode(b"", final=True))
    return child.returncode, "".join(chunks).replace("\r\n", "\n")


def history_with(settings: NightlySettings, new_run: Path) -> tuple[list[Run], Run]:
    """The storage's well-formed runs (malformed files named once and skipped) and the run just saved."""
    runs, skipped = load_runs(settings.storage)
    for message in skipped:
        print(f"fbcache nightly: warning: {message}", file=sys.stderr)
    latest = next((run for run in runs if run.path == new_run), None)
    if latest is None:
        raise BrokenSweep(f"the saved run {new_run} cannot be read back")
    return runs, latest


def write_report(settings: NightlySettings, runs: list[Run], latest: Run) -> None:
    from fbcache.render.report import build_report

    try:
        written = build_report(runs, latest, settings.report_dir, settings.images_dir)
        print(f"fbcache nightly: report, {len(written)} files in {settings.report_dir}")
    except (MissingDependencyError, OSError) as exc:  # a report that cannot be written never hides the verdict
        print(f"fbcache nightly: report skipped: {exc}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Alert destinations are checked first: a bad one is a usage error and nothing is sent. Then the
    sweep's options: a bad one is a usage error too, announced through the sinks, with no sweep run."""
    sinks = configured_sinks(args)
    try:
        check_sweep_options(args)
        settings = NightlySettings.from_args(args, sinks)
    except ConfigError as exc:
        problem = " ".join(str(exc).split())
        print(f"fbcache nightly: error: {problem}", file=sys.stderr, flush=True)
        return alert(Finding(not_started=problem, context=args.context), sinks)
    return run_nightly(settings)


def run_nightly(settings: NightlySettings) -> int:
    settings.storage.mkdir(parents=True, exist_ok=True)
    before = set(run_files(settings.storage))
    code, output = sweep(settings)
    new_runs = [p for p in run_files(settings.storage) if p not in before]
    if code in (4, 5):  # usage error, or nothing collected: the job itself is misconfigured, not the sweep
        message = next((line.strip() for line in output.splitlines() if line.startswith("ERROR:")), "")
        problem = f"pytest exit code {code} (usage error or no benchmarks collected) {message}".strip()
        print(f"fbcache nightly: error: the sweep did not start: {problem}", file=sys.stderr)
        finding = Finding(not_started=problem, context=settings.context)
    elif not new_runs:
        tail = "\n".join(output.strip().splitlines()[-LOG_TAIL_LINES:])
        reason = next((line.strip() for line in reversed(output.splitlines()) if "NOT saved" in line),
                      f"pytest exit code {code}, no run saved")
        finding = Finding(broken=reason, context=settings.context)
        print(f"fbcache nightly: sweep broken; last lines:\n{tail}", file=sys.stderr)
    else:
        try:
            runs, latest = history_with(settings, new_runs[-1])
            result = judge_run(runs, latest, settings.storage, settings.baseline, settings.compare)
            print(markdown(result), flush=True)
            write_report(settings, runs, latest)
            finding = Finding(result=result, context=settings.context)
        except BrokenSweep as exc:
            finding = Finding(broken=str(exc), context=settings.context)
    return alert(finding, settings.sinks)  # a nightly that pytest refused to start is still announced
