"""`fbcache compare` on real runs: unchanged code compares clean; injected regressions are flagged.

Six real sweeps of the tiny model (default settings, thresholds 0.1 0.2 0.8: interleaved rounds, one torch thread) make an
A/A history on this noisy 2-core machine. Injected regressions are copies of the newest real run
with one thing changed. Time injections use recorded histories in tests/data (a real H100 one, and a
CPU one whose third run is edited to +20%), so no verdict depends on the load of the machine running
the tests.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_sweep
from fbcache.history.storage import load_acceptances, load_runs, run_files
from fbcache.verdicts import CompareSettings
from fbcache.verdicts.judge import judge_latest
from tools.cpu_aa_check import scale_times

# one worker builds the A/A history once and runs every test that reads it (xdist --dist loadgroup)
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("aa-history")]
AA_RUNS = 6
#: the rows the tests read (0.1: SSIM, 0.2: hits) and the most-cached one; fewer rows, a faster history
AA_THRESHOLDS = "0.1 0.2 0.8"


@pytest.fixture(scope="module")
def aa_history(tmp_path_factory) -> Path:
    """Six sweeps of unchanged code, default settings (4 steps and three thresholds to stay quick), one storage."""
    base = tmp_path_factory.mktemp("aa")
    for _ in range(AA_RUNS):
        sweep = run_sweep(base, "--benchmark-autosave", "--fbcache-steps", "4", "--fbcache-rounds", "3",
                          "--fbcache-thresholds", AA_THRESHOLDS)
        assert sweep.returncode == 0, sweep.output
    storage = base / "history"
    assert len(run_files(storage)) == AA_RUNS
    return storage


def judge(storage: Path, index: int = -1, settings: CompareSettings = CompareSettings()):
    runs, skipped = load_runs(storage)
    assert not skipped
    return judge_latest(runs, runs[index], load_acceptances(storage)[0], settings)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fbcache", *args], cwd=ROOT, capture_output=True, text=True)


def test_aa_five_comparisons_are_clean(aa_history):
    for index in range(1, AA_RUNS):
        result = judge(aa_history, index)
        assert not result.regression, [(label, v.metric, v.detail) for label, v in result.alerts]
        statuses = {v.status for row in result.rows for v in row.verdicts if v.metric in ("time", "speedup")}
        assert statuses <= {"ok", "not judged", "improvement", "advisory", "too noisy to judge"}, statuses
        assert {row.verdict("hits").status for row in result.rows if row.verdict("hits")} == {"ok"}
    done = cli("compare", "--storage", str(aa_history))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Verdict: clean" in done.stdout


def inject(storage: Path, change) -> Path:
    """A copy of the newest run, changed by ``change(benchmark_dict)``, saved as the next run."""
    newest = run_files(storage)[-1]
    data = json.loads(newest.read_text())
    for bench in data["benchmarks"]:
        change(bench)
    number = int(newest.name.split("_")[0]) + 1
    target = newest.with_name(f"{number:04d}_injected.json")
    target.write_text(json.dumps(data))
    return target


def slower(factor: float):
    """Every time of a benchmark x ``factor``, its paired uncached partners unchanged."""
    return lambda bench: scale_times(bench, factor, paired=False)


def at(label: float, change):
    def only(bench: dict) -> None:
        if bench["extra_info"]["threshold"] == label:
            change(bench["extra_info"])
    return only


@pytest.fixture
def history(aa_history, tmp_path) -> Path:
    copy_ = tmp_path / "history"
    shutil.copytree(aa_history, copy_)
    return copy_


H100_HISTORY = ROOT / "tests" / "data" / "h100-2026-11-25" / "history"


def test_time_plus_15_percent_is_flagged_and_stays_flagged(tmp_path):
    history = tmp_path / "h100"
    shutil.copytree(H100_HISTORY, history)
    assert not judge(history).regression, "the real H100 runs compare clean"
    first_bad = inject(history, slower(1.15))
    result = judge(history)
    flagged = {label for label, v in result.alerts}
    # four thin earlier runs (2-3 rounds, two threshold sets): 0.5 (MDE 15%) and 0.8 (too noisy) are not
    assert {"uncached", "all benchmarks"} <= flagged, [r.verdict("time").detail for r in result.rows]
    assert all(v.metric == "time" for _, v in result.alerts), "a uniform slowdown keeps speedup, SSIM and hits"
    whole = result.row("all benchmarks").verdict("time")
    assert "geometric mean of all median times" in whole.detail and whole.mde is not None
    # the next night is just as slow: still a regression, and it says since when
    inject(history, lambda bench: None)
    again = judge(history).row("uncached").verdict("time")
    assert again.status == "regression" and again.since == first_bad.stem
    assert f"regressed since run {first_bad.stem}" in again.detail


def test_accepting_a_regression_clears_it_without_touching_run_files(tmp_path):
    history = tmp_path / "h100"
    shutil.copytree(H100_HISTORY, history)
    bad = inject(history, slower(1.15))
    before = {p: p.read_bytes() for p in run_files(history)}
    assert cli("compare", "--storage", str(history)).returncode == 1
    done = cli("accept", bad.stem[:4], "--storage", str(history), "--reason", "bigger model on purpose")
    assert done.returncode == 0, done.stderr
    assert {p: p.read_bytes() for p in run_files(history)} == before, "pytest-benchmark's files stay as they were"
    sidecar = bad.with_name(f"fbcache-accept-{bad.stem}.json")
    assert json.loads(sidecar.read_text())["reason"] == "bigger model on purpose"
    assert not any(p.name.startswith(".fbcache-") for p in bad.parent.iterdir()), "no temporary file left"
    after = cli("compare", "--storage", str(history))
    assert after.returncode == 0 and "accepted" in after.stdout, after.stdout
    inject(history, lambda bench: None)
    assert cli("compare", "--storage", str(history)).returncode == 0, "the new level is the baseline now"


CPU_HISTORY = ROOT / "tests" / "data" / "cpu-tiny-2026-12-07" / "history"


def test_cpu_run_edited_to_plus_20_percent_on_a_noisy_cpu_history_is_too_noisy_never_ok(tmp_path):
    """Three recorded CPU runs (28 steps, 5 rounds, on a loaded shared 2-core machine: run-to-run noise
    about 4%) and a copy of the third at +20%, judged with --judge-cpu-timing.

    Three baseline runs with that noise cannot support a verdict on 20%: every time and speedup row
    says so, with the measured noise, and nothing is called ok or improved on a guess. A recorded
    history, so the outcome never depends on how busy the machine running the tests is.
    """
    history = tmp_path / "cpu"
    shutil.copytree(CPU_HISTORY, history)
    inject(history, slower(1.20))
    assert not judge(history).regression, "CPU timing is advisory by default"
    judged = judge(history, settings=CompareSettings(judge_cpu_timing=True))
    timing = [v for row in judged.rows for v in row.verdicts if v.metric in ("time", "speedup")]
    assert len(timing) == 8, "time of the 4 benchmarks and of all of them; speedup of the 3 cached ones"
    assert not judged.regression
    for verdict in timing:
        assert verdict.status == "too noisy to judge", verdict.detail
        assert "run-to-run noise" in verdict.detail and "exceeds 25%" in verdict.detail, verdict.detail


def test_ssim_drop_of_005_is_flagged(history):
    inject(history, at(0.1, lambda info: info.update(ssim=info["ssim"] - 0.05)))
    result = judge(history)
    assert [(label, v.metric, v.status) for label, v in result.alerts] == [("0.1", "ssim", "regression")]


def test_changed_hit_count_is_flagged(history):
    def one_more_hit(info: dict) -> None:
        trace = info["hit_trace"]
        step = trace.index(False, 1)
        trace[step] = True
        info.update(hits=info["hits"] + 1, computed_steps=info["computed_steps"] - 1,
                    hits_per_round=[h + 1 for h in info["hits_per_round"]])

    inject(history, at(0.2, one_more_hit))
    result = judge(history)
    [(label, verdict)] = result.alerts
    assert (label, verdict.metric, verdict.status) == ("0.2", "hits", "changed")
    counts = re.search(r"(\d+) -> (\d+) of 4\b", verdict.detail)  # the A/A history runs 4 steps
    assert counts and int(counts[2]) == int(counts[1]) + 1, verdict.detail


def test_compare_cli_exit_codes_and_json(history, tmp_path):
    inject(history, at(0.1, lambda info: info.update(ssim=info["ssim"] - 0.05)))
    out = tmp_path / "result.json"
    done = cli("compare", "--storage", str(history), "--json", str(out))
    assert done.returncode == 1 and "Verdict: REGRESSION" in done.stdout
    assert json.loads(out.read_text())["regression"] is True
    assert cli("compare", "--storage", str(tmp_path / "nowhere")).returncode == 2
    assert cli("compare", "--storage", str(history), "--baseline", "0099").returncode == 2
    gone = cli("compare", "--storage", str(history), "--baseline", "previous")
    assert gone.returncode == 2 and "persistent regressions" in gone.stderr


def test_corrupt_and_foreign_files_are_named_and_skipped(history):
    machine = run_files(history)[-1].parent
    (machine / "0098_partial.json").write_text('{"machine_info": {"fbcache"')
    (machine / "0099_foreign.json").write_text(json.dumps({"benchmarks": [], "machine_info": {}}))
    done = cli("compare", "--storage", str(history), "--latest", run_files(history)[AA_RUNS - 1].stem)
    assert done.returncode == 0, done.stderr
    assert "0098_partial.json" in done.stderr and "0099_foreign.json" in done.stderr


def test_fingerprints_are_never_mixed(history):
    newest = run_files(history)[-1]
    data = json.loads(newest.read_text())
    data["machine_info"]["fbcache"]["fingerprint"]["workload"] = "10 steps, 64x64, seed 0, prompt x"
    for bench in data["benchmarks"]:
        bench["extra_info"]["ssim"] = 0.0  # would be a huge regression if it were mixed in
    newest.with_name("0050_other.json").write_text(json.dumps(data))
    runs, _ = load_runs(history)
    latest = runs[-1]
    assert latest.name == "0050_other"
    alone = judge(history)
    assert alone.baseline == "nothing: the first run with this fingerprint" and not alone.regression
    assert judge(history, -2).regression is False
