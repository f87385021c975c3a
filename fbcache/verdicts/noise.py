"""How noisy a benchmark is, measured on a log scale: within one run, and from run to run.

Why log: a slowdown multiplies a time, so a 2% change is the same step for a 0.6 s and a 5.3 s
benchmark, and a log-scale band can never reach a negative time (the old linear MAD band did).

Two sources, two estimates, one model:

- **within-run**: the scatter of one run's rounds around their mean, pooled over runs (many
  degrees of freedom even with 3 rounds a run). It predicts how much the *median* of ``r`` rounds
  moves by chance: ``sigma_w * sqrt(pi / 2 / r)`` if the rounds were independent.
- **run to run**: the scatter of each run's median around the centre of its segment (runs between
  two change points). It is usually larger than the within-run prediction: the machine's state
  changes between nights (clocks, temperature, other jobs), and that moves every benchmark.

With 3 earlier runs a benchmark's own run-to-run estimate has 2 degrees of freedom, so on its own
it would need a gate of 40 standard deviations to keep false alarms rare. Its estimate is therefore
*moderated* (as limma moderates gene-wise variances): combined with a prior built from all
benchmarks of the compare, worth ``PRIOR_DF`` degrees of freedom. The prior is scale-free: the
typical ratio of run-to-run variance to what within-run noise predicts (a median over benchmarks,
so one wild benchmark does not widen everybody's gate), times the benchmark's *own* within-run
noise. A benchmark noisier than the others soon outweighs the prior with its own residuals; a
quiet one is not judged on 2 degrees of freedom.

Why a ratio and not an absolute excess: on the H200 runs of 2026-11-28 (docs/results/h200-2026-11-28/
noise) the GPU-bound uncached row moved 0.13% from run to run while the launch-bound 0.8 row moved
4% (the other GPU's jobs competed for the host). An excess pooled in absolute terms carried the 4%
into the uncached row's prior (MDE 5.6%, a real +1.3% slowdown missed twice); as a ratio of each
row's own within-run noise the uncached MDE is 1.0% and the slowdown is flagged on both bad runs.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
