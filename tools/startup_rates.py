"""Verdict rates of the startup rows (model load, cold start) on synthetic histories: ``python -m tools.startup_rates``.

A startup time is one value a run, so its run-to-run noise is all there is. Each history is the GPU
1024x1024 regime of :mod:`tools.verdict_rates` (the benchmarks' times) with a startup added to every
run, drawn from one of these noise models:

- **measured**: the GPU load times of :data:`FIXTURE` (one fresh process each; its device, date and
  spread in docs/verdicts.md), resampled, each spread uniformly over the tenth of a second the log
  printed it to, so their long upper tail stays. The cold start's GPU noise is not measured: it gets
  independent draws from the same values (judged on a log scale, only their relative spread counts);
- **log-normal x%**: a log-normal spread of x% for both, no tail.

The table gives, per model: A/A, the histories (of ``RUNS`` runs) in which any startup verdict
alerted; and for a persistent +30% load time from run ``STEP_AT`` on, how often its first bad run
was flagged (advisory or regression) and how often the second alerted.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Callable
from pathlib import Path

from fbcache.history import COLD_START_LABEL, LOAD_LABEL, Startup
from fbcache.history.storage import Run
from fbcache.verdicts import CompareResult, CompareSettings
from fbcache.verdicts.judge import judge_series
from tools.verdict_rates import REGIMES, simulate

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "data" / "startup" / "h200-load-times-2026-11-28.json"
#: histories per A/A rate and per detection rate
HISTORIES = 100
RUNS = 15
#: the first run of a +30% step: after 11 runs, enough for the startup rows to be judged
STEP_AT = 11
GPU = REGIMES[0]
#: one draw of a startup time, in seconds
Draw = Callable[[random.Random], float]


def measured_load_times(fixture: Path = FIXTURE) -> list[float]:
    data = json.loads(fixture.read_text(encoding="utf-8"))
    return [float(v) for values in data["model_load_s"].values() for v in values]


def measured_device(fixture: Path = FIXTURE) -> str:
    """The card the fixture's load times were measured on, as its ``device`` names it (less any note in brackets)."""
    return str(json.loads(fixture.read_text(encoding="utf-8"))["device"]).split(" (", 1)[0]


def noise_models(fixture: Path = FIXTURE) -> list[tuple[str, Draw]]:
    """The table's noise models, by name: the fixture's measured load times, then log-normal spreads."""
    return [(f"measured ({measured_device(fixture)} load times, resampled)", resampled(measured_load_times(fixture))),
            *[(f"log-normal {s:.0%}", lognormal(s)) for s in (0.02, 0.03, 0.05)]]


def resampled(values: list[float]) -> Draw:
    """A measured value at random, spread over the tenth of a second it was printed to."""
    return lambda rng: rng.choice(values) + rng.uniform(-0.05, 0.05)


def lognormal(spread: float, median: float = 10.0) -> Draw:
    return lambda rng: median * math.exp(rng.gauss(0.0, spread))


def history(rng: random.Random, runs: int, load: Draw, cold: Draw,
            change: Callable[[int], float] = lambda index: 1.0) -> list[Run]:
    """``runs`` synthetic runs, each with a startup; ``change(index)`` multiplies that run's load time."""
    series = simulate(GPU, rng, runs)
    for index, run in enumerate(series):
        run.startup = Startup(load(rng) * change(index), cold(rng))
    return series


def startup_verdicts(result: CompareResult) -> dict[str, str]:
    """The status of each startup row of one compare, by row label."""
    return {row.label: row.status for row in result.rows if row.label in (LOAD_LABEL, COLD_START_LABEL)}


def aa_alarms(load: Draw, cold: Draw, histories: int = HISTORIES, runs: int = RUNS, seed: int = 0,
              settings: CompareSettings = CompareSettings()) -> tuple[int, int]:
    """(histories where a startup row alerted, startup verdicts that were judged: ok, advisory or regression)."""
    alarming = judged = 0
    for replica in range(histories):
        results = judge_series(history(random.Random(f"{seed}-startup-aa-{replica}"), runs, load, cold), None, settings)
        statuses = [status for result in results for status in startup_verdicts(result).values()]
        alarming += "regression" in statuses
        judged += sum(status in ("ok", "advisory", "regression") for status in statuses)
    return alarming, judged


def step_detection(load: Draw, cold: Draw, size: float = 0.30, histories: int = HISTORIES,
                   seed: int = 0) -> tuple[int, int]:
    """(first bad runs flagged, second bad runs alerting) of a persistent load-time step from ``STEP_AT`` on."""
    flagged = alerted = 0
    for replica in range(histories):
        rng = random.Random(f"{seed}-startup-step-{replica}")
        series = history(rng, STEP_AT + 2, load, cold, lambda index: 1 + size if index >= STEP_AT else 1.0)
        results = judge_series(series)
        flagged += startup_verdicts(results[STEP_AT])[LOAD_LABEL] in ("advisory", "regression")
        alerted += startup_verdicts(results[STEP_AT + 1])[LOAD_LABEL] == "regression"
    return flagged, alerted


def table(seed: int = 0) -> str:
    lines = ["| noise model | A/A: histories alerting | A/A: judged verdicts | +30%: first bad run flagged | "
             "+30%: second bad run alerts |", "|---|---|---|---|---|"]
    for name, draw in noise_models():
        alarming, judged = aa_alarms(draw, draw, seed=seed)
        flagged, alerted = step_detection(draw, draw, seed=seed)
        lines.append(f"| {name} | {alarming} of {HISTORIES} | {judged} | {flagged} of {HISTORIES} | "
                     f"{alerted} of {HISTORIES} |")
    return "\n".join(lines) + (f"\n\n{HISTORIES} histories of {RUNS} runs each (A/A), and of {STEP_AT + 2} runs "
                               f"with the step from run {STEP_AT + 1} on; seed {seed}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    print(table(parser.parse_args().seed))


if __name__ == "__main__":
    main()
