"""Verdict rates on synthetic histories built from measured noise: ``python -m tools.verdict_rates``.

Each regime's generator reproduces noise measured for issue 11 (docs/verdicts.md, "What the rules
catch", names the runs), on a log scale:

- a **night factor** shared by every benchmark of a run (the machine's state that night),
- a **round factor** shared by the generations of one round (interleaved rounds run next to each
  other, so they share the moment's drift),
- an independent **generation** noise per benchmark, its spread drawn per run within the measured
  range of within-run CVs; optionally rare slow generations (``spike``, off in the shipped regimes:
  such excursions came with default torch threads, not with one thread).

Scenarios change every run from the first bad one on: a step of +2/+5/+10/+20% on all benchmarks,
on the cached rows only, on one benchmark, or on the uncached row only, or a drift of +2% per run.
Each history has ``GOOD`` unchanged runs, then ``BAD`` changed ones; the table gives, over
``REPLICAS`` seeded histories, how often the compare of bad run 1, 2 and 3 alerted, and how often
it found the changed benchmarks too noisy to judge. A/A: every compare of an unchanged history
with at least ``min_history`` earlier runs counts; its rate must be zero.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from fbcache.history import BenchRecord
from fbcache.history.storage import Run
from fbcache.verdicts import (
    RUN_LABEL,
    TOO_NOISY,
    CompareResult,
    CompareSettings,
)
from fbcache.verdicts.judge import judge_series

GOOD, BAD, REPLICAS, AA_HISTORIES = 8, 3, 12, 13
THRESHOLDS = (0.0, 0.01, 0.05, 0.1, 0.2, 0.5, 0.8)


@dataclass(frozen=True)
class Regime:
    """A measured noise level: medians in seconds, and log-scale standard deviations."""

    name: str
    accelerator: str
    rounds: int
    #: median time per label (uncached first)
    seconds: dict[str, float]
    #: within-run generation noise per label (the measured within-run CV)
    generation: dict[str, tuple[float, float]]
    #: night-to-night factor shared by all benchmarks of a run
    night: float
    #: round-to-round factor shared by the generations of one interleaved round
    round_: float
    #: per benchmark and night, a factor of its own (one value, or per label with a default under "*")
    own_night: float | dict[str, float] = 0.0
    #: probability and size of a slow generation (CPU: other jobs grab the cores)
    spike: tuple[float, float] = (0.0, 0.0)
    one: str = "0.1"


def own_night_of(regime: Regime, label: str) -> float:
    if isinstance(regime.own_night, dict):
        return regime.own_night.get(label, regime.own_night["*"])
    return regime.own_night


def _labels() -> list[str]:
    return ["uncached", *[f"{t:g}" for t in THRESHOLDS]]


REGIMES = (
    # a quiet GPU at 1024x1024: GPU-bound rows barely move; the launch-bound 0.8 row spreads more
    Regime("GPU 1024x1024", "NVIDIA H200 (synthetic)", 5,
           dict(zip(_labels(), (5.00, 5.10, 5.10, 5.10, 5.10, 5.08, 2.60, 0.64))),
           {"uncached": (0.001, 0.002), "0": (0.001, 0.003), "0.01": (0.001, 0.003), "0.05": (0.001, 0.003),
            "0.1": (0.001, 0.003), "0.2": (0.001, 0.003), "0.5": (0.002, 0.006), "0.8": (0.004, 0.024)},
           night=0.0007, round_=0.0005, own_night=0.0005),
    # a GPU at 512x512: every row noisy, within a run and from run to run
    Regime("GPU 512x512", "NVIDIA H200 (synthetic)", 5,
           dict(zip(_labels(), (2.00, 2.10, 2.10, 2.10, 2.10, 2.08, 1.10, 0.35))),
           {label: (0.03, 0.06) for label in _labels()},
           night=0.15, round_=0.10, own_night=0.03),
    # 1024x1024 with the host shared (its other GPU busy), 3 rounds: the launch-bound 0.5 and 0.8 rows move
    # from run to run; rows with few hits stay GPU-bound like the uncached one
    Regime("GPU 1024x1024, shared host", "NVIDIA H200 (synthetic)", 3,
           dict(zip(_labels(), (5.03, 5.10, 5.10, 5.10, 5.10, 5.08, 2.60, 0.63))),
           {"uncached": (0.001, 0.002), "0": (0.001, 0.003), "0.01": (0.001, 0.003), "0.05": (0.001, 0.003),
            "0.1": (0.001, 0.003), "0.2": (0.001, 0.003), "0.5": (0.002, 0.015), "0.8": (0.001, 0.036)},
           night=0.0007, round_=0.0005, own_night={"*": 0.001, "0.5": 0.02, "0.8": 0.04}),
    # the tiny model on a loaded 2-core CPU VM, OMP_NUM_THREADS=1
    Regime("CPU tiny, 1 thread", "cpu: AMD EPYC (synthetic)", 3,
           dict(zip(_labels(), (0.355, 0.36, 0.36, 0.30, 0.23, 0.18, 0.15, 0.14))),
           {label: (0.015, 0.046) for label in _labels()},
           night=0.02, round_=0.01, own_night=0.01, one="0.1"),
)

SCENARIOS = ("all", "cached", "one", "uncached", "drift")
SIZES = (0.02, 0.05, 0.10, 0.20)


def _factor(scenario: str, size: float, label: str, bad_index: int, regime: Regime) -> float:
    """Multiplier of ``label``'s time on the ``bad_index``-th bad run (1-based; 0: unchanged)."""
    if bad_index <= 0:
        return 1.0
    if scenario == "drift":
        return (1 + size) ** bad_index
    hit = {"all": True, "cached": label != "uncached", "one": label == regime.one,
           "uncached": label == "uncached"}[scenario]
    return 1 + size if hit else 1.0


