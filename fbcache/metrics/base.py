"""What an image metric is: one comparison of a cached image with the uncached one, and its rules.

A metric declares everything the harness does with it: the packages it needs (checked before any
model is built), how to compute it (outside any timed region), which direction is better, the
change that ``fbcache compare`` tolerates, the floor key a bounds profile uses, the margin
``calibrate`` leaves below a measured value, the values it can take, and whether it is the quality
axis of the report's trade-off plot (``primary``). Nothing outside the metric's own file names it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from fbcache.config.options import parse_margin


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
