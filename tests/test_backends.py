"""The cache-dit and nunchaku backends on real tiny-FLUX generations, in process.

Each test gets a pipeline of its own class (both libraries patch the pipeline *class*), built from the
module's tiny pipeline. nunchaku is one of fbcache's stand-ins (tests/standins/nunchaku-<version>),
never the engine.
"""

from __future__ import annotations

import importlib.metadata

import pytest
import test_nunchaku_standins as standins
import torch
from test_nunchaku_standins import STEPS, counting, fresh_pipe, generate, standin_package

from fbcache import backends
from fbcache.backends import DecisionLog
from fbcache.backends.nunchaku import parse_release, unsupported_release
from fbcache.errors import BrokenRunError

THRESHOLD = 0.5
#: the stand-in tests' module fixtures: the tiny pipeline and its uncached latents
tiny = standins.tiny
uncached = standins.uncached


def decided(log: DecisionLog) -> list[bool]:
    return [step.hit for step in log.finish_generation()]


# ---------------------------------------------------------------------------------------- cache-dit


@pytest.fixture
def cache_dit_backend(tiny):
    from fbcache.backends.cache_dit import CacheDitFBCache

    pytest.importorskip("cache_dit")
    return CacheDitFBCache(fresh_pipe(tiny), steps=STEPS)


def test_cache_dit_hits_come_from_its_decision_and_match_its_own_statistics(cache_dit_backend, uncached):
    backend = cache_dit_backend
    for threshold in (THRESHOLD, 0.0, THRESHOLD):  # enabled, disabled and enabled again on one pipeline
        log = DecisionLog()
        backend.enable(threshold, log)
        latents = generate(backend.pipe)
        hits = decided(log)
        assert len(hits) == STEPS and not hits[0]
        assert [step for step, hit in enumerate(hits) if hit] == backend.own_statistics()
        assert (0 < sum(hits) < STEPS) if threshold else sum(hits) == 0
        assert torch.equal(latents, uncached) == (threshold == 0.0)
        backend.disable()
    assert not backend.can_run_uncached, "cache-dit's patched forward stays on the transformer"
    assert "forward" in vars(backend.pipe.transformer)
    assert torch.equal(generate(backend.pipe), uncached), "but with the cache gone it computes the uncached image"


def test_cache_dit_refuses_its_statistics_when_they_disagree(cache_dit_backend):
    backend = cache_dit_backend
    backend.enable(THRESHOLD, DecisionLog())
    generate(backend.pipe)
    backend.trace = [(step, True) for step in range(STEPS)]  # as if the decisions were misread
    with pytest.raises(BrokenRunError, match="cache-dit's own statistics"):
        backend.disable()


def test_cache_dit_settings_record_f1b0_without_warmup_or_limits():
    pytest.importorskip("cache_dit")
    spec = backends.get("cache-dit")
    settings = spec.settings(None)
    assert settings["Fn_compute_blocks"] == 1 and settings["Bn_compute_blocks"] == 0
    assert settings["max_warmup_steps"] == 0 and settings["max_cached_steps"] == -1
    assert settings["max_continuous_cached_steps"] == -1 and settings["max_accumulated_residual_diff_threshold"] is None
    assert settings["cache_type"] == "DBCache" and settings["CACHE_DIT_FLUX_ENABLE_DUMMY_BLOCKS"] == "1"
    assert "residual_diff_threshold" not in settings
    assert spec.versions() == {"cache-dit": importlib.metadata.version("cache-dit")} and not spec.removable


# ----------------------------------------------------------------------------------------- nunchaku


@pytest.mark.parametrize("version, defining", [("0.3.2", "nunchaku.caching.utils"),
                                               ("1.1.0", "nunchaku.caching.fbcache")])
def test_nunchaku_v1_decisions_threshold_updates_and_off_switch(tiny, uncached, version, defining):
    with standin_package(version):
        import importlib

        from fbcache.backends.nunchaku import NunchakuFBCache

        backend = NunchakuFBCache(fresh_pipe(tiny))
        assert not backend.v2
        assert getattr(importlib.import_module(defining).get_can_use_cache, "__fbcache_wrapped__", False)
        for threshold in (THRESHOLD, 0.0):
            log = DecisionLog()
            backend.enable(threshold, log)
            latents = generate(backend.pipe)
            hits = decided(log)
            assert len(hits) == STEPS and (sum(hits) > 0) == (threshold > 0)
            assert backend.effective_threshold() == threshold
            backend.disable()
            assert torch.equal(latents, uncached) == (threshold == 0.0)
        assert backend.effective_threshold() < 0 and not backend.can_run_uncached, \
            "V1: the off switch runs every block through nunchaku's patched forward; not 'no hooks at all'"
        with counting(defining) as calls:
            off = generate(backend.pipe)
        assert torch.equal(off, uncached) and calls == [], "switched off: no decision at all"


