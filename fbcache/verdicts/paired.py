"""Paired speedup: per round, the uncached time over the cached time of generations timed together.

Dividing two medians measured minutes apart lets any drift of the machine in between read as a
speedup change. With interleaved rounds (plugin/schedule.py) round j of the uncached baseline and
round j of a threshold run next to each other, so a drift hits both and cancels in their ratio.
The median ratio is reported with a distribution-free confidence interval from order statistics
(no resampling, so the same history always gives the same interval).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def paired_ratios(uncached_s: Sequence[float], cached_s: Sequence[float]) -> list[float]:
    """uncached / cached per round, for rounds present and positive on both sides."""
    return [u / c for u, c in zip(uncached_s, cached_s) if u and c and u > 0 and c > 0]


@dataclass(frozen=True)
class MedianInterval:
    median: float
    low: float
    high: float
    #: the interval's actual coverage (order statistics give only certain levels)
    coverage: float


def _binomial_cdf(k: int, n: int) -> float:
    """P(Bin(n, 1/2) <= k)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n


def median_interval(values: Sequence[float], coverage: float = 0.9) -> MedianInterval | None:
    """Median and the narrowest order-statistic interval [x_(j), x_(n+1-j)] covering it at ``coverage``.

    With n values the interval covers the true median with probability 1 - 2 P(Bin(n, 1/2) <= j - 1);
    when even [min, max] falls short (n < 5 at 90%), [min, max] is returned with its real coverage.
    """
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return None
    best = 1
    for j in range(1, n // 2 + 1):
        if 1 - 2 * _binomial_cdf(j - 1, n) >= coverage:
            best = j
    actual = 1 - 2 * _binomial_cdf(best - 1, n) if n > 1 else 0.0
    return MedianInterval(statistics.median(ordered), ordered[best - 1], ordered[n - best], actual)
