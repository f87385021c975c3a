"""``fbcache tune``'s search (fbcache/verdicts/tune.py) on a simulated cache, where every answer can be
checked against the simulation itself at any threshold: no model, no torch, milliseconds."""

from __future__ import annotations

import math

import pytest

from fbcache import metrics
from fbcache.errors import ConfigError, DataError
from fbcache.metrics import ImageMetric
from fbcache.verdicts.tune import (
    Floor,
    Probe,
    Trace,
    floor_option,
    grid_generations,
    parse_floors,
    read_trace,
    search,
    shortest_inside,
)

SSIM, PSNR = metrics.get("ssim"), metrics.get("psnr")


class Simulated:
    """A first-block cache on a made-up model: step k's difference is its prompt's base rate times the steps
    since the last computed step, so a reuse changes every later difference, as a real trajectory does.
    Quality falls with the differences of the reused steps."""

    def __init__(self, prompts: int = 1, steps: int = 28, strict: bool = False, record_hit_diffs: bool = True,
                 compares_at_zero: bool = True):
        self.steps = steps
        self.compares_at_zero = compares_at_zero  # cache-dit computes every step at 0 without comparing
        self.strict = strict  # cache-dit and nunchaku reuse when diff < t; diffusers when not diff > t
        self.record_hit_diffs = record_hit_diffs
        self.rates = [[0.02 + 0.013 * ((7 * k + 3 * p) % 5) + 0.001 * p for k in range(steps)] for p in range(prompts)]
        self.calls: list[tuple[int, float]] = []

    def run(self, prompt: int, threshold: float) -> tuple[tuple[bool, ...], tuple[float | None, ...], float]:
        hits, diffs, last, loss = [False], [None], 0, 0.0
        for k in range(1, self.steps):
            diff = self.rates[prompt][k] * (k - last)
            hit = diff < threshold if self.strict else not diff > threshold
            hits.append(hit)
            compared = self.compares_at_zero or threshold > 0
            diffs.append(diff if compared and (self.record_hit_diffs or not hit) else None)
            if hit:
                loss += diff
            else:
                last = k
        return tuple(hits), tuple(diffs), loss

    def generate(self, prompt: int, threshold: float) -> Probe:
        self.calls.append((prompt, threshold))
        hits, diffs, loss = self.run(prompt, threshold)
        quality = {"ssim": max(0.0, 1.0 - 0.02 * loss), "psnr": math.inf if loss == 0 else 60.0 - 8.0 * loss}
        return Probe(prompt, threshold, hits, diffs, quality)

    def pattern(self, prompt: int, threshold: float) -> tuple[bool, ...]:
        return self.run(prompt, threshold)[0]


def ssim_floor(bound: float) -> Floor:
    return Floor(SSIM, bound)


@pytest.mark.parametrize("strict", [False, True], ids=["diffusers-style", "cache-dit-style"])
def test_a_probes_interval_is_exactly_where_its_hit_pattern_holds(strict):
    sim = Simulated(strict=strict)
    wrong = []
    for threshold in (0.0, 0.03, 0.05, 0.08, 0.13, 0.2, 0.31, 0.5):
        probe = sim.generate(0, threshold)
        low, high = probe.interval
        inside = [low + (high - low) * f for f in (0.001, 0.5, 0.999)] if math.isfinite(high) else [low * 1.001]
        outside = [high * (1 + 1e-9)] if math.isfinite(high) else []
        outside += [low * (1 - 1e-9)] if low > 0 else []
        wrong += [(threshold, t, "inside") for t in inside if sim.pattern(0, t) != probe.hits]
        wrong += [(threshold, t, "outside") for t in outside if sim.pattern(0, t) == probe.hits]
    assert wrong == []


@pytest.mark.parametrize("bound", [0.99, 0.97, 0.9])
def test_the_recommendation_holds_its_floor_and_the_next_pattern_above_it_breaks_it(bound):
    sim = Simulated()
    found = search([0], [ssim_floor(bound)], 1.0, [], sim.generate)
    best, faster = found.recommended, found.faster
    at_best = sim.generate(0, best.threshold(1.0))
    just_above = sim.generate(0, best.interval[1] * (1 + 1e-9))
    assert (found.boundary.resolved, at_best.hits == best.probes[0].hits, at_best.metrics["ssim"] >= bound,
            just_above.hits == faster.probes[0].hits, just_above.metrics["ssim"] < bound) == (True,) * 5


@pytest.mark.parametrize("bound", [0.99, 0.97, 0.9])
def test_the_search_needs_at_most_a_third_of_a_001_grid(bound):
    sim = Simulated()
    found = search([0], [ssim_floor(bound)], 1.0, [], sim.generate)
    assert found.generations() <= grid_generations(1.0, 1) / 3


def test_two_searches_give_the_same_interval():
    first = search([0, 1], [ssim_floor(0.97)], 1.0, [], Simulated(prompts=2).generate)
    second = search([0, 1], [ssim_floor(0.97)], 1.0, [], Simulated(prompts=2).generate)
    assert first.recommended.interval == second.recommended.interval


def test_the_worst_prompt_decides_and_a_prompt_whose_trace_covers_a_threshold_is_not_generated_again():
    sim = Simulated(prompts=3)
    found = search([0, 1, 2], [ssim_floor(0.97)], 1.0, [], sim.generate)
    best = found.recommended
    worst = min(p.metrics["ssim"] for p in best.probes)
    per_prompt_calls = len(sim.calls)
    assert (best.worst(SSIM) == worst, found.book.skipped > 0, per_prompt_calls < 3 * len(set(found.book.asked))) \
        == (True, True, True)


