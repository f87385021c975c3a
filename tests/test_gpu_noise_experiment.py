"""The GPU noise experiment's CPU-side logic: scenarios, the injected slowdown, the table.

The experiment itself runs on a GPU (scripts/gpu-noise-experiment.sh); here the same driver runs
on the tiny model on the CPU, where the slowdown plugin spends CPU time on the host instead of sleeping on the GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics

import pytest

from fbcache.history.storage import run_files
from tools.gpu_noise_experiment import Scenario, main, per_step_ms, summarize, table
from tools.slowdown_plugin import cycles_for, parse


def test_scenarios_and_slowdown_specs_are_checked():
    assert Scenario.parse("cached:0.02") == Scenario("cached", 0.02)
    for bad in ("some:0.1", "all:x", "all:1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            Scenario.parse(bad)
    assert parse("all:12.5") == ("all", 12.5)
    with pytest.raises(ValueError):
        parse("uncached:1")
    assert cycles_for(2.0, 1_000_000.0) == 2_000_000


def test_per_step_time_and_summary_cells():
    run = {"benchmarks": [{"extra_info": {"threshold": None, "rounds_s": [5.6, 5.0, 5.2]}}]}
    assert per_step_ms(run, 28) == pytest.approx(5200 / 28)
    result = {"regression": True, "rows": [
        {"label": "uncached", "verdicts": [{"metric": "time", "status": "regression", "effect": 0.021, "mde": 0.01}]},
        {"label": "0.8", "verdicts": [{"metric": "speedup", "status": "ok", "effect": -0.004, "mde": 0.012}]}]}
    cells = summarize(result)
    assert cells == {"verdict": "REGRESSION", "alerts": "uncached time", "uncached time": "regression +2.1%, MDE 1.0%",
                     "0.8 speedup": "ok -0.4%, MDE 1.2%"}
    assert table([{"run": "x", **cells}]).splitlines()[0].startswith("| run | verdict |")


@pytest.mark.integration
def test_driver_runs_end_to_end_on_cpu_and_the_cached_slowdown_is_real(tmp_path):
    out = tmp_path / "exp"
    main(["--out", str(out), "--model", "tiny", "--device", "cpu", "--resolution", "64", "--steps", "4",
          "--rounds", "2", "--good", "2", "--bad", "1", "--thresholds", "0.8", "--scenario", "cached:0.5"])
    text = (out / "table.md").read_text()
    assert "| A/A #2 |" in text and "| cached +50% #1 |" in text
    runs = run_files(out / "cached-0.5" / "history")
    good, bad = (json.loads(p.read_text()) for p in runs[-2:])

    def paired_speedup(run: dict) -> float:
        info = next(b["extra_info"] for b in run["benchmarks"] if b["extra_info"]["threshold"] == 0.8)
        return statistics.median(u / c for u, c in zip(info["paired_uncached_s"], info["rounds_s"]))

    # the delay is in cached forwards only: the paired speedup (same-round partners) must fall
    assert paired_speedup(bad) < 0.85 * paired_speedup(good), (paired_speedup(good), paired_speedup(bad))
