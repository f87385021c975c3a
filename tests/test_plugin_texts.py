"""What pytest prints about fbcache outside the sweep itself: its header line, ``--co`` and ``--help``.

Each runs pytest in a subprocess, as a user would; none of them builds a model.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, subprocess_env
from fbcache.configure import options as option_table

pytestmark = pytest.mark.integration


def pytest_output(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    done.stdout += done.stderr
    return done


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> subprocess.CompletedProcess:
    base = tmp_path_factory.mktemp("co")
    done = pytest_output(base, str(ROOT / "benchmarks"), "--co", f"--benchmark-storage=file://{base / 'history'}",
                         "--fbcache-output-dir", str(base / "images"), "--fbcache-device", "cpu",
                         "--fbcache-clock", "cpu", "--fbcache-rounds", "4", "--fbcache-warmup-rounds", "2")
    assert done.returncode == 0, done.stdout
    return done


@pytest.mark.xdist_group("collect-only")
def test_collection_only_says_nothing_about_history(collected):
    assert "history:" not in collected.stdout


@pytest.mark.xdist_group("collect-only")
def test_the_header_states_the_clock_rounds_and_schedule_fbcache_uses(collected):
    [line] = [line for line in collected.stdout.splitlines() if line.startswith("fbcache: timer=")]
    assert line.startswith("fbcache: timer=time.process_time (the process's CPU time), rounds=4 (+2 untimed "
                           "warm-up) per benchmark, interleaved"), line


def test_pytest_help_gives_each_default_once(tmp_path):
    done = pytest_output(tmp_path, "--help")
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("fbcache: First-Block Cache"))
    end = lines.index("", start)
    options: list[str] = []
    for line in lines[start + 1:end]:
        if line.startswith("  --fbcache-"):  # an option's first line; its help continues, indented deeper
            options.append("")
        options[-1] += " " + line.strip()
    group = " ".join(options)
    assert len(options) == len(option_table()), "the core options, the extensions' and the metrics' margins"
    assert [o.split("=")[0].split()[0] for o in options if o.count("(default: ") != 1] == []
    assert "see above" not in group and "`" not in group
