"""Pipeline output as comparable images: uint8 RGB arrays, and the NaN check of a broken run."""

from __future__ import annotations

import numpy as np


def check_pair(a: np.ndarray, b: np.ndarray) -> None:
    """Both images RGB uint8 of one shape; a metric of anything else would be meaningless."""
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"images must be uint8 RGB, got {a.dtype} and {b.dtype}")
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"images must be (H, W, 3), got {a.shape}")


def to_uint8_images(images: object) -> np.ndarray:
    """Pipeline output (N, 3, H, W) floats in [0, 1] -> (N, H, W, 3) uint8, rounding like PIL does."""
    import torch

    assert isinstance(images, torch.Tensor)
    array = images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return (array * 255).round().astype(np.uint8)


def all_finite(images: object) -> bool:
    import torch

    assert isinstance(images, torch.Tensor)
    return bool(torch.isfinite(images).all())
