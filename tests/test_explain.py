"""Why a speedup is what it is (issue 24): the cost model, the ideal speedup, efficiency and FLOPs.

The model's arithmetic and the judge's rules are pinned on records built here; the measurements on the
tiny model, on a CPU: FLOPs are exact and deterministic, and the profile's parts add up to its generation.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from fbcache.backends import StepDecision
from fbcache.explain import NOT_MEASURED_NOTE, CostModel, Profile, efficiency_rounds, explain, fit, flops_text, work_of
from fbcache.history import BenchRecord
from fbcache.history.storage import Run
from fbcache.render import markdown_table, results
from fbcache.render.report import build_report
from fbcache.verdicts.judge import EFFICIENCY, FLOPS, judge_series
from tools.verdict_rates import REGIMES, simulate

GPU, CPU = REGIMES[0], REGIMES[-1]
STEPS = 28
#: a cost model to build profiles from (seconds): fixed, first block, remaining blocks and rest of a
#: computed step, rest of a hit step; the uncached steps' rest has no cache decision in it
FIXED, FIRST, BLOCKS, REST, SKIP, UNCACHED_REST = 0.100, 0.004, 0.160, 0.006, 0.003, 0.002
HITS = {"0.5": 15, "0.8": 26}


def profile(hits: int, cached: bool = True) -> dict[str, float]:
    """A profiled generation that follows the cost model exactly."""
    computed = STEPS - hits
    rest = REST if cached else UNCACHED_REST
    return {"generation": FIXED + STEPS * FIRST + computed * (BLOCKS + rest) + hits * SKIP,
            "text_encoding": 0.010, "vae_decode": 0.060, "first_block": STEPS * FIRST,
            "remaining_blocks": computed * BLOCKS, "rest_computed": computed * rest, "rest_hit": hits * SKIP,
            "steps": STEPS, "hits": hits}


def record(threshold: float | None, median: float, hits: int = 0, flops: int | None = None,
           rounds: int = 3) -> BenchRecord:
    found = BenchRecord(threshold, "flux-random", "none", "diffusers", STEPS, "1024x1024", 0,
                        rounds_s=[median] * rounds, profile=profile(hits, threshold is not None), flops=flops)
    if threshold is not None:
        found.hits, found.hits_per_round = hits, [hits] * rounds
    return found


def run_records() -> list[BenchRecord]:
    return [record(None, 5.0, flops=1000), record(0.0, 5.1, 0, 1000), record(0.5, 2.6, 15, 470),
            record(0.8, 0.7, 26, 90)]


# ------------------------------------------------------------------------------------ the model


def test_the_fit_recovers_the_parameters_the_profiles_were_made_from():
    model = fit(run_records())
    assert model is not None and model.steps == STEPS and model.profiles == 3
    assert model.first == pytest.approx(FIRST)
    assert model.rest == pytest.approx(BLOCKS + REST)
    assert model.skip == pytest.approx(SKIP)
    assert model.fixed == pytest.approx(FIXED)
    assert model.blocks == pytest.approx(BLOCKS)  # from the uncached profile: the blocks with no cache around them


def test_the_prediction_is_the_formula_at_the_measured_hits():
    model = CostModel(steps=28, fixed=0.1, first=0.004, rest=0.166, skip=0.003, blocks=0.16, profiles=3)
    assert model.predict(26) == pytest.approx(0.1 + 28 * 0.004 + 2 * 0.166 + 26 * 0.003)
    assert model.predict(0) == pytest.approx(0.1 + 28 * 0.004 + 28 * 0.166)


def test_a_model_without_hits_in_any_profile_predicts_no_hit_count_above_zero():
    model = fit([record(None, 5.0), record(0.0, 5.1, 0)])
    assert model is not None and model.skip is None
    assert model.predict(3) is None


def test_ideal_speedup_and_efficiency_for_the_measured_hits():
    explained = explain(run_records())["0.8"]
    ideal = 5.0 - 26 * BLOCKS
    assert explained.ideal_s == pytest.approx(ideal)
    assert explained.ideal_speedup == pytest.approx(5.0 / ideal)
    assert explained.efficiency == pytest.approx(ideal / 0.7)
    assert explained.flops_speedup == pytest.approx(1000 / 90)


def test_at_threshold_zero_the_efficiency_is_the_cost_of_deciding():
    assert explain(run_records())["0"].efficiency == pytest.approx(5.0 / 5.1)


def test_a_run_without_profiles_or_flops_explains_nothing():
    old = [BenchRecord(None, "tiny", "none", "diffusers", 4, "64x64", 0, rounds_s=[0.1]),
           BenchRecord(0.5, "tiny", "none", "diffusers", 4, "64x64", 0, rounds_s=[0.05], hits=2)]
    explained = explain(old)["0.5"]
    assert (explained.predicted_s, explained.ideal_speedup, explained.efficiency, explained.flops_speedup) == \
        (None, None, None, None)


def test_a_record_saved_before_profiles_and_flops_loads_without_them():
    info = BenchRecord(0.5, "tiny", "none", "diffusers", 4, "64x64", 0, rounds_s=[0.05]).to_extra_info()
    for name in ("profile", "flops", "flops_hits"):
        del info[name]
    loaded = BenchRecord.from_extra_info(info)
    assert (loaded.profile, loaded.flops, loaded.flops_hits) == ({}, None, None)


def test_profile_parts_add_up_to_the_profiled_generation():
    parts = Profile.of(record(0.8, 0.7, 26)).parts()
    assert sum(parts.values()) == pytest.approx(profile(26)["generation"])


def test_efficiency_per_round_pairs_each_round_with_its_uncached_partner():
    cached = record(0.8, 0.7, 26)
    cached.rounds_s, cached.paired_uncached_s = [0.70, 0.80], [5.0, 5.2]
    assert efficiency_rounds(cached, None, BLOCKS) == pytest.approx(
        [(5.0 - 26 * BLOCKS) / 0.70, (5.2 - 26 * BLOCKS) / 0.80])


def test_flops_text():
    assert [flops_text(x) for x in (2_969_501_696, 3.12e15, None)] == ["2.97 GFLOP", "3.12 PFLOP", "—"]


# ------------------------------------------------------------------------------------ the judge


def with_explanations(history: list[Run], flops_of=lambda label, index: 1000, slower=lambda label, index: 1.0,
                      hits: dict[str, int] | None = None) -> list[Run]:
    """Synthetic runs with hits, a profile per benchmark, FLOPs, and the cached rows' times times ``slower``."""
    hits = HITS if hits is None else hits
    for index, run in enumerate(history):
        for label, rec in run.records.items():
            h = hits.get(label, 0)
            if rec.threshold is not None:
                rec.hits, rec.hits_per_round, rec.hit_trace = h, [h] * len(rec.rounds_s), [True] * h + [False] * (STEPS - h)
                if h:  # the simulated times have no hits: make the cached rows as fast as their hits
                    scale = (5.0 - h * BLOCKS * 0.95) / 5.1
                    rec.rounds_s = [t * scale * slower(label, index) for t in rec.rounds_s]
            rec.profile = profile(h, rec.threshold is not None)
            rec.flops = flops_of(label, index)
    return history


