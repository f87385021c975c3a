"""Cache hits, counted from the cache's own decision: nothing here decides anything.

Neither diffusers' FirstBlockCache nor nunchaku counts hits. Both make exactly one decision per
denoising step, so we wrap that decision and write down what it returned, plus the relative
residual difference it compared against the threshold. The decision and the difference are the
cache's; no part of FBCache is recomputed here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepDecision:
    """One denoising step as the cache saw it."""

    step: int
    #: relative mean absolute difference of the first-block residual against the last fully
    #: computed step; None when nothing was cached yet (the first step of every generation)
    diff: float | None
    #: True when the cache reused the remaining blocks' residual (the step was skipped)
    hit: bool


class DecisionLog:
    """The decisions of the generation in progress, one entry per denoising step."""

    def __init__(self) -> None:
        self._steps: list[StepDecision] = []
        self._pending_diff: float | None = None

    def start_generation(self) -> None:
        self._steps = []
        self._pending_diff = None

    def note_diff(self, diff: float) -> None:
        """Called when the cache compares its difference with the threshold."""
        self._pending_diff = float(diff)

    def note_decision(self, hit: bool, diff: float | None = None) -> None:
        """Called once per step with the cache's verdict; ``diff`` overrides a noted one."""
        value = diff if diff is not None else self._pending_diff
        self._steps.append(StepDecision(step=len(self._steps), diff=value, hit=bool(hit)))
        self._pending_diff = None

    def finish_generation(self) -> list[StepDecision]:
        steps, self._steps = self._steps, []
        return steps


class ThresholdProbe(float):
    """A float equal to the threshold that writes down the value it is compared with.

    diffusers decides ``diff > self.threshold`` with ``diff`` a Python float. Because this class
    subclasses float and overrides the reflected comparison, Python asks it first, so the
    difference diffusers computed reaches the log without computing it a second time.
    """

    _log: DecisionLog

    def __new__(cls, value: float, log: DecisionLog) -> ThresholdProbe:
        probe = super().__new__(cls, value)
        probe._log = log
        return probe

    def _seen(self, other: object) -> None:
        if isinstance(other, (int, float)):
            self._log.note_diff(float(other))

    def __lt__(self, other: object) -> bool:  # diff > threshold
        self._seen(other)
        return float(self) < other  # type: ignore[operator]

    def __gt__(self, other: object) -> bool:  # diff < threshold
        self._seen(other)
        return float(self) > other  # type: ignore[operator]

    def __le__(self, other: object) -> bool:  # diff >= threshold
        self._seen(other)
        return float(self) <= other  # type: ignore[operator]

    def __ge__(self, other: object) -> bool:  # diff <= threshold
        self._seen(other)
        return float(self) >= other  # type: ignore[operator]

    def __reduce__(self):  # copies and pickles become plain floats
        return (float, (float(self),))


def summarize(steps: list[StepDecision]) -> tuple[int, int]:
    """(hits, computed steps) of one generation."""
    hits = sum(1 for s in steps if s.hit)
    return hits, len(steps) - hits
