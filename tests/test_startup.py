"""Model load and cold start: stored once per run, trended by the report, judged by compare as one value a run."""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import FAST, ROOT, run_sweep
from fbcache.history import COLD_START_LABEL, LOAD_LABEL, STARTUP_KEY, Startup, slowest_startup
from fbcache.history.storage import load_runs, run_files
from fbcache.verdicts import CompareSettings
from fbcache.verdicts.judge import STARTUP_MIN_DF, judge_series
from tools.startup_rates import aa_alarms, history, lognormal, measured_load_times, noise_models, resampled
from tools.verdict_rates import REGIMES, simulate

DATA = Path(__file__).parent / "data"
#: a real H100 run saved before the startup was stored (the old format)
H100 = DATA / "h100-2026-11-25" / "history"
QUIET = lognormal(0.02)


def _row(result, label):
    return result.row(label).verdict("time")


# ------------------------------------------------------------------------------ stored once per run


def test_a_run_file_without_a_startup_loads_and_compares():
    runs, skipped = load_runs(H100)
    assert skipped == [] and runs and all(run.startup is None for run in runs)
    result = judge_series([r for r in runs if r.fingerprint_id == runs[-1].fingerprint_id])[-1]
    assert [row.label for row in result.rows if row.label in (LOAD_LABEL, COLD_START_LABEL)] == []
    assert result.row("uncached").verdict("time") is not None


def _saved_history(tmp_path: Path, loads: list[float]) -> Path:
    """A storage of real run files (an H100 run of the old format, copied), each given a startup."""
    [source] = [p for p in run_files(H100) if p.name.startswith("0005_")]
    storage = tmp_path / "history"
    folder = storage / source.parent.name
    folder.mkdir(parents=True)
    for number, load in enumerate(loads, start=1):
        data = json.loads(source.read_text())
        data[STARTUP_KEY] = {"model_load_s": load, "cold_start_s": 7.3}
        (folder / f"{number:04d}_startup.json").write_text(json.dumps(data))
    return storage


def _edit_load(storage: Path, factor: float) -> None:
    """The newest run file, edited: its load time times ``factor``."""
    newest = run_files(storage)[-1]
    data = json.loads(newest.read_text())
    data[STARTUP_KEY]["model_load_s"] *= factor
    newest.write_text(json.dumps(data))


def test_a_run_file_keeps_its_startup_and_a_malformed_one_is_named(tmp_path: Path):
    storage = _saved_history(tmp_path, [12.5])
    [run], _ = load_runs(storage)
    assert run.startup == Startup(12.5, 7.3)
    newest = run_files(storage)[-1]
    data = json.loads(newest.read_text())
    data[STARTUP_KEY]["model_load_s"] = "slow"
    newest.write_text(json.dumps(data))
    runs, skipped = load_runs(storage)
    assert runs == [] and len(skipped) == 1 and "fbcache_startup.model_load_s = 'slow'" in skipped[0]


def _compare(storage: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fbcache", "compare", "--storage", str(storage)], cwd=ROOT,
                          capture_output=True, text=True)


def test_compare_flags_a_saved_run_edited_to_thirty_percent_more_load_time_and_alerts_when_the_next_confirms(
        tmp_path: Path):
    rng = random.Random(5)
    loads = [QUIET(rng) for _ in range(STARTUP_MIN_DF + 2)]
    storage = _saved_history(tmp_path, loads)
    _edit_load(storage, 1.30)
    first = _compare(storage)
    assert first.returncode == 0, first.stdout + first.stderr
    found = re.search(r"- model load time: \*\*advisory\*\*: \+(\d+\.\d)% beyond MDE", first.stdout)
    assert found and float(found.group(1)) > 25, first.stdout
    assert "alerts once a second run is beyond the gate" in first.stdout and "Verdict: clean" in first.stdout

    folder = run_files(storage)[-1].parent
    data = json.loads(run_files(storage)[-1].read_text())
    data[STARTUP_KEY]["model_load_s"] = loads[-1] * 1.30
    (folder / f"{len(loads) + 1:04d}_startup.json").write_text(json.dumps(data))
    second = _compare(storage)
    assert second.returncode == 1, second.stdout + second.stderr
    assert re.search(r"- model load time: \*\*regression\*\*: regressed since run 0012_startup", second.stdout), \
        second.stdout