def simulate(regime: Regime, rng: random.Random, runs: int, change=lambda label, i: 1.0) -> list[Run]:
    """``runs`` interleaved runs; ``change(label, run_index)`` multiplies a benchmark's times."""
    history = []
    fingerprint = {"accelerator": regime.accelerator, "model": "flux-random", "quantization": "none",
                   "cache_backend": "diffusers", "workload": regime.name}
    for index in range(runs):
        night = rng.gauss(0, regime.night)
        rounds = [rng.gauss(0, regime.round_) for _ in range(regime.rounds)]
        times: dict[str, list[float]] = {}
        for label in _labels():
            low, high = regime.generation[label]
            spread = rng.uniform(low, high)
            own = rng.gauss(0, own_night_of(regime, label))
            values = []
            for j in range(regime.rounds):
                noise = night + own + rounds[j] + rng.gauss(0, spread)
                if rng.random() < regime.spike[0]:
                    noise += math.log1p(regime.spike[1])
                values.append(regime.seconds[label] * math.exp(noise) * change(label, index))
            times[label] = values
        records = {}
        for label in _labels():
            threshold = None if label == "uncached" else float(label)
            record = BenchRecord(threshold, "flux-random", "none", "diffusers", 28, regime.name, 0,
                                 rounds_s=times[label], schedule="interleaved")
            if threshold is not None:
                record.paired_uncached_s = list(times["uncached"])
                record.hits, record.hit_trace, record.hits_per_round = 0, [False] * 28, [0] * regime.rounds
                record.metrics = {"ssim": 1.0}
            records[label] = record
        history.append(Run(Path(f"{index + 1:04d}_synthetic.json"), f"2026-11-{index % 28 + 1:02d}",
                           {"fbcache": {"fingerprint": fingerprint}}, {}, records))
    return history


def judge(history: list[Run], settings: CompareSettings) -> list[CompareResult]:
    return judge_series(history, {}, settings)


def _changed_labels(scenario: str, regime: Regime) -> set[str]:
    return {label for label in _labels() if _factor(scenario, 0.1, label, 1, regime) != 1.0}


@dataclass(frozen=True)
class AARate:
    alarms: int
    compared: int
    #: compares in which at least one benchmark was too noisy to judge
    noisy: int
    #: median MDE over every judged test of the last compare of each history, per metric
    mde: dict[str, float]


