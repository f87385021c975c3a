"""Where a record becomes an alert: the alert-sink registry, one file per sink, one line each in ``BUILTIN``.

Sinks: the GitHub step summary (always), a webhook and a GitHub issue (on regression or broken
sweep). :func:`add_sink_options` gives a verb every sink's options; :func:`configured_sinks` checks
them (ConfigError before anything is sent or swept); :func:`alert` sends a finding through every
configured sink and returns the finding's exit code, whatever the sinks did, exceptions included.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fbcache.alerts.base import AlertSink, ConfiguredSink, Outcome, Send
from fbcache.alerts.finding import Finding
from fbcache.registry import Registry

BUILTIN = (
    "fbcache.alerts.step_summary",
    "fbcache.alerts.webhook",
    "fbcache.alerts.github_issue",
)

_REGISTRY: Registry[AlertSink] = Registry(BUILTIN, "SINK")
register = _REGISTRY.register
unregister = _REGISTRY.unregister
all_sinks = _REGISTRY.all


def add_sink_options(parser: argparse.ArgumentParser) -> None:
    for sink in all_sinks():
        sink.add_options(parser)


def configured_sinks(args: argparse.Namespace) -> list[ConfiguredSink]:
    """Every sink the options turn on, each checked: ConfigError on the first unusable destination."""
    return [ConfiguredSink(sink.name, send) for sink in all_sinks() if (send := sink.configure(args)) is not None]


#: longest failure line a sink may print: an exception's text can be a whole HTTP body
_MAX_LINE = 300


def one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_LINE else line[:_MAX_LINE - 3] + "..."


def send_guarded(finding: Finding, sink: ConfiguredSink) -> Outcome:
    """One sink's outcome; an exception it raises becomes a failed outcome, so no sink can stop the alert."""
    try:
        return sink.send(finding)
    except Exception as exc:  # a failing sink must never hide the verdict nor silence the sinks after it
        return Outcome(False, f"{sink.name}: FAILED: {type(exc).__name__}: {exc}")


def alert(finding: Finding, sinks: Sequence[ConfiguredSink]) -> int:
    """Print the finding, send it through every sink, and return its exit code, whatever the sinks did."""
    print(finding.markdown(), flush=True)
    for sink in sinks:
        outcome = send_guarded(finding, sink)
        print(one_line(outcome.message), file=sys.stdout if outcome.ok else sys.stderr, flush=True)
    return finding.exit_code


__all__ = ["AlertSink", "ConfiguredSink", "Finding", "Outcome", "Send", "add_sink_options", "alert", "all_sinks",
           "configured_sinks", "register", "unregister"]
