"""Image metrics: what one is, the images it compares, and the registry (one file per metric, one line
per metric in ``BUILTIN``).

An :class:`ImageMetric` is one comparison of a cached image with the uncached one, and its rules. It
declares everything the harness does with it: the packages it needs (checked before any model is
built), how to compute it (outside any timed region), which direction is better, the change that
``fbcache compare`` tolerates, the floor key a bounds profile uses, the margin ``calibrate`` leaves
beyond a measured value (a difference, or a fraction of it: ``relative_margin``), the values it can
take, and whether it is the quality axis of the report's trade-off plot (``primary``). Nothing outside
the metric's own file names it.

A run computes the metrics ``--fbcache-metrics`` names, by default those marked ``default``; a metric
that needs more than a package (weights on disk) is opt-in, declares its own options and its
``preflight``, and may ``prepare`` its computation once per session (weights loaded, on the run's
device). Tables and compare show the metrics a run measured (:func:`measured`).

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
from fbcache.config import HarnessConfig, OptionSpec, parse_entries, parse_margin
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
    #: computed by a run that does not name its metrics (``--fbcache-metrics``); False: opt-in
    default: bool = True
    #: ``calibrate_margin`` is a fraction of the measured value: the bound is measured x (1 + margin) where
    #: lower is better, measured x (1 - margin) where higher is; False: measured plus (minus) the margin
    relative_margin: bool = False
    #: its own options (``--fbcache-*``, ``FBCACHE_*``, ini keys), read with ``config.option(spec)``
    options: tuple[OptionSpec, ...] = ()
    #: ``preflight(config)``: what the run's environment must hold beyond ``requires`` (weights on disk),
    #: raising ConfigError before any model is built; called only when the run computes the metric
    preflight: Callable[[HarnessConfig], None] | None = field(default=None, compare=False)
    #: ``prepare(config)`` -> the run's ``compute``, made once per session, after the clock (weights loaded,
    #: on ``config.device``); None: ``compute`` itself
    prepare: Callable[[HarnessConfig], Callable[[np.ndarray, np.ndarray], float]] | None = \
        field(default=None, compare=False)

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

    def margin(self, option: str, raw: str) -> float:
        """A calibrate margin from user input: as :meth:`amount`, or a relative one (below 1 where higher is
        better: a bound at or below zero would check nothing)."""
        if not self.relative_margin:
            return self.amount(option, raw)
        return parse_margin(option, raw, 1.0 if self.higher_is_better else math.inf)

    def bound_from(self, measured: float, margin: float) -> float:
        """The bound ``calibrate`` writes: ``margin`` beyond ``measured`` in the worse direction, within the
        metric's values."""
        low, high = self.value_range
        if self.relative_margin:
            bound = measured * (1 - margin if self.higher_is_better else 1 + margin)
        else:
            bound = measured - margin if self.higher_is_better else measured + margin
        return min(max(bound, low), high)

    def margin_text(self, margin: float) -> str:
        """How a margin reads beside a measured value: '0.02' (a difference) or 'x 1.15' (relative)."""
        if not self.relative_margin:
            return f"{margin:g}"
        return f"x {1 - margin if self.higher_is_better else 1 + margin:g}"

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
    "fbcache.metrics.lpips",
)

_REGISTRY: Registry[ImageMetric] = Registry(BUILTIN, "METRIC")
register = _REGISTRY.register
unregister = _REGISTRY.unregister
get = _REGISTRY.get
names = _REGISTRY.names
all_metrics = _REGISTRY.all


def selected(chosen: Iterable[str] = ()) -> tuple[ImageMetric, ...]:
    """The metrics a run computes: those named (registry order), or with none named those marked ``default``."""
    wanted = set(chosen)
    return tuple(m for m in all_metrics() if (m.name in wanted if wanted else m.default))


def parse_selection(option: str, raw: str) -> tuple[str, ...]:
    """'NAME, OTHER' -> ('NAME', 'OTHER'): registered metric names, in registry order; '' -> () (the defaults)."""
    accepted = f"names from {', '.join(names())}, separated by commas"
    given = [name.strip().lower() for name in str(raw).split(",") if name.strip()]
    if not given:
        return ()
    for name in given:
        if name not in names():
            raise ConfigError(option, name, accepted, "not a registered image metric")
        if given.count(name) > 1:
            raise ConfigError(option, raw, accepted, f"{name} given twice")
    return tuple(m.name for m in selected(given))


def measured(values: Iterable[Mapping[str, object]]) -> tuple[ImageMetric, ...]:
    """The registered metrics that some record's ``metrics`` holds: the columns of a table of those records."""
    present = {name for mapping in values for name in mapping}
    return tuple(m for m in all_metrics() if m.name in present)


def primary() -> ImageMetric | None:
    """The metric the report plots speed against: the first registered one marked ``primary``, else the first."""
    found = all_metrics()
    return next((m for m in found if m.primary), found[0] if found else None)


def parse_amounts(option: str, raw: str, margins: bool = False) -> dict[str, float]:
    """A per-metric option's value, 'a=0.02,b=1' -> {'a': 0.02, 'b': 1.0}: registered metrics, each
    amount within the metric's span (a tolerance or margin as wide as its values would check nothing);
    ``margins``: calibrate margins, relative where the metric's are (:meth:`ImageMetric.margin`)."""
    def parse(opt: str, name: str, value: str) -> float:
        return get(name).margin(opt, value) if margins else get(name).amount(opt, value)

    return parse_entries(option, raw, names(), parse, "METRIC")


def amounts(option: str, entries: Iterable[str], own: Mapping[str, tuple[str, str | None]],
            margins: bool = False, parse: Callable[[ImageMetric, str, str], float] | None = None) -> dict[str, float]:
    """Per metric, an amount given as ``option NAME=X`` (``entries``, each possibly comma-separated) or with the
    metric's own spelling (``own``: metric name -> (that option, its raw value or None)). Given both ways for one
    metric, the two must agree. ``parse(metric, option, raw)`` reads one value (default: a tolerance, or with
    ``margins`` a calibrate margin, as :func:`parse_amounts`)."""
    def default(metric: ImageMetric, spelling: str, raw: str) -> float:
        return metric.margin(spelling, raw) if margins else metric.amount(spelling, raw)

    read = parse or default
    found = parse_entries(option, ",".join(entries), names(), lambda opt, name, raw: read(get(name), opt, raw),
                          "METRIC")
    for name, (spelling, raw) in own.items():
        if raw is None or raw == "":
            continue
        metric = get(name)
        value = read(metric, spelling, str(raw))
        if found.get(name, value) != value:
            raise ConfigError(spelling, raw, f"{found[name]:g}, as {option} {name}={found[name]:g} says, or only one "
                              "of the two", f"{option} sets {name} too")
        found[name] = value
    return found


__all__ = ["ImageMetric", "all_finite", "all_metrics", "amounts", "check_pair", "get", "measured", "names",
           "parse_amounts", "parse_selection", "primary", "register", "selected", "to_uint8_images", "unregister"]
