"""Fault injection for integration tests, chosen by FBCACHE_TEST_FAULT:

- ``nan``: every generation returns NaN pixels;
- ``interrupt``: a KeyboardInterrupt during the third benchmark, as Ctrl-C would;
- ``no-model``: building the model is an error, to prove bad input stops before it;
- ``recompile``: dynamo's caches are cleared between the compile warm-up and the timed rounds, so
  the timed rounds would recompile (as a guard failure on a changed input would).
"""

from __future__ import annotations

import os

import pytest

FAULT = os.environ.get("FBCACHE_TEST_FAULT", "")


def pytest_configure(config: pytest.Config) -> None:
    from fbcache.plugin import measure, session

    if FAULT == "nan":
        original = measure.generate_once

        def nan_images(fb_session, generator, *args):
            images = original(fb_session, generator, *args)
            return images * float("nan")

        measure.generate_once = nan_images
    elif FAULT == "no-model":
        def refuse(config):
            raise RuntimeError("MODEL WAS BUILT")

        session.load_model = refuse
    elif FAULT == "recompile":
        timed = measure._time_generations

        def reset_then_time(*args, **kwargs):
            import torch

            torch._dynamo.reset()
            return timed(*args, **kwargs)

        measure._time_generations = reset_then_time


_calls = {"n": 0}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    if FAULT == "interrupt" and "fbcache_bench" in getattr(item, "fixturenames", ()):
        _calls["n"] += 1
        if _calls["n"] == 3:
            raise KeyboardInterrupt
