"""A webhook POST with a Slack-compatible payload (``text``), a timeout and bounded retries.

Sent on regression or broken sweep (``--always``: every time).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from fbcache.alerts.base import AlertSink, Outcome, Send
from fbcache.alerts.finding import Finding


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


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--webhook", help="URL to POST to on regression (default: $FBCACHE_WEBHOOK_URL)")
    parser.add_argument("--webhook-timeout", type=float, default=10.0, help="seconds per attempt (10)")
    parser.add_argument("--webhook-attempts", type=int, default=3, help="attempts in all (3)")
    parser.add_argument("--always", action="store_true", help="post to the webhook even when clean")


def settings_from(args: argparse.Namespace) -> WebhookSettings | None:
    url = args.webhook or os.environ.get("FBCACHE_WEBHOOK_URL")
    return WebhookSettings(url, timeout_s=args.webhook_timeout, attempts=args.webhook_attempts) if url else None


def send_webhook(finding: Finding, settings: WebhookSettings, post_when_clean: bool = False) -> Outcome:
    if not (finding.needs_attention or post_when_clean):
        return Outcome(True, "webhook: clean, not posted")
    delivery = post_webhook(slack_payload(finding), settings)
    return Outcome(delivery.ok, "webhook: " + ("delivered" if delivery.ok else
                                               f"FAILED after {delivery.attempts} attempt(s): {delivery.error}"))


def _configure(args: argparse.Namespace) -> Send | None:
    settings = settings_from(args)
    if settings is None:
        return None
    always = bool(getattr(args, "always", False))
    return lambda finding: send_webhook(finding, settings, always)


SINK = AlertSink(name="webhook", add_options=_add_options, configure=_configure)
