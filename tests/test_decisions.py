"""Hit counting wraps the real diffusers FirstBlockCache decision and records what it compared."""

from __future__ import annotations

import pickle

import pytest
import torch

from fbcache.backends import DecisionLog, ThresholdProbe, summarize
from fbcache.backends.diffusers import DiffusersFBCache
from fbcache.models.tiny import build_tiny_pipeline

STEPS = 10


def test_probe_sees_the_compared_value_both_ways():
    log = DecisionLog()
    probe = ThresholdProbe(0.3, log)
    assert (0.5 > probe) is True  # diffusers: diff > threshold -> compute
    log.note_decision(hit=False)
    assert (0.1 < probe) is True  # nunchaku: diff < threshold -> hit
    log.note_decision(hit=True)
    steps = log.finish_generation()
    assert [(s.step, s.diff, s.hit) for s in steps] == [(0, 0.5, False), (1, 0.1, True)]
    assert probe == 0.3 and pickle.loads(pickle.dumps(probe)) == 0.3
    assert type(pickle.loads(pickle.dumps(probe))) is float


@pytest.fixture(scope="module")
def pipe():
    pipe, _ = build_tiny_pipeline()
    return pipe


def generate(pipe):
    return pipe("a red circle", height=64, width=64, num_inference_steps=STEPS, output_type="pt",
                generator=torch.Generator().manual_seed(0), max_sequence_length=32).images


def run_with_cache(pipe, threshold):
    backend = DiffusersFBCache(pipe)
    log = DecisionLog()
    backend.enable(threshold, log)
    try:
        log.start_generation()
        images = generate(pipe)
        return images, log.finish_generation()
    finally:
        backend.disable()


def test_one_decision_per_step_from_the_real_hook(pipe):
    images, steps = run_with_cache(pipe, 0.5)
    assert len(steps) == STEPS
    assert steps[0].diff is None and not steps[0].hit, "nothing is cached before the first step"
    assert all(s.diff is not None and s.diff > 0 for s in steps[1:])
    assert all(s.hit == (s.diff < 0.5) for s in steps[1:]), "hit exactly when diff is under the threshold"


def test_hits_are_deterministic_and_monotonic(pipe):
    counts = [summarize(run_with_cache(pipe, t)[1])[0] for t in (0.0, 0.3, 0.5, 0.8, 5.0)]
    again = [summarize(run_with_cache(pipe, t)[1])[0] for t in (0.0, 0.3, 0.5, 0.8, 5.0)]
    assert counts == again
    assert counts == sorted(counts)
    assert counts[0] == 0 and counts[-1] == STEPS - 1


def test_disable_removes_every_hook(pipe):
    uncached = generate(pipe)
    run_with_cache(pipe, 5.0)
    assert pipe.transformer._cache_config is None
    assert torch.equal(generate(pipe), uncached), "after disable_cache the pipeline is uncached again"
