"""``fbcache alert RESULT.json``: a compare result (or a broken sweep) to every configured sink.

The exit code is the result's: 0 clean, 1 regression, 3 broken sweep; 2 when a sink is misconfigured
(checked before anything is sent) or the result cannot be read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fbcache.alerts import Finding, add_sink_options, alert, all_sinks, configured_sinks
from fbcache.cli import add_storage_option
from fbcache.errors import DataError
from fbcache.verdicts import CompareResult

HELP = "send a compare result (or a broken sweep) to the step summary, a webhook, an issue"


def describe() -> str:
    """The sinks registered when the parser is built, a test's or a plugin's included."""
    return f"send a compare result (or a broken sweep) through the alert sinks its options turn on " \
           f"({', '.join(sink.name for sink in all_sinks())})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_storage_option(parser)  # unused, accepted like every storage verb's
    parser.add_argument("result", nargs="?", help="JSON written by `fbcache compare --json`")
    parser.add_argument("--broken", help="the sweep broke: say why (exit code 3, not a regression)")
    parser.add_argument("--context", default="", help="where this ran, e.g. the workflow run URL")
    add_sink_options(parser)


def run(args: argparse.Namespace) -> int:
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
