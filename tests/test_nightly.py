"""The nightly verb end to end on CPU with tiny: sweep, compare, report, alert to a local webhook.

This is the exact path .github/workflows/nightly.yml runs on the GPU runner.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from webhook_server import webhook_server

from conftest import ROOT, subprocess_env
from fbcache.history.storage import run_files

pytestmark = pytest.mark.integration
QUICK = ["--steps", "4", "--rounds", "2", "--thresholds", "0.5"]


def nightly(tmp_path: Path, url: str, *extra: str, fault: str = "", env: dict[str, str] | None = None,
            quick: bool = True) -> subprocess.CompletedProcess:
    env = subprocess_env(env)
    env["GITHUB_STEP_SUMMARY"] = str(tmp_path / "summary.md")
    if fault:
        env["FBCACHE_TEST_FAULT"] = fault
    command = [sys.executable, "-m", "fbcache", "nightly", "--storage", str(tmp_path / "history"),
               "--report-dir", str(tmp_path / "report"), "--images", str(tmp_path / "images"),
               "--webhook", url, "--webhook-attempts", "1", *(QUICK if quick else []), *extra]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_two_clean_nights_then_a_broken_one(tmp_path):
    with webhook_server(200) as (url, received):
        first = nightly(tmp_path, url)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        assert "nothing: the first run with this fingerprint" in first.stdout
        bad = run_files(tmp_path / "history")[0].with_name("0000_hand-edited.json")
        bad.write_text(json.dumps({**json.loads(run_files(tmp_path / "history")[0].read_text()), "benchmarks": [1, 2]}))
        second = nightly(tmp_path, url)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert "Verdict: clean" in second.stdout
        assert second.stderr.count("0000_hand-edited.json: benchmarks[0] is int") == 1, "named, skipped, no crash"
        bad.unlink()
        assert received.attempts == 0, "clean nights post nothing"
        assert (tmp_path / "report" / "report.html").is_file()
        assert (tmp_path / "summary.md").read_text().count("fbcache: no regression") == 2

        broken = nightly(tmp_path, url, "--pytest-args", "-p plugins.faults", fault="nan")
    assert broken.returncode == 3, broken.stdout[-3000:]
    assert len(run_files(tmp_path / "history")) == 2, "a broken sweep adds nothing to the history"
    [body] = received.bodies
    assert body["text"].startswith("fbcache nightly sweep BROKEN") and "NaN" in body["text"]
    assert "REGRESSION" not in body["text"]


def test_a_broken_bound_is_saved_and_alerts_as_regression(tmp_path):
    strict = tmp_path / "strict.toml"
    strict.write_text('[profile]\nname = "strict"\n[thresholds."0.5"]\nmin_ssim = 0.99999\n')
    with webhook_server(200) as (url, received):
        done = nightly(tmp_path, url, "--bounds", str(strict))
    assert done.returncode == 1, done.stdout[-3000:]
    assert len(run_files(tmp_path / "history")) == 1, "a run that breaks a bound is a real measurement"
    [body] = received.bodies
    assert body["text"].startswith("fbcache REGRESSION") and "0.5 bounds regression" in body["text"]


def test_a_sweep_pytest_refuses_is_a_usage_error_announced_as_not_started(tmp_path):
    with webhook_server(200) as (url, received):
        done = nightly(tmp_path, url, "--pytest-args=--no-such-pytest-option")
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "fbcache nightly: error: the sweep did not start: pytest exit code 4" in done.stderr
    assert run_files(tmp_path / "history") == [], "nothing saved"
    [body] = received.bodies
    assert body["text"].startswith("fbcache nightly did NOT START"), "the job's owner still hears it did not run"
    assert "BROKEN" not in body["text"], "a usage error, not a broken sweep (exit 3)"


def sweep_started(done: subprocess.CompletedProcess) -> bool:
    return "fbcache nightly: " + sys.executable in done.stdout


@pytest.mark.parametrize("extra, env, named", [
    (["--steps", "abc"], {}, "--steps (for --fbcache-steps)"),
    ([], {"FBCACHE_THRESHOLDS": "abc"}, "FBCACHE_THRESHOLDS (for --fbcache-thresholds)"),
    (["--pytest-args", "--fbcache-seed abc"], {}, "--fbcache-seed")], ids=["option", "env", "pytest-args"])
def test_a_bad_sweep_option_is_a_usage_error_before_any_sweep(tmp_path, extra, env, named):
    with webhook_server(200) as (url, received):
        done = nightly(tmp_path, url, *extra, env=env, quick=False)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    [line] = done.stderr.splitlines()
    assert line.startswith(f"fbcache nightly: error: {named}: invalid value 'abc' (not a"), line
    assert "; accepted: " in line
    assert not sweep_started(done) and not (tmp_path / "history").exists(), "no sweep ran"
    [body] = received.bodies
    assert body["text"].startswith("fbcache nightly did NOT START") and named in body["text"]


@pytest.mark.parametrize("baseline, why", [("0099", "run '0099_' matches 0 runs"),
                                           ("previous", "--baseline previous is gone")])
def test_a_baseline_that_cannot_be_found_is_refused_before_the_sweep(tmp_path, baseline, why):
    with webhook_server(200) as (url, received):
        done = nightly(tmp_path, url, "--baseline", baseline)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    [line] = done.stderr.splitlines()
    assert line.startswith(f"fbcache nightly: error: --baseline: invalid value '{baseline}' ({why}"), line
    assert not sweep_started(done) and not (tmp_path / "history").exists(), "hours of sweep not spent on a typo"
    [body] = received.bodies
    assert body["text"].startswith("fbcache nightly did NOT START")


@pytest.mark.parametrize("source", ["option", "env"])
def test_an_unparseable_webhook_url_is_a_usage_error_before_the_sweep(tmp_path, source):
    command = [sys.executable, "-m", "fbcache", "nightly", "--storage", str(tmp_path / "history"),
               "--images", str(tmp_path / "images"), "--report-dir", str(tmp_path / "report"), "--issue", *QUICK]
    env = subprocess_env({"GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")})
    if source == "option":
        command += ["--webhook", "http://[::1"]
    else:
        env["FBCACHE_WEBHOOK_URL"] = "http://[::1"
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    named = "--webhook" if source == "option" else "FBCACHE_WEBHOOK_URL (for --webhook)"
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stderr.splitlines() == [f"fbcache nightly: error: {named}: invalid value 'http://[::1' (cannot be "
                                        "parsed: Invalid IPv6 URL); accepted: an http:// or https:// URL with a host, "
                                        "e.g. https://HOST/PATH"]
    assert not sweep_started(done) and not (tmp_path / "history").exists(), "no sweep ran"
    assert not (tmp_path / "summary.md").exists(), "nothing sent"
