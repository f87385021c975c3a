"""Alerts: step summary, a webhook against real HTTP servers on 127.0.0.1, and gh issues."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from webhook_server import silent_server, webhook_server

from conftest import ROOT
from fbcache.alerts import AlertSink, ConfiguredSink, Finding, Outcome, alert, register, unregister
from fbcache.alerts.github import file_issue, write_step_summary
from fbcache.alerts.webhook import WebhookSettings, post_webhook, send_webhook, slack_payload
from fbcache.cli import main as fbcache_main
from fbcache.errors import EXIT_BROKEN, EXIT_CLEAN, EXIT_REGRESSION, EXIT_USAGE
from fbcache.verdicts import CompareResult, CompareSettings, ThresholdResult, Verdict


def result(regression: bool) -> CompareResult:
    status = "regression" if regression else "ok"
    rows = [ThresholdResult("0.1", [Verdict("ssim", status, 0.90, 0.95, "-0.0500, beyond -0.01"),
                                    Verdict("hits", "ok", 18, 18, "identical per step")])]
    return CompareResult("0007_new", "previous run 0006_old", {"model": "tiny"}, CompareSettings(), rows)


def no_sleep(seconds: float) -> None:
    pass


def test_webhook_delivers_a_slack_compatible_payload():
    with webhook_server(200) as (url, received):
        delivery = post_webhook(slack_payload(Finding(result=result(True))), WebhookSettings(url))
    assert delivery.ok and delivery.attempts == 1
    [body] = received.bodies
    assert body["text"].startswith("fbcache REGRESSION") and "0.1 ssim regression" in body["text"]
    assert body["fbcache"]["regression"] is True


def test_webhook_500_is_retried_a_bounded_number_of_times():
    with webhook_server(500) as (url, received):
        delivery = post_webhook({"text": "x"}, WebhookSettings(url, attempts=3), sleep=no_sleep)
    assert not delivery.ok and delivery.attempts == 3 and received.attempts == 3
    assert delivery.error == "HTTP 500"


def test_webhook_400_is_not_retried():
    with webhook_server(400) as (url, received):
        delivery = post_webhook({"text": "x"}, WebhookSettings(url, attempts=3), sleep=no_sleep)
    assert not delivery.ok and received.attempts == 1


def test_webhook_that_never_answers_times_out():
    with silent_server() as (url, received):
        started = time.monotonic()
        delivery = post_webhook({"text": "x"}, WebhookSettings(url, timeout_s=0.5, attempts=2), sleep=no_sleep)
        elapsed = time.monotonic() - started
    assert not delivery.ok and delivery.attempts == 2
    assert "timed out" in delivery.error.lower() or "timeout" in delivery.error.lower()
    assert elapsed < 5, "bounded by attempts x timeout"


def test_failing_webhook_never_hides_the_regression(capsys):
    with webhook_server(500) as (url, _):
        settings = WebhookSettings(url, attempts=2, backoff_s=0)
        code = alert(Finding(result=result(True)), [ConfiguredSink("webhook", lambda f: send_webhook(f, settings))])
    assert code == EXIT_REGRESSION
    assert "webhook: FAILED after 2 attempt(s): HTTP 500" in capsys.readouterr().err


def test_clean_result_posts_nothing_and_exits_zero():
    with webhook_server(200) as (url, received):
        sinks = [ConfiguredSink("webhook", lambda finding: send_webhook(finding, WebhookSettings(url))),
                 ConfiguredSink("issue", lambda finding: Outcome(True, file_issue(finding) if finding.needs_attention
                                                                 else "clean"))]
        assert alert(Finding(result=result(False)), sinks) == EXIT_CLEAN
    assert received.attempts == 0


def test_broken_sweep_is_not_a_regression():
    finding = Finding(broken="2 benchmark(s) broke (NaN)")
    assert finding.exit_code == EXIT_BROKEN
    assert "BROKEN" in finding.headline() and "not a performance regression" in finding.markdown()


def test_step_summary_is_appended(tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    assert write_step_summary(Finding(result=result(True)), {"GITHUB_STEP_SUMMARY": str(summary)}) == summary
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "| threshold |" in text and "REGRESSION" in text
    assert write_step_summary(Finding(result=result(True)), {}) is None


def fake_gh(directory: Path, authorised: bool) -> Path:
    """A `gh` executable that records what it was asked to do."""
    script = directory / "gh"
    script.write_text(f"""#!/bin/sh
