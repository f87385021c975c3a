"""The installed package is a real pytest plugin: its ``pytest11`` entry point adds the options anywhere.

A fresh virtual environment (with the system's packages, so nothing is downloaded) gets fbcache from
a wheel built from this checkout; ``pytest --help`` in an empty directory, with no conftest.py in
sight, must show the fbcache option group, and the training code must not be in the wheel.
"""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent


def test_installed_wheel_registers_the_plugin_in_an_empty_directory(tmp_path: Path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(ROOT)], check=True, capture_output=True, text=True)
    [wheel] = wheels.glob("fbcache-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "fbcache/weights/tiny-flux.safetensors" in names
    assert not [n for n in names if n.startswith("tools/") or "train_tiny" in n], "training code ships in the wheel"

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    with zipfile.ZipFile(wheel) as archive:  # what pip does with a pure-Python wheel, minus the network
        archive.extractall(site)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"PATH": str(env_dir / "bin"), "HOME": str(tmp_path)}
    done = subprocess.run([str(python), "-m", "pytest", "--help", "-p", "no:cacheprovider"], cwd=empty, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "fbcache: First-Block Cache sweep" in done.stdout
    assert "--fbcache-model" in done.stdout and "--fbcache-cache-backend" in done.stdout
    where = subprocess.run([str(python), "-c", "import fbcache; print(fbcache.__file__)"], cwd=empty, env=env,
                           check=True, capture_output=True, text=True).stdout
    assert str(ROOT) not in where, "the test must exercise the installed copy, not the checkout"