def findings(results, metric: str) -> list[tuple[int, str, str]]:
    return [(i, row.label, v.status) for i, result in enumerate(results) for row in result.rows
            for v in row.verdicts if v.metric == metric and v.status in ("regression", "changed", "improvement")]


@pytest.mark.parametrize("regime", [GPU, CPU], ids=["gpu", "cpu"])
def test_aa_histories_give_no_efficiency_or_flops_finding(regime):
    found = []
    for seed in range(30):
        results = judge_series(with_explanations(simulate(regime, random.Random(seed), 8)))
        found += findings(results, EFFICIENCY) + findings(results, FLOPS)
    assert found == []


def test_a_slower_cached_path_with_unchanged_hits_is_an_efficiency_regression():
    history = with_explanations(simulate(GPU, random.Random(5), 8),
                                slower=lambda label, index: 1.10 if label == "0.8" and index == 7 else 1.0)
    result = judge_series(history)[-1]
    verdict = result.row("0.8").verdict(EFFICIENCY)
    assert verdict.status == "regression" and result.row("0.8").verdict("hits").status == "ok"
    assert "cached path" in verdict.detail


def test_rows_without_hits_have_no_efficiency_verdict_their_speedup_is_judged():
    result = judge_series(with_explanations(simulate(GPU, random.Random(1), 4)))[-1]
    assert result.row("0.1").verdict(EFFICIENCY) is None and result.row("0.8").verdict(EFFICIENCY) is not None


