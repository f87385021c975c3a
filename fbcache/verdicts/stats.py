"""The statistics behind every time verdict: noise on a log scale, the gate a change must clear, and
the paired speedup's interval.

**Why a log scale.** A slowdown multiplies a time, so a 2% change is the same step for a 0.6 s and a
5.3 s benchmark, and a band on the log scale never reaches a negative time.

**Noise, two sources.** *Within-run*: the scatter of one run's rounds around their mean, pooled over
runs (many degrees of freedom even with 3 rounds a run). The median of ``r`` independent normal
rounds has variance about ``(pi/2) sigma_w^2 / r`` (exact as ``r`` grows; for ``r = 3`` the true
factor is 1.35, so this errs on the noisy side). *Run to run*: the scatter of each run's median
around the centre of its segment (runs between two change points); usually larger, because the
machine's state changes between nights and moves every benchmark.

**Moderation.** With 3 earlier runs a benchmark's own run-to-run estimate has 2 degrees of freedom:
alone it would need a gate of about 40 standard deviations to keep false alarms rare. So it is
combined, as limma moderates gene-wise variances, with a prior worth ``PRIOR_DF`` degrees of
freedom: the median over the compare's benchmarks of (run-to-run variance / within-run prediction),
times this benchmark's *own* within-run noise. The prior is a ratio, not an absolute excess, so a
launch-bound row that moves 4% from run to run does not widen a quiet GPU-bound row's gate
(``docs/verdicts.md`` shows the measured case).

**The gate (minimum detectable effect).** A change counts when it exceeds
``max(floor, k * sigma * sqrt(1 + (pi/2)/n))`` on the log scale: ``sigma`` the moderated run-to-run
noise, ``n`` the runs of the baseline segment (the uncertainty of the baseline's median) and ``k``
the one-sided Student-t critical value (scipy) for ``alpha / tests`` (Bonferroni: the chance that
*any* test of one compare alerts on unchanged code stays below ``alpha``, with no independence
assumed, and each test gets a fixed gate that can be printed as its MDE). The ``floor`` (1%) keeps a
benchmark measured at 0.1% noise from alerting on changes nobody acts on; above ``max_mde`` (25%) no
useful verdict is possible and the benchmark is "too noisy to judge", with its measured noise.

**Paired speedup.** Dividing two medians measured minutes apart lets drift read as a speedup change.
Interleaved rounds time round j of the uncached baseline next to round j of each threshold, so drift
cancels in their ratio. The median ratio gets a distribution-free interval from order statistics:
``[x_(j), x_(n+1-j)]`` covers the true median with probability ``1 - 2 P(Bin(n, 1/2) <= j - 1)``;
the narrowest ``j`` reaching the coverage is chosen (no resampling: the same history always gives
the same interval).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scipy.stats import binom
from scipy.stats import t as student_t

#: variance of the median of r independent normal rounds is about (pi/2) sigma^2 / r (exact as r grows;
#: for r = 3 the true factor is 1.35, so this errs on the noisy side)
MEDIAN_VARIANCE_FACTOR = math.pi / 2


def logs(values: Iterable[float]) -> list[float]:
    """Natural logs of positive values; anything else (None, 0, NaN) is dropped."""
    return [math.log(v) for v in values if v is not None and v > 0 and math.isfinite(v)]


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


@dataclass(frozen=True)
class Dispersion:
    """A sum of squared deviations and its degrees of freedom: variances that pool by adding."""

    ss: float = 0.0
    df: int = 0

    @property
    def variance(self) -> float | None:
        return self.ss / self.df if self.df > 0 else None

    @property
    def sigma(self) -> float | None:
        variance = self.variance
        return None if variance is None else math.sqrt(variance)

    def __add__(self, other: Dispersion) -> Dispersion:
        return Dispersion(self.ss + other.ss, self.df + other.df)


def dispersion(groups: Iterable[Sequence[float]]) -> Dispersion:
    """Deviations of each group's values from the group's own mean, pooled (groups of one add nothing)."""
    ss, df = 0.0, 0
    for group in groups:
        if len(group) < 2:
            continue
        centre = mean(group)
        ss += sum((x - centre) ** 2 for x in group)
        df += len(group) - 1
    return Dispersion(ss, df)


def median_variance(within: Dispersion, rounds: int) -> float:
    """How much a run's median of ``rounds`` rounds varies by within-run noise alone (log scale)."""
    variance = within.variance
    if variance is None or rounds < 1:
        return 0.0
    return MEDIAN_VARIANCE_FACTOR * variance / rounds


@dataclass(frozen=True)
class SeriesNoise:
    """One benchmark's evidence: run-to-run residuals around segment centres, and within-run noise."""

    residuals: Dispersion
    median_variance: float


#: degrees of freedom the pooled prior is worth in each benchmark's moderated noise estimate
PRIOR_DF = 4


def _median_chi2_factor(df: float) -> float:
    """Median of chi2(df)/df (Wilson-Hilferty): turns a median of variance estimates into a mean."""
    return (1 - 2 / (9 * df)) ** 3 if df > 0 else 1.0


@dataclass(frozen=True)
class PooledNoise:
    """The prior every benchmark's run-to-run noise is moderated with."""

    #: typical run-to-run variance over what within-run noise predicts (>= 1)
    ratio: float
    #: degrees of freedom the prior is worth (0: no run-to-run evidence yet)
    prior_df: int

    def prior(self, median_var: float) -> float:
        return self.ratio * median_var

    def moderated(self, item: SeriesNoise) -> tuple[float, int]:
        """This benchmark's run-to-run standard deviation of log medians, and its degrees of freedom."""
        # without within-run noise (one round a run) the ratio has nothing to scale: own residuals only
        prior_df = self.prior_df if item.median_variance > 0 else 0
        df = prior_df + item.residuals.df
        if df == 0:
            return math.sqrt(item.median_variance), 0
        variance = (prior_df * self.prior(item.median_variance) + item.residuals.ss) / df
        return math.sqrt(max(variance, item.median_variance)), df


def pool(series: Iterable[SeriesNoise], prior_df: int = PRIOR_DF) -> PooledNoise:
    """A robust prior from every benchmark with run-to-run residuals (see the module docstring)."""
    ratios, dfs = [], []
    for item in series:
        variance = item.residuals.variance
        if variance is None:
            continue
        dfs.append(item.residuals.df)
        if item.median_variance > 0:
            ratios.append(variance / item.median_variance)
    if not dfs:
        return PooledNoise(1.0, 0)
    correction = _median_chi2_factor(statistics.median(dfs))
    ratio = max(1.0, statistics.median(ratios) / correction) if ratios else 1.0
    return PooledNoise(ratio, min(prior_df, sum(dfs)))


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
    return float(binom.cdf(k, n, 0.5))


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
