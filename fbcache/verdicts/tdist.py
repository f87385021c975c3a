"""Student's t tail probabilities and quantiles for whole degrees of freedom, without scipy.

Pooled run-to-run noise has whole degrees of freedom (runs minus segments), and with only a few
earlier runs the normal distribution would understate how far a t statistic can fall by chance.
The closed forms for integer degrees of freedom (Abramowitz and Stegun 26.7.3/26.7.4) are finite
sums; the quantile is found by bisection, which is plenty for gates computed a few dozen times.
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

#: above this many degrees of freedom the normal distribution is used (difference < 0.2% in the gates)
NORMAL_ABOVE = 2000


def _central_probability(t: float, df: int) -> float:
    """P(|T| < t) for T ~ t(df), t >= 0."""
    theta = math.atan(t / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2 == 1:
        if df == 1:
            return 2 * theta / math.pi
        term, total = 1.0, 1.0
        for j in range(1, (df - 1) // 2):
            term *= cos2 * (2 * j) / (2 * j + 1)
            total += term
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    term, total = 1.0, 1.0
    for j in range(1, df // 2):
        term *= cos2 * (2 * j - 1) / (2 * j)
        total += term
    return math.sin(theta) * total


def t_tail(t: float, df: int) -> float:
    """One-sided tail probability P(T > t) of Student's t with ``df`` (>= 1) degrees of freedom."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df > NORMAL_ABOVE:
        return 1.0 - NormalDist().cdf(t)
    if t < 0:
        return 1.0 - t_tail(-t, df)
    return max(0.0, (1.0 - _central_probability(t, df)) / 2)


@lru_cache(maxsize=4096)
def t_quantile(tail: float, df: int) -> float:
    """The t with P(T > t) = ``tail`` (0 < tail < 0.5): the one-sided critical value."""
    if not 0 < tail < 0.5:
        raise ValueError(f"tail probability must be in (0, 0.5), got {tail}")
    if df > NORMAL_ABOVE:
        return NormalDist().inv_cdf(1 - tail)
    low, high = 0.0, 1.0
    while t_tail(high, df) > tail:
        high *= 2
        if high > 1e12:
            return math.inf
    for _ in range(200):
        middle = (low + high) / 2
        if t_tail(middle, df) > tail:
            low = middle
        else:
            high = middle
        if high - low < 1e-9 * high:
            break
    return high