def aa_rate(regime: Regime, settings: CompareSettings, seed: int = 0, histories: int = AA_HISTORIES) -> AARate:
    """False alarms over the compares of unchanged histories, and the MDEs they measured."""
    alarms = compared = noisy = 0
    mdes: dict[str, list[float]] = {"time": [], "speedup": []}
    for replica in range(histories):
        rng = random.Random(f"{seed}-aa-{regime.name}-{replica}")
        results = judge(simulate(regime, rng, GOOD + BAD), settings)
        for result in results[settings.min_history:]:
            compared += 1
            alarms += result.regression
            noisy += any(v.status == TOO_NOISY for row in result.rows for v in row.verdicts)
        for row in results[-1].rows:
            for verdict in row.verdicts:
                if verdict.metric in mdes and verdict.mde is not None and row.label != RUN_LABEL:
                    mdes[verdict.metric].append(verdict.mde)
    return AARate(alarms, compared, noisy, {k: statistics.median(v) for k, v in mdes.items() if v})


@dataclass(frozen=True)
class Rate:
    detected: list[int]  # per bad run: how many replicas alerted
    too_noisy: int  # replicas whose first bad run had a changed benchmark "too noisy to judge"
    speedup_improvements: int  # compares that called a speedup an improvement (must stay 0 for "uncached")
    replicas: int


def step_rate(regime: Regime, scenario: str, size: float, settings: CompareSettings, seed: int = 0) -> Rate:
    detected = [0] * BAD
    too_noisy = improvements = 0
    changed = _changed_labels(scenario, regime)
    for replica in range(REPLICAS):
        rng = random.Random(f"{seed}-{regime.name}-{scenario}-{size}-{replica}")
        history = simulate(regime, rng, GOOD + BAD,
                           lambda label, i: _factor(scenario, size, label, i - GOOD + 1, regime))
        results = judge(history, settings)[GOOD:]
        for bad, result in enumerate(results):
            detected[bad] += result.regression
            improvements += any(v.metric == "speedup" and v.status == "improvement"
                                for row in result.rows for v in row.verdicts)
        first = results[0]
        too_noisy += any(v.status == TOO_NOISY for row in first.rows if row.label in changed for v in row.verdicts)
    return Rate(detected, too_noisy, improvements, REPLICAS)


#: CPU timing is advisory by default; the table shows what the judge itself says
JUDGE_ALL = CompareSettings(judge_cpu_timing=True)


def table(settings: CompareSettings = JUDGE_ALL, seed: int = 0) -> str:
    lines = ["| regime | A/A false alarms | median MDE time / speedup | change | +2% | +5% | +10% | +20% |",
             "|---|---|---|---|---|---|---|---|"]
    for regime in REGIMES:
        rate = aa_rate(regime, settings, seed)
        aa = f"{rate.alarms} of {rate.compared}" + (f" ({rate.noisy} with a benchmark too noisy)" if rate.noisy else "")
        mde = f"{rate.mde.get('time', math.nan):.1%} / {rate.mde.get('speedup', math.nan):.1%}"
        for scenario in SCENARIOS:
            cells = []
            for size in SIZES:
                step = step_rate(regime, scenario, size, settings, seed)
                text = "/".join(f"{d}" for d in step.detected)
                if step.too_noisy:
                    text += f" ({step.too_noisy} too noisy)"
                cells.append(text)
            name = {"one": f"one benchmark ({regime.one})", "drift": "drift (+x per run)"}.get(scenario, scenario)
            lines.append(f"| {regime.name} | {aa} | {mde} | {name} | " + " | ".join(cells) + " |")
            aa = mde = ""
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    print(table(seed=args.seed))
    print(f"\nCells: replicas (of {REPLICAS}) whose compare alerted on bad run 1/2/3, after {GOOD} unchanged runs; "
          f"A/A: alerting compares of {AA_HISTORIES} unchanged histories of {GOOD + BAD} runs. "
          f"Seed {args.seed}, {date.today().isoformat()}, {time.perf_counter() - started:.1f} s.")


if __name__ == "__main__":
    main()
