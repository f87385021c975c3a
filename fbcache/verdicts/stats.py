"""The statistics behind a time verdict: Mann-Whitney U on raw rounds, and a median +- k*MAD band.

Rounds inside one run are measured seconds apart, so they share the machine's mood of the moment;
runs a day apart do not. Mann-Whitney on raw rounds says "not within-run noise"; the band over the
medians of earlier runs says "not run-to-run noise". fbcache asks for both (see compare.py).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from math import comb
from typing import Sequence

#: scale of the MAD that makes it estimate a normal standard deviation
MAD_TO_SIGMA = 1.4826


def mann_whitney_greater(latest: Sequence[float], baseline: Sequence[float]) -> float:
    """One-sided p-value that ``latest`` tends to be larger than ``baseline`` (exact for small samples)."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(latest, baseline, alternative="greater", method="auto").pvalue)


def smallest_one_sided_p(n_latest: int, n_baseline: int) -> float:
    """The best p-value Mann-Whitney can reach with these sample sizes (complete separation)."""
    return 1.0 / comb(n_latest + n_baseline, n_latest)


def median_absolute_deviation(values: Sequence[float]) -> float:
    center = statistics.median(values)
    return statistics.median(abs(v - center) for v in values)


@dataclass(frozen=True)
class Band:
    """median +- k * 1.4826 * MAD of earlier run medians: where a new run's median is expected."""

    center: float
    half_width: float
    runs: int

    @property
    def low(self) -> float:
        return self.center - self.half_width

    @property
    def high(self) -> float:
        return self.center + self.half_width

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def band(values: Sequence[float], k: float) -> Band:
    return Band(statistics.median(values), k * MAD_TO_SIGMA * median_absolute_deviation(values), len(values))
