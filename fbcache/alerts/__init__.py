"""Where a record becomes an alert: the alert-sink registry, one file per sink, one line each in ``BUILTIN``.

Sinks: the GitHub step summary (always), a webhook and a GitHub issue (on regression or broken
sweep). :func:`add_sink_options` gives a verb every sink's options; :func:`alert` sends a finding
through every configured sink and returns the finding's exit code, whatever the sinks did.
"""

from __future__ import annotations

import argparse
import sys

from fbcache.alerts.base import AlertSink, Outcome, Send
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


def configured_sinks(args: argparse.Namespace) -> list[Send]:
    return [send for sink in all_sinks() if (send := sink.configure(args)) is not None]


def alert(finding: Finding, sinks: list[Send]) -> int:
    """Print the finding, send it through every sink, and return its exit code."""
    print(finding.markdown(), flush=True)
    for send in sinks:
        outcome = send(finding)
        print(outcome.message, file=sys.stdout if outcome.ok else sys.stderr, flush=True)
    return finding.exit_code


__all__ = ["AlertSink", "Finding", "Outcome", "Send", "add_sink_options", "alert", "all_sinks", "configured_sinks", "register",
           "unregister"]
