"""SSIM/PSNR wrappers: identical images give SSIM 1 and infinite PSNR; perturbations lower both."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fbcache.metrics import all_finite, to_uint8_images
from fbcache.metrics.psnr import psnr
from fbcache.metrics.ssim import SSIM_SETTINGS, ssim


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(48, 48, 3), dtype=np.uint8)


def test_identical_images():
    a = image()
    assert ssim(a, a.copy()) == 1.0
    assert psnr(a, a.copy()) == math.inf


def test_known_perturbation_lowers_both():
    a = image()
    b = a.copy()
    b[10:20, 10:20] = 255 - b[10:20, 10:20]
    assert ssim(a, b) < 1.0
    assert 0 < psnr(a, b) < 30
    noise = np.random.default_rng(1).integers(-20, 20, a.shape)
    weak, strong = (np.clip(a.astype(int) + k * noise, 0, 255).astype(np.uint8) for k in (1, 3))
    assert 1.0 > ssim(a, weak) > ssim(a, strong)


def test_settings_are_the_documented_ones():
    assert SSIM_SETTINGS == dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
                                 channel_axis=-1)


@pytest.mark.parametrize("b", [np.zeros((48, 48, 3), np.float32), np.zeros((40, 48, 3), np.uint8),
                               np.zeros((48, 48), np.uint8)])
def test_rejects_wrong_images(b):
    with pytest.raises(ValueError):
        ssim(image() if b.ndim == 3 else image()[..., 0], b)


def test_pipeline_output_conversion():
    out = torch.tensor([[[[0.0, 1.0]], [[0.5, 1.2]], [[-0.1, 0.2]]]])  # (1, 3, 1, 2)
    converted = to_uint8_images(out)
    assert converted.shape == (1, 1, 2, 3) and converted.dtype == np.uint8
    assert converted[0, 0, 0].tolist() == [0, 128, 0] and converted[0, 0, 1].tolist() == [255, 255, 51]
    assert all_finite(out) and not all_finite(out * float("nan"))
