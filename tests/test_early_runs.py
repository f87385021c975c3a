"""What a compare of a short history judges, and says it judges (issue 21, "What reads wrong").

Hits and image metrics are exact: the second run of a benchmark is judged against the first. Time and
speedup need ``min_history`` (3) earlier runs to measure their run-to-run noise. The histories are
synthetic (tools/verdict_rates.py), built from the noise measured on the CPU VM, so these tests run
no sweep.
"""

from __future__ import annotations

import math
import random

from fbcache.verdicts import CompareResult, coverage, markdown
from fbcache.verdicts.judge import judge_series
from tools.verdict_rates import REGIMES, simulate

CPU = REGIMES[3]


def history(runs: int, seed: int = 1):
    built = simulate(CPU, random.Random(seed), runs)
    for run in built:
        run.records["0.1"].metrics["psnr"] = math.inf  # identical images, as the tiny model gives at 0.1
    return built


def table_row(text: str, label: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_run_2_rows_are_judged_on_hits_and_image_metrics_not_marked_not_judged():
    second = judge_series(history(2))[1]
    row = second.row("0.1")
    assert row.verdict("hits").status == "ok" and row.verdict("ssim").status == "ok"
    assert row.verdict("time").status == "not judged" and row.verdict("time").runs_needed == 2
    assert row.status == "ok"


def test_run_2_says_what_it_judged_and_when_time_will_be():
    text = markdown(judge_series(history(2))[1])
    assert "Judged on this run: hits, SSIM, PSNR." in text
    assert "Not judged yet: time, paired speedup after 2 more runs." in text
    assert table_row(text, "0.1")[2].endswith("(not judged yet)")


def test_a_hit_change_on_run_2_is_a_change():
    runs = history(2)
    record = runs[1].records["0.2"]
    record.hits, record.hits_per_round = 3, [3] * len(record.hits_per_round)
    record.hit_trace = [False, True, True, True] + record.hit_trace[4:]
    second = judge_series(runs)[1]
    assert second.row("0.2").status == "changed" and second.regression


def test_the_first_run_says_exact_values_are_judged_from_the_next_run():
    first = judge_series(history(1))[0]
    lines = coverage(first)
    assert lines[0] == "Judged on this run: nothing yet."
    assert lines[1].startswith("Not judged yet: hits, SSIM, PSNR from the next run; time, paired speedup after 3 more runs.")


def test_once_every_verdict_has_its_history_the_coverage_note_is_gone():
    fourth = judge_series(history(4))[3]
    assert fourth.row("0.1").verdict("time").status != "not judged"
    assert coverage(fourth) == []


def test_a_first_run_has_no_baseline_values():
    first = judge_series(history(1))[0]
    for metric in ("ssim", "hits"):
        assert first.row("0.1").verdict(metric).baseline is None
    row = table_row(markdown(first), "0.1")
    assert row[5:8] == ["1.0000 / —", "inf / —", "0 / —"]


def test_an_identical_image_reads_inf_not_missing():
    row = table_row(markdown(judge_series(history(2))[1]), "0.1")
    assert row[6] == "inf / inf"


def test_results_saved_before_runs_needed_existed_still_load_and_render():
    result = judge_series(history(2))[1]
    payload = result.to_json().replace('"runs_needed": 2', '"runs_needed": null')
    old = CompareResult.from_json(payload)
    assert old.row("0.1").verdict("time").runs_needed is None
    assert "Verdict: clean" in markdown(old)


def test_bounds_are_judged_from_the_first_run():
    runs = history(1)
    for record in runs[0].records.values():
        record.bounds = {"profile": "tiny", "violations": [], "reported": []}
    runs[0].records["0.5"].bounds["violations"] = ["threshold 0.5: ssim 0.7 is below min_ssim 0.72 (profile tiny)"]
    first = judge_series(runs)[0]
    assert coverage(first)[0] == "Judged on this run: bounds."
    assert first.row("0.1").status == "ok"
    assert first.row("0.5").status == "regression" and first.regression
