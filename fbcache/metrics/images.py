"""Image similarity against the uncached image: SSIM and PSNR on RGB uint8, outside any timed region.

SSIM settings, and why:

- ``gaussian_weights=True, sigma=1.5``: the 11x11 Gaussian window of Wang et al. (2004), which
  is what published SSIM numbers (and most image-quality papers) use;
- ``use_sample_covariance=False``: population covariance, as in the original paper; the
  scikit-image default (sample covariance) gives slightly different numbers;
- ``data_range=255``: the images are uint8, so the dynamic range is fixed rather than guessed
  from the image content (a guessed range would make SSIM depend on the brightest pixel);
- ``channel_axis=-1``: SSIM per RGB channel, averaged, on (H, W, 3) arrays.
"""

from __future__ import annotations

import math

import numpy as np

SSIM_SETTINGS = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"images must be uint8 RGB, got {a.dtype} and {b.dtype}")
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"images must be (H, W, 3), got {a.shape}")


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two RGB uint8 images; 1.0 means identical."""
    from skimage.metrics import structural_similarity

    _check_pair(a, b)
    return float(structural_similarity(a, b, **SSIM_SETTINGS))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB; ``math.inf`` for identical images."""
    _check_pair(a, b)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def to_uint8_images(images: "object") -> np.ndarray:
    """Pipeline output (N, 3, H, W) floats in [0, 1] -> (N, H, W, 3) uint8, rounding like PIL does."""
    import torch

    assert isinstance(images, torch.Tensor)
    array = images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return (array * 255).round().astype(np.uint8)


def all_finite(images: "object") -> bool:
    import torch

    assert isinstance(images, torch.Tensor)
    return bool(torch.isfinite(images).all())
