"""Probes for the progress lines of a sweep (tests/test_progress.py), chosen by FBCACHE_TEST_PROBE:

- ``burn``: after writing the line of each timed round of ``uncached[p0]``, burn one second of CPU
  time; written inside the timed region, the recorded rounds of ``uncached[p0]`` would hold it;
- ``gate``: once every test has run, wait (up to a minute) until the file FBCACHE_TEST_GATE exists,
  before the run is saved, so a test can look at what ``fbcache nightly`` showed while the sweep ran.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from pathlib import Path

import pytest

PROBE = os.environ.get("FBCACHE_TEST_PROBE", "")
BURN_S = 1.0
GATE_S = 60.0


def pytest_configure(config: pytest.Config) -> None:
    if PROBE != "burn":
        return
    from fbcache.plugin.display import Progress

    original = Progress.generation

    def generation_then_burn(self, threshold, prompt_index, warmup, *args, **kwargs):
        line = original(self, threshold, prompt_index, warmup, *args, **kwargs)
        if threshold is None and prompt_index == 0 and not warmup:
            end = time.process_time() + BURN_S
            while time.process_time() < end:
                pass
        return line

    Progress.generation = generation_then_burn


@pytest.hookimpl(hookwrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, None, None]:
    yield
    gate = os.environ.get("FBCACHE_TEST_GATE")
    if PROBE == "gate" and gate:
        deadline = time.monotonic() + GATE_S
        while not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
