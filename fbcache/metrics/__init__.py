"""The image-metric registry: one file per metric, one line per metric in ``BUILTIN``.

A metric module defines ``METRIC`` (an :class:`~fbcache.metrics.base.ImageMetric`). Preflight (its
packages), the record, the results table, ``fbcache compare``, bounds, ``calibrate``, their options
(``--tolerance NAME=X``, ``--fbcache-calibrate-margin NAME=X``) and the report all iterate over
:func:`all_metrics`, so a new metric is one new file plus one line here (or :func:`register`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from fbcache.config.options import parse_entries
from fbcache.errors import ConfigError
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


__all__ = ["ImageMetric", "all_metrics", "amounts", "get", "names", "parse_amounts", "primary", "register",
           "unregister"]
