"""A webhook POST with a Slack-compatible payload (``text``), a timeout and bounded retries.

Sent on regression or broken sweep (``--always``: every time).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from fbcache.alerts import AlertSink, Finding, Outcome, Send
from fbcache.errors import ConfigError

ENV_URL = "FBCACHE_WEBHOOK_URL"
URL_ACCEPTED = "an http:// or https:// URL with a host, e.g. https://HOST/PATH"
#: what http.client refuses in a URL (control characters and spaces)
_UNSENDABLE = re.compile(r"[\x00-\x20\x7f]")


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
    if finding.not_started is not None:
        payload["fbcache"] = {"not_started": finding.not_started}
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
    parser.add_argument("--webhook", help=f"http(s) URL to POST to on regression (default: ${ENV_URL})")
    parser.add_argument("--webhook-timeout", type=float, default=10.0, help="seconds per attempt (10)")
    parser.add_argument("--webhook-attempts", type=int, default=3, help="attempts in all (3)")
    parser.add_argument("--always", action="store_true", help="post to the webhook even when clean")


def shown(url: str) -> str:
    """The URL for an error message without its secret parts: a webhook's path or user info is its token."""
    head, slashes, rest = url.partition("//")
    if not slashes:
        return url if len(url) <= 12 else url[:12] + "..."
    authority, cut, _ = (re.split(r"([/?#])", rest, maxsplit=1) + ["", ""])[:3]
    return f"{head}//{authority.rpartition('@')[2]}" + ("/..." if cut else "")


def check_url(option: str, url: str) -> str:
    """``url`` if a POST could reach it (http or https, a host, a valid port); else ConfigError naming ``option``."""
    value = shown(url)
    if _UNSENDABLE.search(url):
        raise ConfigError(option, value, URL_ACCEPTED, "contains spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (parsing the port is the check: "host:abc" raises here)
    except ValueError as exc:
        raise ConfigError(option, value, URL_ACCEPTED, f"cannot be parsed: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        why = f"scheme {parts.scheme!r} is not http or https" if "://" in url else "no http:// or https:// in front"
        raise ConfigError(option, value, URL_ACCEPTED, why)
    if not parts.hostname:
        raise ConfigError(option, value, URL_ACCEPTED, "no host")
    return url


def settings_from(args: argparse.Namespace) -> WebhookSettings | None:
    """The checked settings, or None without a URL; ConfigError names the option or env var the value came from."""
    from_env = not args.webhook
    url = args.webhook or os.environ.get(ENV_URL)
    if not url:
        return None
    try:
        check_url("--webhook", url)
    except ConfigError as exc:
        raise exc.from_source(ENV_URL) if from_env else exc from None
    timeout = args.webhook_timeout
    if not (math.isfinite(timeout) and timeout > 0):
        raise ConfigError("--webhook-timeout", timeout, "seconds, a number > 0")
    if args.webhook_attempts < 1:
        raise ConfigError("--webhook-attempts", args.webhook_attempts, "a whole number >= 1")
    return WebhookSettings(url, timeout_s=timeout, attempts=args.webhook_attempts)


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
