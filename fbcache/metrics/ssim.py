"""SSIM against the uncached image, with the original paper's settings.

- ``gaussian_weights=True, sigma=1.5``: the 11x11 Gaussian window of Wang et al. (2004), which
  is what published SSIM numbers (and most image-quality papers) use;
- ``use_sample_covariance=False``: population covariance, as in the original paper; the
  scikit-image default (sample covariance) gives slightly different numbers;
- ``data_range=255``: the images are uint8, so the dynamic range is fixed rather than guessed
  from the image content (a guessed range would make SSIM depend on the brightest pixel);
- ``channel_axis=-1``: SSIM per RGB channel, averaged, on (H, W, 3) arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fbcache.metrics import ImageMetric, check_pair

SSIM_SETTINGS: dict[str, Any] = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
                                     channel_axis=-1)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two RGB uint8 images; 1.0 means identical."""
    from skimage.metrics import structural_similarity

    check_pair(a, b)
    return float(structural_similarity(a, b, **SSIM_SETTINGS))


# SSIM of two images is at most 1 (identical); a floor below 0 holds for any image worth keeping
METRIC = ImageMetric(name="ssim", title="SSIM", compute=ssim, tolerance=0.01, calibrate_margin=0.02,
                     value_range=(0.0, 1.0), requires={"skimage": "pip install scikit-image"}, primary=True)
