"""A GitHub issue via ``gh issue create`` on regression or broken sweep; printed when gh is unavailable."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections.abc import Callable

from fbcache.alerts import AlertSink, Finding, Outcome, Send


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


def _configure(args: argparse.Namespace) -> Send | None:
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


SINK = AlertSink(
    name="github-issue",
    add_options=_add_options,
    configure=_configure,
)
