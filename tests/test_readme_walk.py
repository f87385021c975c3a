"""The README's walk, top to bottom, in a fresh directory: sweep, a second sweep, compare, report,
alert, history. The sweeps go through ``scripts/sweep`` itself (with FBCACHE_PYTHON, so it installs
nothing here); every command must exit as the README says. Tiny model, few steps, two thresholds.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, subprocess_env
from fbcache.cli import main as fbcache_main

pytestmark = pytest.mark.integration
QUICK = ["--fbcache-steps", "4", "--fbcache-rounds", "2", "--fbcache-warmup-rounds", "0", "--fbcache-thresholds", "0 0.5"]


def run(cwd: Path, *command: str) -> subprocess.CompletedProcess:
    env = subprocess_env({"FBCACHE_PYTHON": sys.executable})
    return subprocess.run(list(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def fbcache(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The ``fbcache`` entry point in this process (the sweeps above are the costly subprocesses)."""
    out, err = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = fbcache_main(list(args))
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(["fbcache", *args], code, out.getvalue(), err.getvalue())


def test_the_readme_walk(tmp_path: Path):
    first = run(tmp_path, "bash", str(ROOT / "scripts" / "sweep"), *QUICK)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "nothing installed" in first.stderr and "history: saved" in first.stdout

    alone = fbcache(tmp_path, "compare")
    assert alone.returncode == 0, alone.stderr
    assert "nothing: the first run with this fingerprint" in alone.stdout

    second = run(tmp_path, "bash", str(ROOT / "scripts" / "sweep"), *QUICK)
    assert second.returncode == 0, second.stdout[-3000:]
    assert len(list((tmp_path / ".benchmarks").glob("*/*.json"))) == 2

    compared = fbcache(tmp_path, "compare", "--json", "result.json")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "no raw rounds" not in compared.stdout, "the sweep saves raw rounds (--benchmark-save-data)"
    assert json.loads((tmp_path / "result.json").read_text())["regression"] is False

    report = fbcache(tmp_path, "report")
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "fbcache-report" / "report.md").read_text()
    assert "images/flux_t0.5_first.png" in page and "not used" not in page and "not checked" not in page

    alert = fbcache(tmp_path, "alert", "result.json")
    assert alert.returncode == 0, alert.stderr
    assert "no regression" in alert.stdout

    history = fbcache(tmp_path, "history")
    assert history.returncode == 0 and history.stdout.count("bounds") == 2, history.stdout
