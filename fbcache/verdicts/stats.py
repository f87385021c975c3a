"""The statistics behind every time verdict: noise on a log scale, the gate a change must clear, and
the paired speedup's interval.

**Why a log scale.** A slowdown multiplies a time, so one relative change is the same step for a short and a
long benchmark, and a band on the log scale never reaches a negative time.

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
launch-bound row that moves a lot from run to run does not widen a quiet GPU-bound row's gate
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


**Segments.** Segments of one benchmark's history: where its level changed, and what each run is judged against.

The choice: an online, test-based segmenter (a sequential change-point detector), not an offline
penalised fit. Runs are taken oldest first, and each is judged against its **reference segment**
(the runs since the last change or acceptance that were not part of a regression) with the very
gate that judges the latest run. So the verdict shown for a past run is the verdict it got that
night, history never reshuffles itself when a new run arrives, and the latest run's verdict is
the last step of the same walk.

- **within the gate**: the run joins the reference, one run late: if the next run is also high and
  the two together are significantly worse (a pair test), both are a regression since the first.
  A step just under the gate thus shows on its second run, and never leaks into the reference.
- **worse beyond the gate**: a regression *episode* opens ("regressed since run N"). Its runs never
  enter the reference, so every later run is still measured from the clean level (a persistent
  regression stays visible) and the reference's noise is not widened by it.
- **while an episode is open**, a run inside the reference's gate is still part of the episode
  unless it is clearly back: significantly below the episode's level (the regression was fixed),
  or the episode with this run is no longer significantly above the reference (it was a fluke;
  its runs join the reference).
- **better beyond the gate**: an improvement episode; a second run confirms it and it becomes the
  new reference, so losing the improvement later is a regression.
- **accepted** (``fbcache accept RUN``): the reference restarts at the accepted run.
- **slow drift**: an ordinary-least-squares slope over the reference segment, tested with the same
  noise and false-alarm budget; a drift that is significant and adds up to more than the floor is
  a regression even when no single step is.

Values are logs. ``worse`` is +1 when larger is worse (times), -1 when smaller is
worse (speedups).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

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


#: runs in the reference before a drift can be tested
DRIFT_MIN_RUNS = 5
#: runs an improvement needs before it becomes the new reference
CONFIRM_IMPROVEMENT = 2


@dataclass(frozen=True)
class Point:
    """One run's value of one series: ``index`` is the run's position in the history."""

    index: int
    value: float


@dataclass(frozen=True)
class Judgement:
    status: str  # ok | regression | improvement | not judged | too noisy to judge | accepted
    detail: str
    #: relative change of this run against the reference centre (0.05 = 5% larger)
    effect: float | None = None
    gate: Gate | None = None
    #: index of the first run of the open regression (or drift) this run belongs to
    since: int | None = None
    reference_centre: float | None = None
    #: "not judged" for want of history: how many more runs before this series is judged
    runs_needed: int | None = None
    #: runs of the open regression that were each beyond their gate, this one included (a confirmed step: 2 or more)
    beyond_runs: int = 0


@dataclass
class Tracker:
    """The state of one series while its history is walked, oldest run first."""

    worse: int
    settings: GateSettings = field(default_factory=GateSettings)
    #: reference runs used for the centre (the most recent ones)
    window: int = 20
    closed: list[list[float]] = field(default_factory=list)
    reference: list[Point] = field(default_factory=list)
    episode: list[Point] = field(default_factory=list)
    direction: int = 0
    seen: int = 0
    #: the last run judged ok: it joins the reference only once the next run did not continue a step from it
    pending: Point | None = None
    #: degrees of freedom its run-to-run noise needs before a verdict; below, every run is "too noisy to judge"
    #: and joins the reference (a series of one value a run, whose noise comes from its history alone, needs many)
    min_df: int = 1
    #: the runs judged beyond the gate on the worse side
    beyond: set[int] = field(default_factory=set)

    # ---------------------------------------------------------------- evidence
    def residuals(self) -> Dispersion:
        """Run-to-run scatter around each stable segment's mean (the noise estimate).

        Episodes are left out: a regression that is still moving (a drift, a fix half-landed) is not
        noise, and counting it would widen the gate until the regression is "too noisy" to see.
        """
        return dispersion([*self.closed, [p.value for p in self.reference]])

    def reference_values(self) -> list[float]:
        return [p.value for p in self.reference[-self.window:]]

    # ---------------------------------------------------------------- transitions
    def restart(self, point: Point) -> None:
        """A new reference segment begins at ``point`` (acceptance)."""
        self._fold_pending()
        if self.reference:
            self.closed.append([p.value for p in self.reference])
        self.reference, self.episode, self.direction = [point], [], 0

    def _close_episode(self, merge: bool) -> None:
        """End the episode: a fluke's runs join the reference; a real, ended change is dropped."""
        if merge:
            self.reference.extend(self.episode)
            self.reference.sort(key=lambda p: p.index)
        self.episode, self.direction = [], 0

    def _open_episode(self, point: Point, direction: int) -> None:
        self._close_episode(merge=False)
        self.episode, self.direction = [point], direction

    # ---------------------------------------------------------------- one run
    def judge(self, point: Point, sigma: float, df: int, tests: int, min_history: int,
              accepted: str | None = None) -> Judgement:
        """Judge one run (the next in time) and fold it into the state."""
        earlier, self.seen = self.seen, self.seen + 1
        if accepted is not None:
            self.restart(point)
            return Judgement("accepted", f"accepted: a new baseline segment starts here ({accepted})")
        needed = max(1, min_history - earlier)
        if not self.reference:
            self.reference.append(point)
            return Judgement("not judged", f"the first run of this benchmark; judged after {needed} more run(s), "
                             f"once {min_history} earlier runs measure its run-to-run noise", runs_needed=needed)
        values = self.reference_values()
        centre = statistics.median(values)
        effect = math.expm1(point.value - centre)
        if earlier < min_history or df < 1:
            self._fold_pending()
            self.reference.append(point)
            if earlier >= min_history:
                return Judgement("not judged", f"{effect:+.1%}; no degrees of freedom to measure noise with",
                                 effect, reference_centre=centre)
            return Judgement("not judged", f"{effect:+.1%}; {earlier} earlier runs of the {min_history} that "
                             f"measure run-to-run noise: judged after {needed} more run(s)", effect,
                             reference_centre=centre, runs_needed=needed)
        if df < self.min_df and not self.episode:
            self._fold_pending()
            self.reference.append(point)
            return Judgement("too noisy to judge", f"{effect:+.1%}; one value a run: its run-to-run noise is measured "
                             f"over {df} degrees of freedom so far and a verdict needs {self.min_df}: judged after "
                             f"{self.min_df - df} more run(s)", effect,
                             reference_centre=centre)
        g = gate(sigma, df, len(values), tests, self.settings)
        if not g.usable:
            if self.episode:
                self.episode.append(point)
            else:
                self._fold_pending()
                self.pending = point
            return Judgement("too noisy to judge", f"{effect:+.1%}; {g.too_noisy}", effect, g, reference_centre=centre)
        badness = self.worse * (point.value - centre)
        if badness > g.threshold:
            return self._worse(point, effect, g, centre, len(values))
        if badness < -g.threshold:
            self._fold_pending()
            return self._better(point, effect, g, centre)
        if self.episode:
            return self._inside_with_episode(point, effect, g, centre, len(values))
        if self.pending is not None and self._pair_is_worse(point, g, centre, len(values)):
            return self._pair_regression(point, effect, g, centre)
        self._fold_pending()
        self.pending = point
        drift = self._drift(g, sigma, df, tests)
        if drift is not None:
            return drift
        return Judgement("ok", f"{effect:+.1%}, within {g.describe()}", effect, g, reference_centre=centre)

    def _fold_pending(self) -> None:
        """The previous run was unremarkable after all: it joins the reference."""
        if self.pending is not None:
            self.reference.append(self.pending)
            self.pending = None

    def _pair_is_worse(self, point: Point, g: Gate, centre: float, n_ref: int) -> bool:
        """The previous run and this one, each inside the gate, together significantly worse."""
        assert self.pending is not None
        pair = (self.pending.value + point.value) / 2
        return self.worse * (pair - centre) > g.k * g.sigma * math.sqrt(1 / 2 + MEDIAN_VARIANCE_FACTOR / n_ref)

    def _worse(self, point: Point, effect: float, g: Gate, centre: float, n_ref: int) -> Judgement:
        self.beyond.add(point.index)
        if self.direction == 1:
            self.episode.append(point)
            return Judgement("regression", f"{effect:+.1%} beyond {g.describe()}; {self._episode_text()}",
                             effect, g, self.episode[0].index, centre, beyond_runs=self._beyond_runs())
        previous = self.pending
        # the run before belongs to the step only if it sits nearer the new level than the old one
        nearer = previous is not None and self.worse * (previous.value - centre) > self.worse * (point.value - centre) / 2
        if previous is not None and nearer and self._pair_is_worse(point, g, centre, n_ref):
            return self._pair_regression(point, effect, g, centre)
        self._fold_pending()
        self._open_episode(point, 1)
        return Judgement("regression", f"{effect:+.1%} beyond {g.describe()}; first run at this level",
                         effect, g, point.index, centre, beyond_runs=1)

    def _beyond_runs(self) -> int:
        return sum(p.index in self.beyond for p in self.episode)

    def _pair_regression(self, point: Point, effect: float, g: Gate, centre: float) -> Judgement:
        """This run and the one before it are one step: a regression since the one before."""
        previous = self.pending
        assert previous is not None
        self.pending = None
        self._open_episode(previous, 1)
        self.episode.append(point)
        return Judgement("regression", f"{effect:+.1%}; with the run before it, {self._episode_text()}: two runs "
                         f"worse together, {g.describe()}", effect, g, previous.index, centre,
                         beyond_runs=self._beyond_runs())

    def _better(self, point: Point, effect: float, g: Gate, centre: float) -> Judgement:
        if self.direction == -1:
            self.episode.append(point)
            if len(self.episode) >= CONFIRM_IMPROVEMENT:
                since = self.episode[0].index
                self.closed.append([p.value for p in self.reference])
                self.reference, self.episode, self.direction = self.episode, [], 0
                return Judgement("improvement", f"{effect:+.1%} beyond {g.describe()}; confirmed, the new "
                                 "baseline level", effect, g, since, centre)
            return Judgement("improvement", f"{effect:+.1%} beyond {g.describe()}", effect, g, None, centre)
        ended = " (the open regression is over)" if self.direction == 1 else ""
        self._open_episode(point, -1)
        return Judgement("improvement", f"{effect:+.1%} beyond {g.describe()}{ended}", effect, g, None, centre)

    def _inside_with_episode(self, point: Point, effect: float, g: Gate, centre: float, n_ref: int) -> Judgement:
        episode = [p.value for p in self.episode]
        level = mean(episode)
        left = abs(point.value - level) > g.k * g.sigma * math.sqrt(1 + 1 / len(episode))
        group = [*episode, point.value]
        group_gap = self.direction * self.worse * (mean(group) - centre)
        persists = group_gap > g.k * g.sigma * math.sqrt(1 / len(group) + 1 / n_ref)
        since = self.episode[0].index
        if left or not persists:
            fixed = left and persists
            self._close_episode(merge=not fixed)
            self.pending = point
            why = ("back to the baseline level (the change since that run is over)" if fixed
                   else "the change seen since that run did not persist")
            return Judgement("ok", f"{effect:+.1%}, within {g.describe()}; {why}", effect, g, since, centre)
        self.episode.append(point)
        if self.direction == 1:
            return Judgement("regression", f"{effect:+.1%}, inside this run's gate but not back: "
                             f"{self._episode_text()}", effect, g, since, centre, beyond_runs=self._beyond_runs())
        return Judgement("ok", f"{effect:+.1%}, within {g.describe()}", effect, g, None, centre)

    def _episode_text(self) -> str:
        return f"{len(self.episode)} run(s) at this level, mean {math.expm1(self._episode_gap()):+.1%}"

    def _episode_gap(self) -> float:
        return mean([p.value for p in self.episode]) - statistics.median(self.reference_values())

    def _drift(self, g: Gate, sigma: float, df: int, tests: int) -> Judgement | None:
        """A significant slope over the reference segment, worse by more than the floor in all."""
        points = [*self.reference, *([self.pending] if self.pending else [])][-self.window:]
        if len(points) < DRIFT_MIN_RUNS:
            return None
        positions = [float(i) for i in range(len(points))]
        values = [p.value for p in points]
        x_mean, y_mean = mean(positions), mean(values)
        sxx = sum((x - x_mean) ** 2 for x in positions)
        slope = sum((x - x_mean) * (y - y_mean) for x, y in zip(positions, values)) / sxx
        total = slope * (len(points) - 1)
        if self.worse * slope <= slope_gate(sigma, df, positions, tests, self.settings):
            return None
        if self.worse * total <= math.log1p(self.settings.floor):
            return None
        effect = math.expm1(values[-1] - statistics.median(values))
        return Judgement("regression", f"slow drift: {math.expm1(total):+.1%} over the last {len(points)} runs "
                         f"({math.expm1(slope):+.2%} per run), {g.describe()}", effect, g, points[0].index,
                         statistics.median(values))
