"""Where a record becomes an alert: a compare result (or a broken sweep) turned into messages.

Three channels, each independent of the others:

- the GitHub step summary (Markdown appended to ``$GITHUB_STEP_SUMMARY``), always;
- a webhook POST with a Slack-compatible payload (a ``text`` field), with a timeout and bounded
  retries, on regression or broken sweep;
- a GitHub issue via ``gh issue create`` when ``gh`` is installed and authorised, otherwise the
  title and body are printed for a human to file.

A channel that fails is reported and never changes the verdict: the exit code still says regression.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fbcache.errors import EXIT_BROKEN, EXIT_CLEAN, EXIT_REGRESSION
from fbcache.verdicts.compare import CompareResult, markdown


@dataclass(frozen=True)
class Finding:
    """What is being alerted: a comparison, or a sweep that broke before producing one."""

    result: CompareResult | None = None
    broken: str | None = None
    context: str = ""

    @property
    def exit_code(self) -> int:
        if self.broken is not None:
            return EXIT_BROKEN
        return EXIT_REGRESSION if self.result is not None and self.result.regression else EXIT_CLEAN

    @property
    def needs_attention(self) -> bool:
        return self.exit_code != EXIT_CLEAN

    def headline(self) -> str:
        where = f" ({self.context})" if self.context else ""
        if self.broken is not None:
            return f"fbcache nightly sweep BROKEN{where}: {self.broken}"
        assert self.result is not None
        if not self.result.regression:
            return f"fbcache: no regression{where}, {self.result.latest} against {self.result.baseline}"
        parts = [f"{label} {v.metric} {v.status}" for label, v in self.result.alerts]
        return f"fbcache REGRESSION{where}: " + "; ".join(parts[:6]) + (" ..." if len(parts) > 6 else "")

    def markdown(self) -> str:
        if self.broken is not None:
            return (f"## {self.headline()}\n\nThe sweep did not produce a valid run, so nothing was compared "
                    "and nothing was added to the history. This is a broken job, not a performance regression.\n")
        assert self.result is not None
        return f"## {self.headline()}\n\n{markdown(self.result)}\n"


# ------------------------------------------------------------------------------ step summary


def write_step_summary(finding: Finding, environ: dict[str, str] | None = None) -> Path | None:
    """Append the Markdown to $GITHUB_STEP_SUMMARY; None when not running under GitHub Actions."""
    target = (environ if environ is not None else os.environ).get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(finding.markdown() + "\n")
    return Path(target)


# ----------------------------------------------------------------------------------- webhook


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    timeout_s: float = 10.0
    attempts: int = 3
    backoff_s: float = 1.0


@dataclass(frozen=True)
class Delivery:
    ok: bool
    attempts: int
    error: str = ""


def slack_payload(finding: Finding) -> dict:
    """Slack (and most chat webhooks) read ``text``; the structured verdicts ride along under ``fbcache``."""
    payload: dict = {"text": finding.headline()}
    if finding.result is not None:
        payload["fbcache"] = json.loads(finding.result.to_json())
    if finding.broken is not None:
        payload["fbcache"] = {"broken": finding.broken}
    return payload


def post_webhook(payload: dict, settings: WebhookSettings, sleep: Callable[[float], None] = time.sleep) -> Delivery:
    """POST JSON; retry on timeouts, connection errors, 429 and 5xx, at most ``attempts`` times."""
    body = json.dumps(payload).encode()
    error = ""
    for attempt in range(1, settings.attempts + 1):
        request = urllib.request.Request(settings.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=settings.timeout_s) as response:
                if 200 <= response.status < 300:
                    return Delivery(True, attempt)
                error = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                return Delivery(False, attempt, error)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if attempt < settings.attempts:
            sleep(settings.backoff_s * 2 ** (attempt - 1))
    return Delivery(False, settings.attempts, error)


# ------------------------------------------------------------------------------------- issue


def issue_text(finding: Finding) -> tuple[str, str]:
    title = finding.headline()
    if len(title) > 120:
        title = title[:117] + "..."
    body = finding.markdown() + "\n_Filed by `fbcache alert`. See README, \"Reading a regression alert\"._\n"
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


# ------------------------------------------------------------------------------------- alert


def alert(finding: Finding, webhook: WebhookSettings | None, issue: bool, post_when_clean: bool = False) -> int:
    """Send the finding through every configured channel; return the exit code of the finding."""
    summary = write_step_summary(finding)
    print(finding.markdown(), flush=True)
    if summary is not None:
        print(f"step summary: appended to {summary}")
    if webhook is not None and (finding.needs_attention or post_when_clean):
        delivery = post_webhook(slack_payload(finding), webhook)
        state = "delivered" if delivery.ok else f"FAILED after {delivery.attempts} attempt(s): {delivery.error}"
        print(f"webhook: {state}", file=sys.stderr if not delivery.ok else sys.stdout)
    if issue and finding.needs_attention:
        print(file_issue(finding))
    return finding.exit_code