def test_a_rerun_with_the_same_floors_from_the_trace_generates_nothing():
    first = search([0], [ssim_floor(0.97)], 1.0, [], Simulated().generate)
    again = Simulated()
    second = search([0], [ssim_floor(0.97)], 1.0, first.book.new, again.generate)
    assert (again.calls, second.recommended.interval) == ([], first.recommended.interval)


def test_with_several_floors_the_search_goes_on_until_every_floor_breaks_so_a_rerun_with_one_needs_nothing():
    floors = [Floor(SSIM, 0.99), Floor(PSNR, 40.0)]
    first = search([0], floors, 1.0, [], Simulated().generate)
    reruns = {}
    for floor in floors:
        sim = Simulated()
        rerun = search([0], [floor], 1.0, first.book.new, sim.generate)
        reruns[floor.key] = (len(sim.calls), rerun.recommended.interval == first.per_floor[floor.key].holds.interval)
    assert reruns == {"min_ssim": (0, True), "min_psnr": (0, True)}


def test_without_differences_for_its_hits_the_search_bisects_down_to_its_resolution():
    sim = Simulated(record_hit_diffs=False)  # a cache that reuses without saying what it compared
    found = search([0], [ssim_floor(0.97)], 1.0, [], sim.generate)
    holds, breaks = found.boundary.holds, found.boundary.breaks
    gap = breaks.interval[0] - holds.interval[1]
    assert (0 < gap <= 1.0 / 2**10, holds.holds(found.floors), breaks.holds(found.floors)) == (True, True, False)


def test_a_cache_that_compares_nothing_at_0_gives_no_interval_there_and_the_same_answer():
    quiet = search([0], [ssim_floor(0.97)], 1.0, [], Simulated(strict=True, compares_at_zero=False).generate)
    bottom = quiet.book.probes[0][0]
    answer = search([0], [ssim_floor(0.97)], 1.0, [], Simulated(strict=True).generate)
    assert (bottom.interval, quiet.recommended.interval) == ((0.0, 0.0), answer.recommended.interval)


def test_a_floor_that_holds_up_to_the_limit_recommends_the_limits_pattern_with_nothing_faster():
    found = search([0], [ssim_floor(0.0)], 0.5, [], Simulated().generate)
    assert (found.recommended.interval[0] < 0.5 <= found.recommended.interval[1], found.faster) == (True, None)


def test_when_the_first_reused_step_breaks_the_floor_there_is_no_recommendation():
    found = search([0], [ssim_floor(1.0)], 1.0, [], Simulated().generate)
    assert (found.recommended, found.faster.hits > 0) == (None, True)


def test_the_shipped_threshold_has_the_fewest_decimals_in_the_middle_half_of_the_interval():
    assert [shortest_inside(0.0712 + 0.0011, 0.0756 - 0.0011), shortest_inside(0.26, 0.74),
            shortest_inside(0.04123, 0.04127)] == [0.073, 0.5, 0.04125]


def test_a_trace_round_trips_exactly_infinite_psnr_included():
    probe = Simulated().generate(0, 0.0)
    text = Trace({"model": "tiny"}, [probe, Simulated().generate(0, 0.1)]).to_json()
    back = read_trace(text, "t.json")
    assert (back.probes[0].metrics["psnr"], [p.diffs for p in back.probes], back.workload) == \
        (math.inf, [probe.diffs, Simulated().generate(0, 0.1).diffs], {"model": "tiny"})


def test_a_malformed_trace_is_one_data_error_naming_the_file():
    with pytest.raises(DataError, match=r"--trace t.json: unreadable trace .*--fresh"):
        read_trace('{"fbcache_tune_trace": 1, "workload": {}, "probes": [{"prompt": 0}]}', "t.json")


# ------------------------------------------------------------------------------------ floors


def test_floors_come_from_both_spellings_in_the_registrys_order():
    floors = parse_floors(["psnr=30"], {"ssim": "0.95", "psnr": None})
    assert [(f.key, f.bound) for f in floors] == [("min_ssim", 0.95), ("min_psnr", 30.0)]


def test_a_floor_given_two_ways_that_disagree_is_refused_naming_the_spelling():
    with pytest.raises(ConfigError, match=r"--min-ssim: invalid value '0.9' \(--floor sets ssim too\)"):
        parse_floors(["ssim=0.95"], {"ssim": "0.9"})


def test_a_floor_outside_the_metrics_values_is_refused():
    with pytest.raises(ConfigError, match=r"--min-ssim: invalid value '1.5' \(outside the values SSIM can take\); "
                                          r"accepted: a number in \[0, 1\]"):
        parse_floors([], {"ssim": "1.5"})


def test_an_unregistered_metric_is_refused_naming_the_registered_ones():
    with pytest.raises(ConfigError, match=r"--floor: invalid value 'lpipz=0.1' \(no METRIC 'lpipz'\); accepted: "
                                          r"METRIC=VALUE, METRIC one of ssim, psnr"):
        parse_floors(["lpipz=0.1"], {})


def test_a_lower_is_better_metric_gets_a_ceiling_spelled_max():
    blur = ImageMetric(name="blur", title="Blur", compute=lambda a, b: 0.0, tolerance=0.01, calibrate_margin=0.01,
                       higher_is_better=False, value_range=(0.0, 1.0))
    metrics.register(blur)
    try:
        [floor] = parse_floors([], {"blur": "0.15"})
        assert (floor_option(blur), floor.key, floor.breaks(0.2), floor.breaks(0.1)) == \
            ("--max-blur", "max_blur", True, False)
    finally:
        metrics.unregister("blur")
