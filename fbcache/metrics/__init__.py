"""The image-metric registry: one file per metric, one line per metric in ``BUILTIN``.

A metric module defines ``METRIC`` (an :class:`~fbcache.metrics.base.ImageMetric`). The record,
the results table, ``fbcache compare``, bounds, ``calibrate`` and the report all iterate over
:func:`all_metrics`, so a new metric is one new file plus one line here (or :func:`register`).
"""

from __future__ import annotations

import importlib

from fbcache.metrics.base import ImageMetric

BUILTIN = (
    "fbcache.metrics.ssim",
    "fbcache.metrics.psnr",
)

_REGISTRY: dict[str, ImageMetric] = {}
_LOADED: list[bool] = []


def _ensure_builtin() -> None:
    if not _LOADED:
        for module in BUILTIN:
            metric = importlib.import_module(module).METRIC
            _REGISTRY.setdefault(metric.name, metric)
        _LOADED.append(True)


def register(metric: ImageMetric) -> ImageMetric:
    _ensure_builtin()
    _REGISTRY[metric.name] = metric
    return metric


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def all_metrics() -> list[ImageMetric]:
    _ensure_builtin()
    return list(_REGISTRY.values())


def get(name: str) -> ImageMetric:
    _ensure_builtin()
    return _REGISTRY[name]


__all__ = ["ImageMetric", "all_metrics", "get", "register", "unregister"]
