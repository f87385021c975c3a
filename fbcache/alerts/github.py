"""The GitHub sinks: the step summary (always) and an issue via ``gh issue create`` (on regression or broken sweep).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
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


def _configure_step_summary(args: argparse.Namespace) -> Send:
    check_target()

    def send(finding: Finding) -> Outcome:
        try:
            target = write_step_summary(finding)
        except OSError as exc:
            return Outcome(False, f"step summary: FAILED: {exc}")
        return Outcome(True, f"step summary: appended to {target}" if target is not None
                       else "step summary: not under GitHub Actions")

    return send


STEP_SUMMARY = AlertSink(name="step-summary", add_options=lambda parser: None, configure=_configure_step_summary)


def issue_text(finding: Finding) -> tuple[str, str]:
    title = finding.headline()
    if len(title) > 120:
        title = title[:117] + "..."
    body = finding.markdown() + "\n_Filed by `fbcache alert`. See docs/verdicts.md, \"Reading verdicts\"._\n"
    return title, body


def gh_ready(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> bool:
    if shutil.which("gh") is None:
        return False
    return run(["gh", "auth", "status"], capture_output=True, text=True).returncode == 0


def file_issue(finding: Finding, run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
               ready: Callable[[], bool] | None = None) -> str:
    """Create the issue with gh when possible; otherwise print it. Returns what happened, for the log."""
    title, body = issue_text(finding)
    if (ready or (lambda: gh_ready(run)))():
        done = run(["gh", "issue", "create", "--title", title, "--body-file", "-"], input=body,
                   capture_output=True, text=True)
        if done.returncode == 0:
            return f"issue created: {done.stdout.strip()}"
        return f"gh issue create failed ({done.returncode}): {done.stderr.strip()[:300]}"
    print(f"--- issue title ---\n{title}\n--- issue body ---\n{body}", flush=True)
    return "gh not available or not authorised: issue printed above"


def _configure_issue(args: argparse.Namespace) -> Send | None:
    if not getattr(args, "issue", False):
        return None
    def send(finding: Finding) -> Outcome:
        if not finding.needs_attention:
            return Outcome(True, "issue: clean, none filed")
        message = file_issue(finding)
        return Outcome(not message.startswith("gh issue create failed"), message)

    return send


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--issue", action="store_true", help="file a GitHub issue with gh on regression")


ISSUE = AlertSink(
    name="github-issue",
    add_options=_add_options,
    configure=_configure_issue,
)

SINK = (STEP_SUMMARY, ISSUE)