if [ "$1" = auth ]; then exit {0 if authorised else 1}; fi
echo "$@" > "{directory}/gh-args"
cat > "{directory}/gh-body"
echo https://github.invalid/issues/7
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_issue_is_created_with_gh_when_authorised(tmp_path, monkeypatch):
    fake_gh(tmp_path, authorised=True)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    outcome = file_issue(Finding(result=result(True)))
    assert outcome == "issue created: https://github.invalid/issues/7"
    assert (tmp_path / "gh-args").read_text().startswith("issue create --title fbcache REGRESSION")
    assert "| threshold |" in (tmp_path / "gh-body").read_text()


def test_issue_is_printed_without_an_authorised_gh(tmp_path, monkeypatch, capsys):
    fake_gh(tmp_path, authorised=False)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    outcome = file_issue(Finding(result=result(True)))
    assert "issue printed" in outcome and not (tmp_path / "gh-args").exists()
    assert "--- issue title ---\nfbcache REGRESSION" in capsys.readouterr().out


def test_alert_cli_end_to_end(tmp_path):
    saved = tmp_path / "result.json"
    saved.write_text(result(True).to_json())
    summary = tmp_path / "summary.md"
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary), "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    fake_gh(tmp_path, authorised=True)
    with webhook_server(500) as (url, received):
        done = subprocess.run([sys.executable, "-m", "fbcache", "alert", str(saved), "--webhook", url,
                               "--webhook-attempts", "2", "--issue"], cwd=ROOT, env=env, capture_output=True,
                              text=True)
    assert done.returncode == EXIT_REGRESSION, done.stderr
    assert received.attempts == 2 and "FAILED" in done.stderr
    assert "issue created" in done.stdout and "REGRESSION" in summary.read_text()
    bad = subprocess.run([sys.executable, "-m", "fbcache", "alert", str(tmp_path / "missing.json")], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "cannot read compare result" in bad.stderr


def test_result_json_round_trips():
    original = result(True)
    again = CompareResult.from_json(original.to_json())
    assert again.regression and again.rows[0].verdict("ssim").detail == "-0.0500, beyond -0.01"
    assert json.loads(original.to_json())["settings"]["alpha"] == CompareSettings().alpha


@pytest.mark.parametrize("status, alerting", [("regression", True), ("changed", True), ("suspect", False),
                                              ("not judged", False), ("improvement", False)])
def test_which_verdicts_alert(status, alerting):
    assert Verdict("time", status, 1.0, 1.0, "").alerting is alerting


# ------------------------------------------- destinations checked first; a failing sink never hides the verdict

URL_ACCEPTED = "accepted: an http:// or https:// URL with a host, e.g. https://HOST/PATH"


def fbcache_cli(capsys, *argv: str) -> tuple[int, list[str], str]:
    code = fbcache_main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err.splitlines(), captured.out


@pytest.fixture
def alert_env(tmp_path, monkeypatch) -> Path:
    """A saved regression, a step summary file, an authorised fake gh on PATH, no webhook in the environment."""
    (tmp_path / "result.json").write_text(result(True).to_json())
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    monkeypatch.delenv("FBCACHE_WEBHOOK_URL", raising=False)
    fake_gh(tmp_path, authorised=True)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def nothing_sent(directory: Path, out: str) -> bool:
    return out == "" and not (directory / "summary.md").exists() and not (directory / "gh-args").exists()


@pytest.mark.parametrize("source", ["option", "env"])
def test_unparseable_webhook_url_is_a_one_line_usage_error_before_any_sink_sends(alert_env, monkeypatch, capsys,
                                                                                 source):
    argv = ["alert", str(alert_env / "result.json"), "--issue"]
    if source == "option":
        argv += ["--webhook", "http://[::1"]
    else:
        monkeypatch.setenv("FBCACHE_WEBHOOK_URL", "http://[::1")
    code, err, out = fbcache_cli(capsys, *argv)
    named = "--webhook" if source == "option" else "FBCACHE_WEBHOOK_URL (for --webhook)"
    assert (code, err) == (EXIT_USAGE, [f"fbcache alert: error: {named}: invalid value 'http://[::1' "
                                        f"(cannot be parsed: Invalid IPv6 URL); {URL_ACCEPTED}"])
    assert nothing_sent(alert_env, out), "the step summary and the issue wait for a destination that works"


@pytest.mark.parametrize("template, why", [("ftp://127.0.0.1:{port}/hook", "scheme 'ftp' is not http or https"),
                                           ("127.0.0.1:{port}/hook", "no http:// or https:// in front"),
                                           ("localhost:{port}/hook", "no http:// or https:// in front")])
def test_webhook_url_that_is_not_http_is_refused_with_zero_attempts(alert_env, capsys, template, why):
    with silent_server() as (url, received):
        port = url.split(":")[2].split("/")[0]
        code, err, out = fbcache_cli(capsys, "alert", str(alert_env / "result.json"), "--webhook",
                                     template.format(port=port), "--webhook-timeout", "0.5")
    assert received.attempts == 0, "not one connection"
    assert code == EXIT_USAGE and len(err) == 1 and f"({why}); {URL_ACCEPTED}" in err[0], err
    assert err[0].startswith("fbcache alert: error: --webhook: invalid value ") and "/hook" not in err[0], \
        "the URL's path (a webhook's secret) is not printed"
    assert nothing_sent(alert_env, out)


@pytest.mark.parametrize("option, value, accepted", [("--webhook-attempts", "0", "a whole number >= 1"),
                                                     ("--webhook-timeout", "0", "seconds, a number > 0")])
def test_webhook_retry_settings_that_could_never_deliver_are_refused(alert_env, capsys, option, value, accepted):
    with webhook_server(200) as (url, received):
        code, err, out = fbcache_cli(capsys, "alert", str(alert_env / "result.json"), "--webhook", url, option, value)
    assert (code, received.attempts) == (EXIT_USAGE, 0)
    assert err == [f"fbcache alert: error: {option}: invalid value {float(value) if 'timeout' in option else int(value)!r}"
                   f"; accepted: {accepted}"]
    assert nothing_sent(alert_env, out)


def test_step_summary_that_is_a_directory_is_refused_before_sending(alert_env, monkeypatch, capsys):
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(alert_env))
    with webhook_server(200) as (url, received):
        code, err, out = fbcache_cli(capsys, "alert", str(alert_env / "result.json"), "--webhook", url)
    assert (code, received.attempts, out) == (EXIT_USAGE, 0, "")
    assert len(err) == 1 and err[0].startswith(f"fbcache alert: error: GITHUB_STEP_SUMMARY: invalid value '{alert_env}' "
                                               "(is a directory); accepted: a file path"), err