def test_one_run_beyond_the_gate_after_one_inside_it_is_advisory_until_a_second_run_is_beyond():
    """The run before sits inside the gate but nearer the new level: the pair is one step, yet only one value of it
    is beyond the gate, so a startup time does not alert yet."""
    runs = STARTUP_MIN_DF + 7
    factors = {runs - 3: 1.05, runs - 2: 1.10, runs - 1: 1.10}
    results = judge_series(history(random.Random(5), runs, QUIET, QUIET, lambda index: factors.get(index, 1.0)))
    inside, first, second = (_row(result, LOAD_LABEL) for result in results[-3:])
    assert inside.status == "ok"
    assert first.status == "advisory" and "two runs worse together" in first.detail and not results[-2].regression
    assert second.status == "regression" and results[-1].regression


def test_with_too_little_history_a_startup_time_is_too_noisy_to_judge():
    series = history(random.Random(2), 6, QUIET, QUIET, lambda index: 1.30 if index == 5 else 1.0)
    first, *_, last = judge_series(series)
    assert _row(first, LOAD_LABEL).status == "not judged" and _row(first, LOAD_LABEL).pending
    verdict = _row(last, LOAD_LABEL)
    assert verdict.status == "too noisy to judge" and not last.regression
    assert f"a verdict needs {STARTUP_MIN_DF}" in verdict.detail and "judged after" in verdict.detail


def test_judged_once_its_noise_has_enough_degrees_of_freedom():
    series = history(random.Random(2), STARTUP_MIN_DF + 2, QUIET, QUIET)
    statuses = [_row(result, LOAD_LABEL).status for result in judge_series(series)]
    assert statuses[-1] == "ok" and statuses[-2] == "too noisy to judge"


def test_no_startup_alarm_in_100_aa_histories_of_measured_noise():
    """The fixture's measured GPU load times (a long upper tail), resampled, for the load and the cold start."""
    measured = resampled(measured_load_times())
    alarming, judged = aa_alarms(measured, measured)
    assert alarming == 0 and judged > 0


def test_the_measured_noise_model_is_named_after_the_fixture_s_device(tmp_path: Path):
    fixture = tmp_path / "load-times.json"
    fixture.write_text(json.dumps({"device": "NVIDIA A100-SXM4-80GB (GPU 0), torch 2", "model_load_s": {"1024": [9.0]}}))
    assert noise_models(fixture)[0][0] == "measured (NVIDIA A100-SXM4-80GB load times, resampled)"


def test_no_startup_alarm_in_100_aa_histories_of_log_normal_noise():
    alarming, judged = aa_alarms(lognormal(0.03), lognormal(0.03))
    assert alarming == 0 and judged >= 100


def test_a_real_cpu_history_of_startups_is_too_noisy_to_judge_and_says_why():
    runs, skipped = load_runs(DATA / "startup" / "cpu-tiny-2026-12-08" / "history")
    assert skipped == [] and len(runs) == 12 and all(run.startup and run.startup.cold_start_s for run in runs)
    result = judge_series(runs, None, CompareSettings(judge_cpu_timing=True))[-1]
    for label in (LOAD_LABEL, COLD_START_LABEL):
        verdict = _row(result, label)
        assert verdict.status == "too noisy to judge" and "exceeds 25%: run-to-run noise" in verdict.detail


