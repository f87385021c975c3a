"""Fault injection for integration tests, chosen by FBCACHE_TEST_FAULT:

- ``nan``: every generation returns NaN pixels;
- ``interrupt``: a KeyboardInterrupt during the third benchmark, as Ctrl-C would;
- ``no-model``: building the model is an error, to prove bad input stops before it;
- ``recompile``: dynamo's caches are cleared between the compile warm-up and the timed rounds, so
  the timed rounds would recompile (as a guard failure on a changed input would);
- ``disk-full``: the disk under ``FBCACHE_TEST_FULL_DIR`` fills up: every file written there takes
  ``FBCACHE_TEST_FULL_AFTER`` bytes (default 64), then its write fails with ENOSPC, as a full disk does.

:func:`fill_disk` is the same full disk for in-process tests (a monkeypatch).
"""

from __future__ import annotations

import errno
import io
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

FAULT = os.environ.get("FBCACHE_TEST_FAULT", "")


def pytest_configure(config: pytest.Config) -> None:
    from fbcache.plugin import schedule, session

    if FAULT == "nan":
        original = schedule.generate_once

        def nan_images(fb_session, generator, *args):
            images = original(fb_session, generator, *args)
            return images * float("nan")

        schedule.generate_once = nan_images
    elif FAULT == "no-model":
        def refuse(config):
            raise RuntimeError("MODEL WAS BUILT")

        session.load_model = refuse
    elif FAULT == "recompile":
        timed = schedule._time_generations

        def reset_then_time(*args, **kwargs):
            import torch

            torch._dynamo.reset()
            return timed(*args, **kwargs)

        schedule._time_generations = reset_then_time
    elif FAULT == "disk-full":
        for name, value in _full_disk_patches(Path(os.environ["FBCACHE_TEST_FULL_DIR"]),
                                              int(os.environ.get("FBCACHE_TEST_FULL_AFTER", "64"))):
            target, attribute = name
            setattr(target, attribute, value)


class _FullFile:
    """A file opened for writing on a full disk: ``room`` bytes (or characters) fit, then ENOSPC."""

    def __init__(self, handle: Any, room: int) -> None:
        self._handle = handle
        self._room = room

    def write(self, data: Any) -> int:
        if len(data) > self._room:
            self._handle.write(data[:self._room])
            self._handle.flush()
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._handle.write(data)

    def __enter__(self) -> _FullFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def __iter__(self) -> Any:
        return iter(self._handle)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def _full_disk_patches(directory: Path, room: int) -> list[tuple[tuple[Any, str], Any]]:
    """(module, attribute) -> replacement: ``open`` for files under ``directory`` returns a full file."""
    import builtins

    real_open = io.open
    root = os.path.realpath(directory)

    def where(file: Any) -> str:
        if isinstance(file, int):  # os.fdopen and mkstemp hand over a descriptor
            return os.path.realpath(f"/proc/self/fd/{file}")
        return os.path.realpath(os.fspath(file))

    def full_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(file, mode, *args, **kwargs)
        writing = any(flag in mode for flag in "wax+")
        inside = writing and (where(file) + os.sep).startswith(root + os.sep)
        return _FullFile(handle, room) if inside else handle

    # shutil.copyfile would copy with sendfile(2), which no Python-level write sees
    return [((builtins, "open"), full_open), ((io, "open"), full_open), ((shutil, "_USE_CP_SENDFILE"), False)]


def fill_disk(monkeypatch: pytest.MonkeyPatch, directory: Path, room: int = 64) -> None:
    """In this process, the disk under ``directory`` is full: each file written there takes ``room`` bytes."""
    for (target, attribute), value in _full_disk_patches(directory, room):
        monkeypatch.setattr(target, attribute, value)


_calls = {"n": 0}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    if FAULT == "interrupt" and "fbcache_bench" in getattr(item, "fixturenames", ()):
        _calls["n"] += 1
        if _calls["n"] == 3:
            raise KeyboardInterrupt
