"""SSIM/PSNR wrappers: identical images give SSIM 1 and infinite PSNR; perturbations lower both. And what a
metric declares: its calibrate margin (absolute or relative), opt-in or default, which metrics records hold."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fbcache.errors import ConfigError
from fbcache.metrics import ImageMetric, all_finite, all_metrics, measured, selected, to_uint8_images
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


# ------------------------------------------------------------------- what a metric declares (fbcache.metrics)

def _declared(**rules) -> ImageMetric:
    return ImageMetric(name="probe", title="Probe", compute=lambda a, b: 0.0, tolerance=0.1, calibrate_margin=0.1,
                       **rules)


def test_a_relative_margin_where_higher_is_better_takes_that_fraction_off():
    assert _declared(relative_margin=True, value_range=(0.0, 1.0)).bound_from(0.9, 0.1) == pytest.approx(0.81)


def test_a_relative_margin_where_higher_is_better_must_stay_below_1():
    with pytest.raises(ConfigError, match=r"accepted: a number in \[0, 1\)"):
        _declared(relative_margin=True).margin("--margin", "1")


def test_a_relative_margin_where_lower_is_better_may_exceed_1():
    assert _declared(relative_margin=True, higher_is_better=False).margin("--margin", "2") == 2.0


def test_an_absolute_bound_stays_within_the_metrics_values():
    assert _declared(value_range=(0.0, 1.0)).bound_from(0.05, 0.1) == 0.0


def test_a_run_that_names_no_metric_computes_the_default_ones_only():
    assert [m.name for m in selected()] == [m.name for m in all_metrics() if m.default]


def test_the_metrics_of_records_are_the_ones_some_record_holds_in_registry_order():
    assert [m.name for m in measured([{"psnr": 1.0}, {"ssim": 0.5}])] == ["ssim", "psnr"]
