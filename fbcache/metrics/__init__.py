"""Image metrics: what one is, the images it compares, and the registry (one file per metric, one line
per metric in ``BUILTIN``).

An :class:`ImageMetric` is one comparison of a cached image with the uncached one, and its rules. It
declares everything the harness does with it: the packages it needs (checked before any model is
built), how to compute it (outside any timed region), which direction is better, the change that
``fbcache compare`` tolerates, the floor key a bounds profile uses, the margin ``calibrate`` leaves
below a measured value, the values it can take, and whether it is the quality axis of the report's
trade-off plot (``primary``). Nothing outside the metric's own file names it.

A metric module defines ``METRIC`` (an :class:`ImageMetric`). Preflight (its packages), the record,
the results table, ``fbcache compare``, bounds, ``calibrate``, their options (``--tolerance NAME=X``,
``--fbcache-calibrate-margin NAME=X``) and the report all iterate over :func:`all_metrics`, so a new
metric is one new file plus one line here (or :func:`register`). Pipeline output becomes comparable
images (uint8 RGB arrays) through :func:`to_uint8_images`; :func:`all_finite` is the NaN check of a
broken run; torch is imported only when they are called.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from fbcache import Registry
from fbcache.config import parse_entries, parse_margin
from fbcache.errors import ConfigError


@dataclass(frozen=True)
class ImageMetric:
    #: the ``extra_info`` key and the name in verdicts and bounds (``min_<name>``)
    name: str
    #: column title in tables and reports
    title: str
    #: ``compute(image, reference)`` on (H, W, 3) uint8 arrays
    compute: Callable[[np.ndarray, np.ndarray], float]
    #: the largest move in the worse direction that ``fbcache compare`` does not call a regression
    tolerance: float
    #: ``calibrate`` writes a floor this far below the measured value
    calibrate_margin: float
    higher_is_better: bool = True
    decimals: int = 4
    #: the values the metric can take, so a bounds profile's floor outside them is refused (inclusive)
    value_range: tuple[float, float] = (0.0, math.inf)
    #: importable module name -> how to install it; checked before any model is built
    requires: Mapping[str, str] = field(default_factory=dict, hash=False)
    #: the quality axis of the report's trade-off plot and the value beside each image of its grid
    #: (the first registered primary metric; with none, the first registered metric)
    primary: bool = False

    @property
    def span(self) -> float:
        """The largest change the metric can show: a tolerance or margin must stay below it."""
        low, high = self.value_range
        return high - low

    @property
    def bound_key(self) -> str:
        return f"min_{self.name}" if self.higher_is_better else f"max_{self.name}"

    def amount(self, option: str, raw: str) -> float:
        """A tolerance or margin of this metric from user input: a number >= 0, below the metric's span."""
        return parse_margin(option, raw, self.span)

    def worse_by(self, now: float, before: float) -> float:
        """How much worse ``now`` is than ``before`` (negative: better)."""
        if math.isinf(now) and math.isinf(before) and (now > 0) == (before > 0):
            return 0.0
        return before - now if self.higher_is_better else now - before

    def breaks(self, value: float, bound: float) -> bool:
        return value < bound if self.higher_is_better else value > bound

    def format(self, value: float | None) -> str:
        if value is None:
            return "—"
        if math.isinf(value):
            return "inf"
        return f"{value:.{self.decimals}f}"

    def to_json(self, value: float | None) -> float | None:
        """JSON has no infinity: an infinite value (identical images) is stored as null."""
        return None if value is None or math.isinf(value) else float(value)

    def from_json(self, raw: object) -> float | None:
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise TypeError(f"{self.name} must be a number, got {raw!r}")
        return float(raw)


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


BUILTIN = (
    "fbcache.metrics.ssim",
    "fbcache.metrics.psnr",
)

_REGISTRY: Registry[ImageMetric] = Registry(BUILTIN, "METRIC")
register = _REGISTRY.register
unregister = _REGISTRY.unregister
get = _REGISTRY.get
names = _REGISTRY.names
all_metrics = _REGISTRY.all


def primary() -> ImageMetric | None:
    """The metric the report plots speed against: the first registered one marked ``primary``, else the first."""
    found = all_metrics()
    return next((m for m in found if m.primary), found[0] if found else None)


def parse_amounts(option: str, raw: str) -> dict[str, float]:
    """A per-metric option's value, 'a=0.02,b=1' -> {'a': 0.02, 'b': 1.0}: registered metrics, each
    amount within the metric's span (a tolerance or margin as wide as its values would check nothing)."""
    return parse_entries(option, raw, names(), lambda opt, name, value: get(name).amount(opt, value), "METRIC")


def amounts(option: str, entries: Iterable[str], own: Mapping[str, tuple[str, str | None]]) -> dict[str, float]:
    """Per metric, a tolerance or margin given as ``option NAME=X`` (``entries``, each possibly comma-separated)
    or with the metric's own spelling (``own``: metric name -> (that option, its raw value or None)).
    Given both ways for one metric, the two must agree."""
    found = parse_amounts(option, ",".join(entries))
    for name, (spelling, raw) in own.items():
        if raw is None or raw == "":
            continue
        value = get(name).amount(spelling, str(raw))
        if found.get(name, value) != value:
            raise ConfigError(spelling, raw, f"{found[name]:g}, as {option} {name}={found[name]:g} says, or only one "
                              "of the two", f"{option} sets {name} too")
        found[name] = value
    return found


__all__ = ["ImageMetric", "all_finite", "all_metrics", "amounts", "check_pair", "get", "names", "parse_amounts", "primary",
           "register", "to_uint8_images", "unregister"]