def test_any_flops_change_is_work_changed_also_on_a_cpu():
    history = with_explanations(simulate(CPU, random.Random(2), 3),
                                flops_of=lambda label, index: 1000 if index < 2 or label == "uncached" else 1003)
    result = judge_series(history)[-1]
    verdict = result.row("0.8").verdict(FLOPS)
    assert verdict.status == "changed" and result.regression
    assert "work changed: +0.3%" in verdict.detail
    assert result.row("uncached").verdict(FLOPS).status == "ok"


def test_flops_are_judged_from_a_benchmarks_second_run():
    verdict = judge_series(with_explanations(simulate(CPU, random.Random(2), 1)))[-1].row("0.8").verdict(FLOPS)
    assert verdict.status == "not judged" and verdict.runs_needed == 1


def test_a_history_of_runs_before_flops_and_profiles_compares_without_those_verdicts():
    results = judge_series(simulate(GPU, random.Random(4), 4))
    assert all(row.verdict(FLOPS) is None and row.verdict(EFFICIENCY) is None for row in results[-1].rows)


def test_old_and_new_runs_mixed_judge_flops_from_the_first_run_that_has_them():
    history = simulate(CPU, random.Random(6), 3)
    with_explanations(history[1:])
    verdict = judge_series(history)[-1].row("0.5").verdict(FLOPS)
    assert verdict.status == "ok"


# ------------------------------------------------------------------------------------ shown


def _run(records: list[BenchRecord]) -> Run:
    return Run(Path("0001_synthetic.json"), "2026-12-08T00:00:00", {"fbcache": {"fingerprint": {"accelerator": "gpu"}}},
               {}, {r.label: r for r in records})


def test_the_results_table_has_the_three_columns_only_when_the_run_measured_them():
    header, rows = results(run_records())
    assert header[-3:] == ["ideal ×", "efficiency", "FLOPs ×"]
    assert rows[-1][-3:] == [f"{5.0 / (5.0 - 26 * BLOCKS):.2f}x", f"{(5.0 - 26 * BLOCKS) / 0.7:.0%}", f"{1000 / 90:.2f}x"]
    old = [BenchRecord(None, "tiny", "none", "diffusers", 4, "64x64", 0, rounds_s=[0.1])]
    assert "efficiency" not in results(old)[0]
    assert markdown_table(old).count(NOT_MEASURED_NOTE) == 1


def test_the_report_says_why_with_measured_against_ideal_and_the_breakdown(tmp_path):
    run = _run(run_records())
    build_report([run], run, tmp_path, None)
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "## Why this speedup" in text and "![where the time goes](breakdown.png)" in text
    assert {"speedups.png", "breakdown.png"} <= {p.name for p in tmp_path.iterdir()}
    assert "Why this speedup" in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_a_report_of_a_run_without_them_has_no_such_section(tmp_path):
    old = [BenchRecord(None, "tiny", "none", "diffusers", 4, "64x64", 0, rounds_s=[0.1]),
           BenchRecord(0.5, "tiny", "none", "diffusers", 4, "64x64", 0, rounds_s=[0.05], hits=2, speedup=2.0)]
    run = _run(old)
    build_report([run], run, tmp_path, None)
    assert "Why this speedup" not in (tmp_path / "report.md").read_text(encoding="utf-8")
    assert not (tmp_path / "breakdown.png").exists()


def test_a_pairs_single_stream_hits_make_other_work_than_a_plain_threshold_with_the_same_hits():
    plain = [StepDecision(0, None, False), StepDecision(1, 0.1, True)]
    pair = [StepDecision(0, None, False, single_hit=False), StepDecision(1, 0.1, True, single_hit=True)]
    other_pair = [StepDecision(0, None, False, single_hit=False), StepDecision(1, 0.1, True, single_hit=False)]
    works = {work_of(0.1, plain), work_of(0.1, pair), work_of(0.1, other_pair)}
    assert len(works) == 3
    assert work_of(None, []) != work_of(0.0, [])