def test_sink_that_raises_is_one_line_and_the_next_sink_still_runs(alert_env, capsys):
    """A gh that cannot even start (exec format error) makes the issue sink raise, not just fail."""
    (alert_env / "gh").write_bytes(b"\x7fELF broken")
    sent_after: list[str] = []
    register(AlertSink("after-issue", lambda parser: None,
                       lambda args: lambda finding: (sent_after.append(finding.headline()), Outcome(True, "sent"))[1]))
    try:
        with webhook_server(200) as (url, received):
            code, err, out = fbcache_cli(capsys, "alert", str(alert_env / "result.json"), "--webhook", url, "--issue")
    finally:
        unregister("after-issue")
    assert code == EXIT_REGRESSION, "the verdict's code, whatever the sinks did"
    assert len(err) == 1 and err[0].startswith("github-issue: FAILED: OSError: [Errno 8] Exec format error"), err
    assert received.attempts == 1 and "webhook: delivered" in out
    assert len(sent_after) == 1 and sent_after[0].startswith("fbcache REGRESSION"), "the sink after it still sent"
    assert "REGRESSION" in (alert_env / "summary.md").read_text()


@pytest.mark.parametrize("finding", [Finding(result=result(True)), Finding(result=result(False)),
                                     Finding(broken="OOM"), Finding(not_started="--steps: invalid value 'abc'")],
                         ids=["regression", "clean", "broken", "not-started"])
def test_any_exception_of_a_sink_keeps_the_verdicts_exit_code(finding, capsys):
    def explodes(finding: Finding) -> Outcome:
        raise RuntimeError("first line\nsecond line")

    with webhook_server(200) as (url, received):
        code = alert(finding, [ConfiguredSink("explodes", explodes),
                               ConfiguredSink("webhook", lambda f: send_webhook(f, WebhookSettings(url), True))])
    assert code == finding.exit_code
    assert capsys.readouterr().err.splitlines() == ["explodes: FAILED: RuntimeError: first line second line"]
    assert received.attempts == 1, "the sink after the one that raised still sent"
