"""The GitHub step summary: the finding's Markdown appended to ``$GITHUB_STEP_SUMMARY``, always."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

from fbcache.alerts import AlertSink, Finding, Outcome, Send
from fbcache.errors import ConfigError

ENV = "GITHUB_STEP_SUMMARY"


def write_step_summary(finding: Finding, environ: dict[str, str] | None = None) -> Path | None:
    """Append the Markdown to $GITHUB_STEP_SUMMARY; None when not running under GitHub Actions."""
    target = (environ if environ is not None else os.environ).get(ENV)
    if not target:
        return None
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(finding.markdown() + "\n")
    return Path(target)


def check_target(environ: Mapping[str, str] | None = None) -> None:
    """$GITHUB_STEP_SUMMARY, when set, must be a file we can append to: its directory exists."""
    raw = (environ if environ is not None else os.environ).get(ENV)
    if not raw:
        return
    accepted = "a file path in an existing directory (GitHub Actions sets it), or unset"
    path = Path(raw)
    if path.is_dir():
        raise ConfigError(ENV, raw, accepted, "is a directory")
    if not path.parent.is_dir():
        raise ConfigError(ENV, raw, accepted, f"directory {path.parent} does not exist")


def _configure(args: argparse.Namespace) -> Send:
    check_target()

    def send(finding: Finding) -> Outcome:
        try:
            target = write_step_summary(finding)
        except OSError as exc:
            return Outcome(False, f"step summary: FAILED: {exc}")
        return Outcome(True, f"step summary: appended to {target}" if target is not None
                       else "step summary: not under GitHub Actions")

    return send


SINK = AlertSink(name="step-summary", add_options=lambda parser: None, configure=_configure)
