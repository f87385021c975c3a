"""The GitHub step summary: the finding's Markdown appended to ``$GITHUB_STEP_SUMMARY``, always."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fbcache.alerts.base import AlertSink, Outcome, Send
from fbcache.alerts.finding import Finding


def write_step_summary(finding: Finding, environ: dict[str, str] | None = None) -> Path | None:
    """Append the Markdown to $GITHUB_STEP_SUMMARY; None when not running under GitHub Actions."""
    target = (environ if environ is not None else os.environ).get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(finding.markdown() + "\n")
    return Path(target)


def _configure(args: argparse.Namespace) -> Send:
    def send(finding: Finding) -> Outcome:
        try:
            target = write_step_summary(finding)
        except OSError as exc:
            return Outcome(False, f"step summary: FAILED: {exc}")
        return Outcome(True, f"step summary: appended to {target}" if target is not None
                       else "step summary: not under GitHub Actions")

    return send


SINK = AlertSink(name="step-summary", add_options=lambda parser: None, configure=_configure)