def test_nunchaku_v1_second_apply_before_any_generation_is_refused(tiny):
    with standin_package("1.1.0"):
        from fbcache.backends.nunchaku import NunchakuFBCache

        backend = NunchakuFBCache(fresh_pipe(tiny))
        backend.enable(THRESHOLD, DecisionLog())
        with pytest.raises(BrokenRunError, match="no generation ran since"):
            backend.enable(0.0, DecisionLog())


def test_nunchaku_v2_goes_through_flux_v2_and_its_off_switch_calls_the_original_forward(tiny, uncached):
    with standin_package("1.1.0"):
        from nunchaku import NunchakuFluxTransformer2DModelV2

        from fbcache.backends.nunchaku import NunchakuFBCache

        backend = NunchakuFBCache(fresh_pipe(tiny, NunchakuFluxTransformer2DModelV2))
        assert backend.v2
        log = DecisionLog()
        backend.enable(THRESHOLD, log)
        assert not torch.equal(generate(backend.pipe), uncached)
        hits = decided(log)
        assert len(hits) == STEPS and 0 < sum(hits) < STEPS
        backend.disable()
        assert backend.can_run_uncached and backend.effective_threshold() < 0
        assert torch.equal(generate(backend.pipe), uncached)


@pytest.mark.parametrize("version, v2", [("0.3.2", False), ("1.1.0", False), ("1.1.0", True)])
def test_nunchaku_pair_is_applied_as_the_double_cache_and_both_stages_are_logged(tiny, uncached, version, v2):
    """A MULTI/SINGLE pair on each transformer the engine caches (V1 on 0.3.2 and 1.x, V2 on 1.x): both
    decisions of every step reach the log, the pair is what nunchaku keeps, and a single threshold after it
    switches the double cache off again."""
    with standin_package(version) as nunchaku:
        from fbcache.backends.nunchaku import NunchakuFBCache
        from fbcache.config import ThresholdPair

        transformer_class = nunchaku.NunchakuFluxTransformer2DModelV2 if v2 else None
        backend = NunchakuFBCache(fresh_pipe(tiny, transformer_class))
        pair = ThresholdPair(0.0, THRESHOLD)
        log = DecisionLog()
        backend.enable(pair, log)
        assert not torch.equal(generate(backend.pipe), uncached)
        steps = log.finish_generation()
        assert backend.effective_threshold() == pair
        backend.disable()
        assert [s.hit for s in steps] == [False] * STEPS, "multi 0: the double-stream decision never hits"
        assert [s.single_hit is not None for s in steps] == [True] * STEPS
        assert 0 < sum(bool(s.single_hit) for s in steps) < STEPS
        assert steps[0].single_diff is None and all(s.single_diff is not None for s in steps[1:])

        log = DecisionLog()
        backend.enable(THRESHOLD, log)
        generate(backend.pipe)
        assert backend.effective_threshold() == THRESHOLD
        assert [s.single_hit for s in log.finish_generation()] == [None] * STEPS, "a single threshold: one stage"
        backend.disable()


@pytest.mark.parametrize("version, release", [("1.1.0", (1, 1, 0)), ("1.1.0+torch2.7", (1, 1, 0)),
                                              ("1.2.0dev", (1, 2, 0)), ("0.3.2", (0, 3, 2)), ("dev", None)])
def test_release_is_read_from_version_strings(version, release):
    assert parse_release(version) == release


@pytest.mark.parametrize("version, why", [("0.2.0", "keeps the first threshold"), ("0.3.0", "#437"),
                                          ("0.3.1", "#437"), ("", "cannot read")])
def test_old_releases_are_refused_with_the_fix(version, why):
    message = unsupported_release(version)
    assert message is not None and why in message and "\n" not in message
    if version:
        assert message.startswith(f"nunchaku {version} is not supported") and "upgrade to nunchaku >= 0.3.2" in message


@pytest.mark.parametrize("version", ["0.3.2", "1.0.0", "1.1.0+torch2.7", "1.2.0dev"])
def test_supported_releases_pass(version):
    assert unsupported_release(version) is None
