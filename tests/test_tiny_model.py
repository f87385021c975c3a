"""The shipped tiny FLUX: it reproduces its reference image, its hit counts, and it really denoises.

The hit counts it must reproduce are those of the recorded default sweep in tests/data (the shipped
weights, 28 steps, default prompt, seed 0; an H100 sweep of the same workload recorded the same hits),
and every step's decision must follow the cache's rule from the difference it compared.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fbcache.backends import DecisionLog, summarize
from fbcache.backends.diffusers import DiffusersFBCache
from fbcache.config import DEFAULT_PROMPT, SEED_THRESHOLDS
from fbcache.history.storage import load_runs
from fbcache.metrics import to_uint8_images
from fbcache.models.tiny import TINY_WEIGHTS, build_tiny_pipeline
from tools.train_tiny.train import flow_matching_loss

REFERENCE = Path(__file__).parent / "data" / "tiny-reference.png"
#: a recorded default sweep of the shipped weights (28 steps, default prompt, seed 0, all default thresholds)
RECORDED_SWEEP = Path(__file__).parent / "data" / "tiny-cpu-2026-11-25" / "history"
#: tolerance against the stored image: float results may differ slightly between CPU instruction sets
MEAN_ABS_TOLERANCE, MAX_ABS_TOLERANCE = 1.0, 16
#: held-out flow-matching loss (32 samples, 8 fixed sigmas): trained measured 0.208, untrained 1.651
TRAINED_LOSS_BOUND = 0.25


@pytest.fixture(scope="module")
def pipe():
    pipe, _ = build_tiny_pipeline(weights=TINY_WEIGHTS)
    return pipe


def generate(pipe) -> torch.Tensor:
    return pipe(DEFAULT_PROMPT, height=64, width=64, num_inference_steps=28, guidance_scale=3.5,
                generator=torch.Generator().manual_seed(0), output_type="pt", max_sequence_length=32).images


def test_shipped_weights_fit_the_size_budget():
    assert TINY_WEIGHTS.stat().st_size <= 25 * 1000 * 1000
    assert TINY_WEIGHTS.with_suffix(".json").is_file(), "the training record ships next to the weights"


def test_reproduces_the_stored_reference_image(pipe):
    image = to_uint8_images(generate(pipe))[0].astype(int)
    reference = np.asarray(Image.open(REFERENCE).convert("RGB")).astype(int)
    difference = np.abs(image - reference)
    assert difference.mean() <= MEAN_ABS_TOLERANCE and difference.max() <= MAX_ABS_TOLERANCE


def recorded_hits() -> dict[float, int]:
    """Hits per threshold of the recorded sweep, whose workload must be the one generate() runs."""
    [run], skipped = load_runs(RECORDED_SWEEP)
    assert not skipped
    prompt = hashlib.sha256(DEFAULT_PROMPT.encode()).hexdigest()[:8]
    assert run.fingerprint["workload"] == f"28 steps, 64x64, seed 0, prompt {prompt}"
    return {r.threshold: r.hits for r in run.records.values() if r.threshold is not None and r.hits is not None}


def test_hits_at_the_default_thresholds_equal_the_recorded_sweep(pipe):
    expected = recorded_hits()
    assert tuple(expected) == SEED_THRESHOLDS
    backend = DiffusersFBCache(pipe)
    measured = {}
    for threshold in SEED_THRESHOLDS:
        log = DecisionLog()
        backend.enable(threshold, log)
        try:
            log.start_generation()
            generate(pipe)
            steps = log.finish_generation()
        finally:
            backend.disable()
        # diffusers' rule: the first step computes; a later one is a hit when its difference is <= the threshold
        assert [s.hit for s in steps] == [s.diff is not None and s.diff <= threshold for s in steps], threshold
        measured[threshold] = summarize(steps)[0]
    assert measured == expected


def test_trained_model_denoises_far_better_than_untrained(pipe):
    trained = flow_matching_loss(pipe, 32, 0)
    untrained = flow_matching_loss(build_tiny_pipeline()[0], 32, 0)
    assert trained < TRAINED_LOSS_BOUND
    assert trained < untrained / 5
