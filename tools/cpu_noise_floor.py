"""How finely can this CPU time a generation? The noise floor behind issue 11's CPU targets.

    python -m tools.cpu_noise_floor --generations 40

Times ``--generations`` consecutive identical uncached generations of the tiny model (the harness's
default CPU settings: 28 steps, 64x64, 1 torch thread) with the process's CPU time, and prints their
spread, the lag-1 autocorrelation (slow drift, which pairing cancels, or fast noise, which it does
not), the spread of the ratio of neighbouring generations (what a paired speedup sees at best), and
how many paired rounds a sweep would need before two thresholds that do the same work read within
3% of each other (the issue's "equal hit counts within 3%") at 3.3 standard deviations. It also says
whether this machine exposes a hardware instruction counter (``/sys/bus/event_source/devices/cpu``),
which an instruction-count clock would need.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

#: two speedups of equal work must read within this fraction of each other (issue 11)
EQUAL_WITHIN = 0.03
#: standard deviations of margin for that to hold in nearly every sweep
MARGIN_SD = 3.3
#: the sampling efficiency of a median against a mean (normal data): its variance is pi/2 larger
MEDIAN_VARIANCE_FACTOR = math.pi / 2


def lag1_autocorrelation(values: list[float]) -> float:
    mean = statistics.fmean(values)
    deviations = [v - mean for v in values]
    denominator = sum(d * d for d in deviations)
    return sum(a * b for a, b in zip(deviations, deviations[1:])) / denominator if denominator else 0.0


def neighbour_ratio_sd(values: list[float]) -> float:
    """Relative spread of t[i+1] / t[i]: the noise a paired ratio of back-to-back generations keeps."""
    return statistics.stdev([b / a for a, b in zip(values, values[1:])])


def rounds_needed(pair_sd: float, within: float = EQUAL_WITHIN, margin: float = MARGIN_SD) -> int:
    """Paired rounds per threshold so that two median paired speedups of equal work differ by less than
    ``within`` at ``margin`` standard deviations; each median's variance is pi/2 x pair_sd^2 / n and
    their difference has twice that."""
    target_sd = within / margin
    return math.ceil(2 * MEDIAN_VARIANCE_FACTOR * pair_sd**2 / target_sd**2)


def has_instruction_counter(devices: Path = Path("/sys/bus/event_source/devices")) -> bool:
    return (devices / "cpu").exists()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=40)
    args = parser.parse_args(argv)

    import torch

    from fbcache.configure import build_config
    from fbcache.plugin.schedule import generate_once
    from fbcache.plugin.session import FBCacheSession

    config = build_config({"model": "tiny", "device": "cpu", "output_dir": str(Path.cwd() / "fbcache-results")})
    session = FBCacheSession(config, profile=None)  # loads the model as a sweep does (1 torch thread)

    def generate() -> float:
        generator = torch.Generator("cpu").manual_seed(config.seed)
        started = time.process_time()
        generate_once(session, generator)
        return time.process_time() - started

    generate()  # warm-up
    seconds = [generate() for _ in range(args.generations)]
    mean = statistics.fmean(seconds)
    pair_sd = neighbour_ratio_sd(seconds)
    print(f"{args.generations} uncached generations, {config.steps} steps, {config.resolution}, "
          f"{config.threads} thread(s), CPU clock, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC")
    print(f"mean {mean:.3f} s, min {min(seconds):.3f} s, max {max(seconds):.3f} s, "
          f"CV {statistics.stdev(seconds) / mean:.1%}")
    print(f"lag-1 autocorrelation {lag1_autocorrelation(seconds):.2f}; neighbour ratio spread {pair_sd:.1%}")
    print(f"paired rounds per threshold for equal work to read within {EQUAL_WITHIN:.0%} "
          f"({MARGIN_SD} SD): {rounds_needed(pair_sd)}")
    print(f"hardware instruction counter: {'yes' if has_instruction_counter() else 'no (no cpu PMU in this machine)'}")
    print("times:", " ".join(f"{s:.3f}" for s in seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