def test_a_cpu_startup_regression_is_advisory_unless_cpu_timing_is_judged():
    cpu = REGIMES[3]
    rng = random.Random(4)
    series = simulate(cpu, rng, STARTUP_MIN_DF + 3)
    for index, run in enumerate(series):
        run.startup = Startup(QUIET(rng) * (1.30 if index >= STARTUP_MIN_DF + 1 else 1.0), QUIET(rng))
    advisory = _row(judge_series(series)[-1], LOAD_LABEL)
    assert advisory.status == "advisory" and "CPU timing" in advisory.detail
    judged = _row(judge_series(series, None, CompareSettings(judge_cpu_timing=True))[-1], LOAD_LABEL)
    assert judged.status == "regression"


# ------------------------------------------------------------------------------ measured in the session


def test_only_the_sessions_first_generation_is_its_cold_start(monkeypatch: pytest.MonkeyPatch):
    from fbcache.plugin import schedule

    ticks = iter(range(0, 1000, 5))
    monkeypatch.setattr(schedule.time, "perf_counter", lambda: float(next(ticks)))
    calls = []
    pipe = lambda **kwargs: calls.append(kwargs) or SimpleNamespace(images="image")  # noqa: E731
    config = SimpleNamespace(device="cpu", height=2, width=2, steps=2, case=lambda index: SimpleNamespace(text=None))
    session = SimpleNamespace(config=config, cold_start_s=None,
                              model=SimpleNamespace(pipe=pipe, kwargs_for=lambda prompt: {}))
    schedule.generate_once(session, None)
    schedule.generate_once(session, None)
    assert session.cold_start_s == 5.0 and len(calls) == 2


def test_shards_merge_into_the_slowest_startup():
    merged = slowest_startup([Startup(10.0, 7.0), None, Startup(12.0, None), Startup(11.0, 6.5)])
    assert merged == Startup(12.0, 7.0)
    assert slowest_startup([None, None]) is None


@pytest.mark.integration
def test_a_sweep_saves_its_startup_once_at_the_top_of_its_run_file(tmp_path: Path):
    sweep = run_sweep(tmp_path, *FAST, "--benchmark-autosave", "--fbcache-thresholds", "0.5")
    assert sweep.returncode == 0, sweep.output
    saved = sweep.last_run()
    startup = saved[STARTUP_KEY]
    assert startup["model_load_s"] > 0 and startup["cold_start_s"] > 0
    assert "first generation (cold start)" in sweep.output
    assert all(STARTUP_KEY not in bench["extra_info"] and "cold_start_s" not in bench["extra_info"]
               for bench in saved["benchmarks"])
    assert "cold_start_s" not in json.dumps(saved["machine_info"]), "machine_info must not differ run to run"
    [run], skipped = load_runs(sweep.storage)
    assert skipped == [] and run.startup == Startup(startup["model_load_s"], startup["cold_start_s"])


# ------------------------------------------------------------------------------ report


def test_the_report_trends_the_startup_and_says_when_a_run_has_none(tmp_path: Path):
    from fbcache.render.report import STARTUP_FIGURE, build_report

    storage = _saved_history(tmp_path, [12.0, 12.2, 11.9])
    runs, _ = load_runs(storage)
    out = tmp_path / "report"
    build_report(runs, runs[-1], out, None)
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "| model load | 11.90 s |" in text and "| cold start (first generation) | 7.30 s |" in text
    assert (out / STARTUP_FIGURE).is_file() and f"({STARTUP_FIGURE})" in text

    old, _ = load_runs(H100)
    shutil.rmtree(out)
    build_report(old, old[-1], out, None)
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "not recorded (a run saved before fbcache stored them)" in text
    assert not (out / STARTUP_FIGURE).exists()


def test_a_startup_is_never_negative_nor_infinite():
    for value in (-1.0, math.inf, True):
        with pytest.raises(ValueError, match="fbcache_startup.cold_start_s"):
            Startup.from_run({STARTUP_KEY: {"cold_start_s": value}})
