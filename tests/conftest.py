"""Shared helpers: run ``pytest benchmarks`` in a subprocess, as a user would, and read what it saved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: few steps and rounds keep each subprocess sweep to seconds on a 2-core CPU
FAST = ["--fbcache-steps", "8", "--fbcache-rounds", "2", "--fbcache-warmup-rounds", "0"]
MODEL = "tiny"


@dataclass
class Sweep:
    returncode: int
    output: str
    storage: Path
    output_dir: Path

    def saved_runs(self) -> list[Path]:
        return sorted(self.storage.glob("*/[0-9][0-9][0-9][0-9]_*.json"))

    def last_run(self) -> dict:
        runs = self.saved_runs()
        assert runs, f"nothing saved in {self.storage}:\n{self.output}"
        return json.loads(runs[-1].read_text())


def run_sweep(tmp_path: Path, *args: str, env: dict[str, str] | None = None, plugins: tuple[str, ...] = (),
              timeout: float = 600) -> Sweep:
    """``python -m pytest <repo>/benchmarks ...`` run from tmp_path, where storage and images go.

    Running from tmp_path keeps the storage under the working directory, as in normal use
    (pytest-benchmark's compare warning cannot print a storage path outside it).
    """
    storage = tmp_path / "history"
    output_dir = tmp_path / "images"
    command = [sys.executable, "-m", "pytest", str(ROOT / "benchmarks"), "-p", "no:cacheprovider", "-q",
               f"--benchmark-storage=file://{storage}", "--fbcache-output-dir", str(output_dir)]
    for plugin in plugins:
        command += ["-p", plugin]
    command += list(args)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), **(env or {})}
    environment = {k: v for k, v in environment.items() if not k.startswith("FBCACHE_") or k in (env or {})}
    done = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=timeout)
    return Sweep(done.returncode, done.stdout + done.stderr, storage, output_dir)


@pytest.fixture
def sweep(tmp_path: Path):
    def run(*args: str, **kwargs) -> Sweep:
        return run_sweep(tmp_path, *args, **kwargs)

    return run
