"""The ``fbcache`` command: one module per verb, all of them listed in :data:`VERBS`.

A verb module ``fbcache/cli/<verb>.py`` (the verb is the module's name) defines:

- ``HELP``: one line, shown by ``fbcache --help`` and, unless the module defines ``DESCRIPTION`` (or
  ``describe()``, for a text built from the registries when the parser is built), by ``fbcache <verb> --help``;
- ``add_arguments(parser)``: its options; those several verbs share (storage, compare settings,
  output files) come from :mod:`fbcache.cli`, the alert sinks' from :mod:`fbcache.alerts`;
- ``run(args) -> int``: the exit code (:mod:`fbcache.errors`). Errors it raises become exit codes
  and one line on stderr in :func:`fbcache.cli.main`, and nowhere else.

A new verb is one new file plus one line here. Building the parser imports every verb module, so
none of them imports torch (tests/test_layers.py).


**Shared by verbs.** What several verbs share: the storage option and reading it, picking runs, checked output files,
the compare options and the judging they configure.

Both ``fbcache compare`` and ``fbcache nightly`` read their compare settings and judge from here
(:func:`judge_run`), so the two verbs cannot drift apart and neither imports the other.

**main** dispatches to the verb and maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

from fbcache.errors import (
    EXIT_BROKEN,
    EXIT_CLEAN,
    EXIT_REGRESSION,
    EXIT_UNMET,
    EXIT_USAGE,
    DataError,
    FBCacheError,
    SelectionError,
)
from fbcache.history.storage import Acceptance, Run, find_run, load_acceptances, load_runs, replace_file
from fbcache.metrics import ImageMetric, all_metrics, amounts
from fbcache.verdicts import CompareResult, CompareSettings
from fbcache.verdicts.judge import judge_latest

#: ``fbcache --help``'s text above the verbs
DESCRIPTION = "fbcache: verbs over pytest-benchmark's storage (``.benchmarks`` by default, or ``--storage``)."

#: every verb, in the order ``fbcache --help`` lists them
VERBS = (
    "fbcache.cli.history",
    "fbcache.cli.compare",
    "fbcache.cli.accept",
    "fbcache.cli.alert",
    "fbcache.cli.report",
    "fbcache.cli.calibrate",
    "fbcache.cli.xreport",
    "fbcache.cli.merge",
    "fbcache.cli.nightly",
    "fbcache.cli.agree",
    "fbcache.cli.tune",
)


DEFAULT_STORAGE = ".benchmarks"


def plain(text: str) -> str:
    """Docstring markup (``code``, `code`, :mod:`x`) as the plain text a terminal shows."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return re.sub(r"``([^`]+)``|`([^`]+)`", lambda m: m.group(1) or m.group(2), text)


class PlainHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` in plain text: descriptions keep their layout (they are docstrings), markup is dropped."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return super()._fill_text(plain(text), width, indent)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = super()._get_help_string(action)
        return None if help_text is None else plain(help_text)


def add_storage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", default=DEFAULT_STORAGE, help="pytest-benchmark storage (default .benchmarks)")


def storage_path(raw: str) -> Path:
    return Path(raw.removeprefix("file://"))


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
    """Every file a verb writes on request, whole or not at all: a full disk leaves no partial file
    (nor an earlier one half-overwritten), only a one-line error naming the option and the file (exit 2)."""
    try:
        replace_file(path, text.encode("utf-8"))
    except OSError as exc:
        raise DataError(f"{option} {path}: not written: {exc.strerror or exc}") from None


def compare_settings(args: argparse.Namespace) -> CompareSettings:
    return CompareSettings(alpha=args.alpha, min_effect=args.min_effect, max_mde=args.max_mde, history=args.history,
                           min_history=args.min_history,
                           tolerances=metric_amounts(args, "tolerance"),
                           judge_cpu_timing=args.judge_cpu_timing)


def add_compare_options(parser: argparse.ArgumentParser) -> None:
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
    add_metric_amounts(parser, "tolerance", "the largest move of an image metric the wrong way that is not a "
                       "regression", lambda metric: metric.tolerance)
    parser.add_argument("--judge-cpu-timing", action="store_true",
                        help="alert on time/speedup of CPU runs too (default: advisory, CPU timing is noisy)")


def add_metric_amounts(parser: argparse.ArgumentParser, option: str, help_text: str,
                       default: Callable[[ImageMetric], float | str]) -> None:
    """``--OPTION METRIC=X`` (repeatable, or comma-separated), and per image metric ``--METRIC-OPTION X``;
    ``default(metric)``: the metric's own, as its help shows it."""
    shown = [(m.name, default(m)) for m in all_metrics()]
    defaults = ", ".join(f"{name} {value if isinstance(value, str) else f'{value:g}'}" for name, value in shown)
    parser.add_argument(f"--{option}", action="append", default=[], metavar="METRIC=X",
                        help=f"{help_text} (repeatable, or comma-separated; default: each metric's own: {defaults})")
    for metric in all_metrics():
        parser.add_argument(f"--{metric.name}-{option}", dest=f"{option}_{metric.name}", metavar="X",
                            help=f"the same as --{option} {metric.name}=X")


def metric_amounts(args: argparse.Namespace, option: str, margins: bool = False) -> dict[str, float]:
    """What :func:`add_metric_amounts`' options say, per metric, checked (ConfigError naming the option);
    ``margins``: calibrate margins (relative where the metric's are)."""
    return amounts(f"--{option}", getattr(args, option, []),
                   {m.name: (f"--{m.name}-{option}", getattr(args, f"{option}_{m.name}", None)) for m in all_metrics()},
                   margins)


def read_acceptances(storage: Path) -> dict[str, Acceptance]:
    found, problems = load_acceptances(storage)
    for message in problems:
        print(f"fbcache: warning: {message}", file=sys.stderr)
    return found


def check_baseline_spec(spec: str) -> None:
    if spec == "previous" or spec.startswith("median:"):
        raise SelectionError(f"--baseline {spec} is gone: one night as a baseline made persistent regressions "
                             "vanish; use segment (default) or a run name/number where the baseline starts")


def baseline_start(runs: list[Run], latest: Run, spec: str) -> Run | None:
    """``segment`` (None: the whole history, segmented) or the run where the baseline history starts."""
    if spec == "segment":
        return None
    check_baseline_spec(spec)
    run = find_run(runs, spec)
    if run.fingerprint_id != latest.fingerprint_id:
        raise SelectionError(f"{run.name} has a different fingerprint than {latest.name}; runs are never mixed")
    if runs.index(run) >= runs.index(latest):
        raise SelectionError("the baseline must start at an earlier run than the latest one")
    return run


def judge_run(runs: list[Run], latest: Run, storage: Path, baseline_spec: str,
              settings: CompareSettings) -> CompareResult:
    """What compare and nightly both run: the latest run judged against its segmented history."""
    start = baseline_start(runs, latest, baseline_spec)
    return judge_latest(runs, latest, read_acceptances(storage), settings, start)


EXIT_CODES = (f"exit codes: {EXIT_CLEAN} clean, {EXIT_REGRESSION} regression and nothing else, "
              f"{EXIT_USAGE} usage or I/O error, {EXIT_BROKEN} broken sweep, {EXIT_UNMET} no threshold meets tune's floors")


def verb_modules() -> dict[str, ModuleType]:
    """Every verb of :data:`fbcache.cli.VERBS` by name (the module's own name), in its order."""
    return {name.rpartition(".")[2]: importlib.import_module(name) for name in VERBS}


def _description(module: ModuleType) -> str:
    """``describe()`` (built from the registries now), else ``DESCRIPTION``, else ``HELP``."""
    if hasattr(module, "describe"):
        return str(module.describe())
    return str(getattr(module, "DESCRIPTION", module.HELP))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fbcache", description=DESCRIPTION, epilog=EXIT_CODES,
                                     formatter_class=PlainHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    for name, module in verb_modules().items():
        sub = verbs.add_parser(name, help=module.HELP, description=_description(module), formatter_class=PlainHelpFormatter)
        module.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes (fbcache.errors): 0 clean, 1 regression and nothing else, 2 usage or I/O error, 3 broken sweep,
    4 ``tune`` found no threshold that keeps its floors.

    The one place where an error becomes an exit code: every verb raises, none prints its own error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on bad arguments
    try:
        return verb_modules()[args.verb].run(args)
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
