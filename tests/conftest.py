"""Shared helpers: run ``pytest benchmarks`` in a subprocess, as a user would, and read what it saved.

Speed: the suite runs on pytest-xdist workers by default (``-n auto --dist loadgroup``: tests are
spread one by one, except those sharing a sweep, which carry ``xdist_group`` and run on one worker
so the shared sweep runs once), every subprocess sweep runs with one thread
(``OMP_NUM_THREADS=1``: on a shared 2-core machine, two workers each using two threads fight), and
sweeps use the fewest steps and rounds that still show the behaviour a test asserts. ``-n 0`` runs
serially.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fbcache.history.storage import run_files

ROOT = Path(__file__).resolve().parent.parent
#: few steps and rounds keep each subprocess sweep to seconds on a 2-core CPU
STEPS = 4
FAST = ["--fbcache-steps", str(STEPS), "--fbcache-rounds", "2", "--fbcache-warmup-rounds", "0"]
MODEL = "tiny"


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Parallel by default, unless -n/--dist was given or xdist is absent or disabled."""
    option = config.option
    if not hasattr(option, "numprocesses") or not config.pluginmanager.hasplugin("xdist"):
        return
    if option.numprocesses is None and option.dist == "no" and not os.environ.get("PYTEST_XDIST_WORKER"):
        option.numprocesses = "auto"
        option.dist = "loadgroup"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Tell each xdist worker that the run groups tests: a worker parses the original command line,
    not the options set above, and without ``loadgroup`` it never tags grouped tests, so every worker
    would build every shared sweep again."""
    node.workerinput["fbcache_loadgroup"] = node.config.option.dist == "loadgroup"


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread per worker: in-process generations of two workers share two cores. And no
    xdist worker variables for child processes: pytest-benchmark in a child sweep would see them and
    disable itself (nothing saved)."""
    import torch

    workerinput = getattr(config, "workerinput", {})
    if workerinput.get("fbcache_loadgroup"):
        config.option.loadgroup = True

    torch.set_num_threads(1)
    if hasattr(config, "workerinput"):
        for name in [n for n in os.environ if n.startswith("PYTEST_XDIST")]:
            del os.environ[name]


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a subprocess sweep: this checkout first on the path, one thread, no FBCACHE_*
    from the caller's shell (only the ones given in ``extra``)."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
                   "OMP_NUM_THREADS": "1", **(extra or {})}
    # an xdist worker's variables would make pytest-benchmark in the child disable itself
    environment = {k: v for k, v in environment.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    return {k: v for k, v in environment.items() if not k.startswith("FBCACHE_") or k in (extra or {})}


@dataclass
class Sweep:
    returncode: int
    output: str
    storage: Path
    output_dir: Path

    def saved_runs(self) -> list[Path]:
        return run_files(self.storage)

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
    done = subprocess.run(command, cwd=tmp_path, env=subprocess_env(env), capture_output=True, text=True,
                          timeout=timeout)
    return Sweep(done.returncode, done.stdout + done.stderr, storage, output_dir)


@pytest.fixture
def sweep(tmp_path: Path):
    def run(*args: str, **kwargs) -> Sweep:
        return run_sweep(tmp_path, *args, **kwargs)

    return run
