"""The minimum detectable effect: how large a change must be before it gets a time verdict.

A change counts when it exceeds ``max(floor, k * sigma * sqrt(1 + (pi/2)/n))`` on the log scale,
where ``sigma`` is the benchmark's measured run-to-run noise (noise.py), ``n`` the runs in its
baseline segment (the uncertainty of the baseline's median, which is what the latest run is measured
from) and ``k`` the one-sided Student-t critical value for
``alpha / tests`` (Bonferroni): the chance that *any* of the ``tests`` of one compare alerts on
unchanged code stays below ``alpha``. Bonferroni needs no independence between the tests (a slow
night moves every benchmark together), and it gives each test a fixed gate that can be printed as
the benchmark's MDE, which a step-down procedure such as Holm could not.

The ``floor`` (1%) keeps a benchmark measured at 0.1% noise from alerting on changes nobody
acts on. When the gate exceeds ``max_mde`` (25%), no useful verdict is possible: the benchmark is
"too noisy to judge", and the reason names the measured noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import t as student_t

from fbcache.verdicts.noise import MEDIAN_VARIANCE_FACTOR


@dataclass(frozen=True)
class GateSettings:
    #: family-wise false-alarm probability of one compare (all its tests together)
    alpha: float = 0.01
    #: smallest relative change that ever counts
    floor: float = 0.01
    #: a gate wider than this is no verdict at all: "too noisy to judge"
    max_mde: float = 0.25


@dataclass(frozen=True)
class Gate:
    """The gate of one test: a log-scale threshold, and the measured noise behind it."""

    threshold: float
    sigma: float
    k: float
    df: int
    baseline_runs: int
    too_noisy: str | None = None

    @property
    def mde(self) -> float:
        """The threshold as a relative change (0.021 = 2.1%)."""
        return math.expm1(self.threshold)

    @property
    def usable(self) -> bool:
        return self.too_noisy is None

    def describe(self) -> str:
        return (f"MDE {self.mde:.1%} (run-to-run noise {math.expm1(self.sigma):.2%}, k={self.k:.2f}, "
                f"df={self.df}, {self.baseline_runs} baseline runs)")


def per_test_alpha(alpha: float, tests: int) -> float:
    return alpha / max(1, tests)


def t_quantile(tail: float, df: int) -> float:
    """The one-sided Student-t critical value: P(T > t) = ``tail`` with ``df`` degrees of freedom."""
    return float(student_t.isf(tail, df))


def gate(sigma: float, df: int, baseline_runs: int, tests: int, settings: GateSettings) -> Gate:
    """The gate for one test of a compare with ``tests`` tests in all."""
    k = t_quantile(per_test_alpha(settings.alpha, tests), df) if df >= 1 else math.inf
    spread = k * sigma * math.sqrt(1 + MEDIAN_VARIANCE_FACTOR / max(1, baseline_runs))
    threshold = max(math.log1p(settings.floor), spread)
    too_noisy = None
    if not math.isfinite(threshold) or math.expm1(threshold) > settings.max_mde:
        mde = math.expm1(threshold) if math.isfinite(threshold) else math.inf
        too_noisy = (f"MDE {mde:.0%} exceeds {settings.max_mde:.0%}: run-to-run noise {math.expm1(sigma):.1%} "
                     f"over {df} degrees of freedom, {baseline_runs} baseline runs")
    return Gate(threshold, sigma, k, df, baseline_runs, too_noisy)


def slope_gate(sigma: float, df: int, positions: list[float], tests: int, settings: GateSettings) -> float:
    """The smallest per-run slope (log scale) that a drift test over ``positions`` calls significant."""
    centre = sum(positions) / len(positions)
    sxx = sum((p - centre) ** 2 for p in positions)
    if sxx <= 0 or df < 1:
        return math.inf
    return t_quantile(per_test_alpha(settings.alpha, tests), df) * sigma / math.sqrt(sxx)
