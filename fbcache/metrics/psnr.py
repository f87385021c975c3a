"""PSNR against the uncached image, in dB; infinite for identical images (stored as null in JSON)."""

from __future__ import annotations

import math

import numpy as np

from fbcache.metrics import ImageMetric, check_pair


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB; ``math.inf`` for identical images."""
    check_pair(a, b)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


class _PSNR(ImageMetric):
    def from_json(self, raw: object) -> float | None:
        # null is how an infinite PSNR (identical images) is stored
        return math.inf if raw is None else super().from_json(raw)


METRIC = _PSNR(name="psnr", title="PSNR", compute=psnr, tolerance=1.0, calibrate_margin=2.0, decimals=2)
