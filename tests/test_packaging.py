"""The installed package is a real pytest plugin: its ``pytest11`` entry point adds the options anywhere.

A fresh virtual environment gets fbcache from a wheel built from this checkout; ``pytest --help`` in
an empty directory, with no conftest.py in sight, must show the fbcache option group, and the training
code must not be in the wheel. The fresh environment borrows its dependencies (torch, diffusers,
pytest...) from the environment running the tests, so nothing is downloaded and nothing outside it is
needed: the interpreter's base installation may have no packages at all (a venv's
``system_site_packages`` would expose that base, not the running environment). fbcache's own files of
the running environment are left out, so the plugin can only come from the wheel.
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent


def _is_fbcache(name: str) -> bool:
    """The package, its metadata and an editable install's finder and .pth file."""
    lowered = name.lower()
    return lowered == "fbcache" or lowered.startswith(("fbcache-", "__editable__.fbcache", "__editable___fbcache"))


def borrowed_site_dirs(tmp_path: Path) -> list[Path]:
    """The running environment's site directories, each mirrored by links to everything but fbcache."""
    paths = sysconfig.get_paths()
    user = [site.getusersitepackages()] if site.ENABLE_USER_SITE else []
    sources = dict.fromkeys([*site.getsitepackages(), paths["purelib"], paths["platlib"], *user])
    mirrors = []
    for number, source in enumerate(Path(s) for s in sources):
        if not source.is_dir():
            continue
        mirror = tmp_path / f"borrowed-{number}"
        mirror.mkdir()
        for entry in source.iterdir():
            if not _is_fbcache(entry.name):
                (mirror / entry.name).symlink_to(entry)
        mirrors.append(mirror)
    return mirrors


def test_installed_wheel_registers_the_plugin_in_an_empty_directory(tmp_path: Path):
    wheels = tmp_path / "wheels"
    # built from a copy of the sources: an in-tree build reuses ./build, which keeps modules since removed
    source = tmp_path / "source"
    shutil.copytree(ROOT / "fbcache", source / "fbcache", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(source)], check=True, capture_output=True, text=True)
    [wheel] = wheels.glob("fbcache-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "fbcache/weights/tiny-flux.safetensors" in names
    assert "fbcache/prompts/default.txt" in names, "the shipped prompt set (a data directory, no __init__.py)"
    assert not [n for n in names if n.startswith("tools/") or "train_tiny" in n], "training code ships in the wheel"

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    with zipfile.ZipFile(wheel) as archive:  # what pip does with a pure-Python wheel, minus the network
        archive.extractall(purelib)
    # addsitedir after the wheel's own directory: the dependencies' .pth files run, fbcache's are not there
    (purelib / "zz-borrowed-dependencies.pth").write_text(
        "".join(f"import site; site.addsitedir({str(mirror)!r})\n" for mirror in borrowed_site_dirs(tmp_path)))
    empty = tmp_path / "empty"
    empty.mkdir()
    # no bytecode: the borrowed directories are links into the running environment, whose caches
    # (pytest's rewritten plugins among them) must not get this temporary directory's paths
    env = {"PATH": str(env_dir / "bin"), "HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([str(python), "-m", "pytest", "--help", "-p", "no:cacheprovider"], cwd=empty, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "fbcache: First-Block Cache sweep" in done.stdout
    assert "--fbcache-model" in done.stdout and "--fbcache-cache-backend" in done.stdout
    where = subprocess.run([str(python), "-c", "import fbcache; print(fbcache.__file__)"], cwd=empty, env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert where == str(purelib / "fbcache" / "__init__.py"), "the installed copy, not the checkout"
    plugins = subprocess.run([str(python), "-c", "from importlib.metadata import entry_points; print([str(e.dist.locate_file("
                              "'')) for e in entry_points(group='pytest11') if e.name == 'fbcache'])"],
                             cwd=empty, env=env, check=True, capture_output=True, text=True).stdout
    assert plugins.strip() == repr([str(purelib)]), "one fbcache plugin, registered by the wheel's metadata"
