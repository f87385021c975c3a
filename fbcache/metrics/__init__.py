"""The image-metric registry: one file per metric, one line per metric in ``BUILTIN``.

A metric module defines ``METRIC`` (an :class:`~fbcache.metrics.base.ImageMetric`). The record,
the results table, ``fbcache compare``, bounds, ``calibrate`` and the report all iterate over
:func:`all_metrics`, so a new metric is one new file plus one line here (or :func:`register`).
"""

from __future__ import annotations

from fbcache.metrics.base import ImageMetric
from fbcache.registry import Registry

BUILTIN = (
    "fbcache.metrics.ssim",
    "fbcache.metrics.psnr",
)

_REGISTRY: Registry[ImageMetric] = Registry(BUILTIN, "METRIC")
register = _REGISTRY.register
unregister = _REGISTRY.unregister
get = _REGISTRY.get
all_metrics = _REGISTRY.all


__all__ = ["ImageMetric", "all_metrics", "get", "register", "unregister"]
