"""Peak GPU memory: judged per benchmark against its segment, within max(2%, 3 x run-to-run spread)."""

from __future__ import annotations

import random
from pathlib import Path

from fbcache.history.storage import load_runs
from fbcache.verdicts.judge import PEAK_MEMORY, judge_series
from tools.verdict_rates import REGIMES, simulate

H100 = Path(__file__).parent / "data" / "h100-2026-11-25" / "history"
GPU = REGIMES[0]


def _h100_series():
    runs, _ = load_runs(H100)
    latest = runs[-1]
    return [r for r in runs if r.fingerprint_id == latest.fingerprint_id]


def test_recorded_h100_history_plus_ten_percent_peak_is_a_regression():
    runs = _h100_series()
    assert len(runs) >= 2 and all(r.peak_memory_bytes for r in runs[-1].records.values())
    label = sorted(runs[-1].records)[0]
    record = runs[-1].records[label]
    record.peak_memory_bytes = int(record.peak_memory_bytes * 1.10)
    result = judge_series(runs)[-1]
    verdict = result.row(label).verdict(PEAK_MEMORY)
    assert verdict.status == "regression" and result.regression


def test_recorded_h100_history_unedited_has_no_peak_memory_finding():
    result = judge_series(_h100_series())[-1]
    flagged = [row.label for row in result.rows
               if (v := row.verdict(PEAK_MEMORY)) is not None and v.status in ("regression", "improvement")]
    assert flagged == []


def _with_peaks(rng: random.Random, runs: int, spread: float, change=lambda label, i: 1.0):
    history = simulate(GPU, rng, runs)
    base = {label: rng.uniform(20, 30) * (1 << 30) for label in history[0].records}
    for index, run in enumerate(history):
        for label, record in run.records.items():
            record.peak_memory_bytes = int(base[label] * (1 + rng.uniform(-spread, spread)) * change(label, index))
    return history


def test_no_peak_memory_finding_in_100_aa_histories():
    findings = 0
    for seed in range(100):
        history = _with_peaks(random.Random(seed), 8, 0.002)
        for result in judge_series(history):
            findings += sum(1 for row in result.rows for v in row.verdicts
                            if v.metric == PEAK_MEMORY and v.status in ("regression", "improvement"))
    assert findings == 0


def test_ten_percent_more_peak_in_a_synthetic_history_is_flagged_on_that_run():
    history = _with_peaks(random.Random(7), 8, 0.002, lambda label, i: 1.10 if label == "0.1" and i == 7 else 1.0)
    verdict = judge_series(history)[-1].row("0.1").verdict(PEAK_MEMORY)
    assert verdict.status == "regression"


def test_peak_memory_waits_for_a_second_run_like_the_other_exact_values():
    history = _with_peaks(random.Random(3), 1, 0.002)
    verdict = judge_series(history)[-1].row("0.1").verdict(PEAK_MEMORY)
    assert verdict.status == "not judged" and verdict.runs_needed == 1


def test_cpu_runs_have_no_peak_memory_verdict():
    history = simulate(GPU, random.Random(1), 4)
    assert all(row.verdict(PEAK_MEMORY) is None for row in judge_series(history)[-1].rows)


def test_an_interleaved_benchmark_keeps_the_highest_peak_of_its_own_generations():
    from fbcache.plugin.schedule import Interleaved

    mine = Interleaved()
    for peak in (5, 9, None, 7):
        mine.add_peak(peak)
    assert mine.peak_memory_bytes == 9
