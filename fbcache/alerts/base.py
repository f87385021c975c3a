"""What an alert sink is: its own CLI options, and how it sends a finding once configured.

``fbcache alert`` and ``fbcache nightly`` both add every sink's options and send through every
configured sink, from this one definition. ``configure`` checks the sink's options and raises
ConfigError on a destination it could never reach, so both verbs refuse it before sending or
sweeping. A sink that fails at send time says so in one line and never changes the verdict: the
exit code still says regression (:func:`fbcache.alerts.alert` guards every send).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from fbcache.alerts.finding import Finding


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
