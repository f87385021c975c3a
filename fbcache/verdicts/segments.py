"""Segments of one benchmark's history: where its level changed, and what each run is judged against.

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

Values are logs (stats.py). ``worse`` is +1 when larger is worse (times), -1 when smaller is
worse (speedups).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from fbcache.verdicts.stats import (
    MEDIAN_VARIANCE_FACTOR,
    Dispersion,
    Gate,
    GateSettings,
    dispersion,
    gate,
    mean,
    slope_gate,
)

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
        if self.direction == 1:
            self.episode.append(point)
            return Judgement("regression", f"{effect:+.1%} beyond {g.describe()}; {self._episode_text()}",
                             effect, g, self.episode[0].index, centre)
        previous = self.pending
        # the run before belongs to the step only if it sits nearer the new level than the old one
        nearer = previous is not None and self.worse * (previous.value - centre) > self.worse * (point.value - centre) / 2
        if previous is not None and nearer and self._pair_is_worse(point, g, centre, n_ref):
            return self._pair_regression(point, effect, g, centre)
        self._fold_pending()
        self._open_episode(point, 1)
        return Judgement("regression", f"{effect:+.1%} beyond {g.describe()}; first run at this level",
                         effect, g, point.index, centre)

    def _pair_regression(self, point: Point, effect: float, g: Gate, centre: float) -> Judgement:
        """This run and the one before it are one step: a regression since the one before."""
        previous = self.pending
        assert previous is not None
        self.pending = None
        self._open_episode(previous, 1)
        self.episode.append(point)
        return Judgement("regression", f"{effect:+.1%}; with the run before it, {self._episode_text()}: two runs "
                         f"worse together, {g.describe()}", effect, g, previous.index, centre)

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
                             f"{self._episode_text()}", effect, g, since, centre)
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
