"""Where a record becomes an alert: the finding, the sink type, the alert-sink registry (one file per
sink, one line each in ``BUILTIN``) and the alert loop.

Sinks: the GitHub step summary (always), a webhook and a GitHub issue (on regression or broken
sweep). ``fbcache alert`` and ``fbcache nightly`` both add every sink's options
(:func:`add_sink_options`) and send through every configured sink, from this one definition.
:func:`configured_sinks` checks them: a sink's ``configure`` raises ConfigError on a destination it
could never reach, so both verbs refuse it before anything is sent or swept. :func:`alert` sends a
finding through every configured sink and returns the finding's exit code, whatever the sinks did,
exceptions included: a sink that fails at send time says so in one line and never changes the verdict.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fbcache import Registry
from fbcache.errors import EXIT_BROKEN, EXIT_CLEAN, EXIT_REGRESSION, EXIT_USAGE
from fbcache.verdicts import CompareResult, markdown


@dataclass(frozen=True)
class Finding:
    """What is being alerted: a comparison, a sweep that broke before producing one, or a sweep refused
    before it ran (a bad option, missing weights, nothing collected): a usage error, exit 2."""

    result: CompareResult | None = None
    broken: str | None = None
    context: str = ""
    not_started: str | None = None

    @property
    def exit_code(self) -> int:
        if self.not_started is not None:
            return EXIT_USAGE
        if self.broken is not None:
            return EXIT_BROKEN
        return EXIT_REGRESSION if self.result is not None and self.result.regression else EXIT_CLEAN

    @property
    def needs_attention(self) -> bool:
        return self.exit_code != EXIT_CLEAN

    def headline(self) -> str:
        where = f" ({self.context})" if self.context else ""
        if self.not_started is not None:
            return f"fbcache nightly did NOT START{where}: {self.not_started}"
        if self.broken is not None:
            return f"fbcache nightly sweep BROKEN{where}: {self.broken}"
        assert self.result is not None
        if not self.result.regression:
            return f"fbcache: no regression{where}, {self.result.latest} against {self.result.baseline}"
        parts = [f"{label} {v.metric} {v.status}" for label, v in self.result.alerts]
        return f"fbcache REGRESSION{where}: " + "; ".join(parts[:6]) + (" ..." if len(parts) > 6 else "")

    def markdown(self) -> str:
        if self.not_started is not None:
            return (f"## {self.headline()}\n\nThe sweep was refused before it ran (a usage error in the job's "
                    "options), so nothing was measured, compared or saved. Fix the job's configuration.\n")
        if self.broken is not None:
            return (f"## {self.headline()}\n\nThe sweep did not produce a valid run, so nothing was compared "
                    "and nothing was added to the history. This is a broken job, not a performance regression.\n")
        assert self.result is not None
        return f"## {self.headline()}\n\n{markdown(self.result)}\n"


@dataclass(frozen=True)
class Outcome:
    """What a sink did, in one line for the log; a failure is printed to stderr."""

    ok: bool
    message: str


#: a configured sink: sends the finding and says what happened
Send = Callable[[Finding], Outcome]


@dataclass(frozen=True)
class ConfiguredSink:
    """A sink whose options were checked: its name (for the log line when it fails) and its sender."""

    name: str
    send: Send


@dataclass(frozen=True)
class AlertSink:
    name: str
    #: adds this sink's options to a verb's parser
    add_options: Callable[[argparse.ArgumentParser], None]
    #: the configured sender, or None when the options leave this sink off; raises ConfigError
    #: (naming the option or environment variable and what it accepts) on an unusable destination
    configure: Callable[[argparse.Namespace], Send | None]


BUILTIN = (
    "fbcache.alerts.github",
    "fbcache.alerts.webhook",
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
