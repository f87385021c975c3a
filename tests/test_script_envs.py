"""scripts/test and scripts/sweep use separate environments: installing the test extra (its pytest pin,
torchao, cache-dit) must never change the packages a sweep records in its run.

The scripts run from a copy of the checkout with a ``python3`` on PATH that passes the version check
and cannot make an environment, so each script says which environment it would create and stops:
nothing is installed, and no environment of this checkout is touched.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

#: passes _env.sh's "Python 3.10 or newer" check (python3 -c ...), fails anything else (python3 -m venv DIR)
NO_VENV_PYTHON = '#!/bin/sh\n[ "$1" = "-c" ] && exit 0\nexit 97\n'
#: a tool that writes its environment's name and its own name to the log
LOGGING_TOOL = '#!/bin/sh\necho "{env} $(basename "$0")" >> "{log}"\n'


def executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the scripts in an otherwise empty checkout, with no environment in it."""
    copy = tmp_path / "clone"
    (copy / "scripts").mkdir(parents=True)
    for name in ("_env.sh", "test", "sweep"):
        shutil.copy(ROOT / "scripts" / name, copy / "scripts" / name)
    (copy / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "run", copy / ".ci" / "run")
    executable(tmp_path / "bin" / "python3", NO_VENV_PYTHON)
    return copy


def run(checkout: Path, script: str, **variables: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FBCACHE_")}
    env["PATH"] = f"{checkout.parent / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(["bash", str(checkout / script)], cwd=checkout, env={**env, **variables},
                          capture_output=True, text=True, timeout=60)


def chosen(done: subprocess.CompletedProcess) -> str:
    """The environment the script set out to create (it stops there: the stub python3 makes none)."""
    assert done.returncode == 97, done.stderr
    [line] = [line for line in done.stderr.splitlines() if "creating the virtual environment" in line]
    return line.rsplit(" ", 1)[1]


def test_scripts_test_uses_venv_test_even_where_the_sweeps_variable_is_set(checkout: Path):
    done = run(checkout, "scripts/test", FBCACHE_VENV=str(checkout / "sweep-env"))
    assert chosen(done) == str(checkout / ".venv-test")
    assert sorted(p.name for p in checkout.iterdir()) == [".ci", "scripts"], "nothing created, nothing installed"


def test_scripts_test_takes_its_own_override(checkout: Path):
    assert chosen(run(checkout, "scripts/test", FBCACHE_TEST_VENV=str(checkout / "mine"))) == str(checkout / "mine")


def test_scripts_sweep_uses_venv_whatever_the_tests_variable_says(checkout: Path):
    assert chosen(run(checkout, "scripts/sweep", FBCACHE_TEST_VENV=str(checkout / "t"))) == str(checkout / ".venv")
    assert chosen(run(checkout, "scripts/sweep", FBCACHE_VENV=str(checkout / "s"))) == str(checkout / "s")


def test_ci_gates_run_the_test_environments_tools(checkout: Path):
    log = checkout / "calls.log"
    executable(checkout / "scripts" / "test", f'#!/bin/sh\necho "scripts/test" >> "{log}"\n')
    (checkout / ".github" / "workflows").mkdir(parents=True)
    (checkout / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    for env in (".venv", ".venv-test"):
        for tool in ("ruff", "mypy", "actionlint", "mkdocs"):
            executable(checkout / env / "bin" / tool, LOGGING_TOOL.format(env=env, log=log))
    done = run(checkout, ".ci/run")
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == ["scripts/test", ".venv-test ruff", ".venv-test mypy",
                                            ".venv-test actionlint", ".venv-test mkdocs"]
