"""``pytest benchmarks`` that must fail, and how: broken and interrupted runs stay out of the history,
bad input and an unwritable storage stop before any model is built, a model that cannot load fails
once. Separate from test_integration.py so that xdist (one file per worker) spreads the sweeps."""

from __future__ import annotations

import pytest

from conftest import FAST, MODEL

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("fault, expected", [("nan", "NaN/Inf pixels"), ("interrupt", "interrupted")])
def test_broken_or_interrupted_runs_stay_out_of_history(sweep, fault, expected):
    result = sweep("--fbcache-model", MODEL, *FAST, "--fbcache-thresholds", "0.1 0.5", "--benchmark-autosave",
                   env={"FBCACHE_TEST_FAULT": fault}, plugins=("plugins.faults",))
    assert result.returncode != 0
    assert expected in result.output
    assert result.saved_runs() == [], "a broken run must not reach the history"


def test_bad_input_fails_before_any_model_is_built(sweep):
    result = sweep("--fbcache-model", MODEL, "--fbcache-thresholds=0.1,-2", env={"FBCACHE_TEST_FAULT": "no-model"},
                   plugins=("plugins.faults",))
    assert result.returncode == 4
    assert "--fbcache-thresholds: invalid value '-2' (negative)" in result.output
    assert "MODEL WAS BUILT" not in result.output


def test_unwritable_storage_stops_before_any_model_is_built(sweep, tmp_path):
    blocker = tmp_path / "history"  # the storage path is a file: nothing can be saved under it
    blocker.write_text("")
    result = sweep("--fbcache-model", MODEL, *FAST, "--benchmark-autosave", env={"FBCACHE_TEST_FAULT": "no-model"},
                   plugins=("plugins.faults",))
    assert result.returncode == 4, result.output
    assert "--benchmark-storage: invalid value" in result.output and "is a file" in result.output
    assert "MODEL WAS BUILT" not in result.output


def test_a_model_that_fails_to_load_fails_once(sweep, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model_index.json").write_text("{}")
    result = sweep("--fbcache-model", str(broken), *FAST, "--fbcache-thresholds", "0 0.1 0.5", "--benchmark-autosave")
    assert result.returncode == 1
    # pytest's own short summary (shown under some -r settings) repeats each failure once more; count before it
    body = result.output.split("short test summary info")[0]
    assert body.count("failed to load") <= 4 + 1, "one line per benchmark and one summary at most"
    assert "history: NOT saved: 4 benchmark(s) broke, all with: Failed: fbcache: model" in result.output
    assert "failed to load: KeyError" in result.output
    assert result.saved_runs() == []


def test_environment_errors_name_the_variable(sweep):
    result = sweep(env={"FBCACHE_STEPS": "abc", "FBCACHE_TEST_FAULT": "no-model"}, plugins=("plugins.faults",))
    assert result.returncode == 4
    assert "FBCACHE_STEPS (for --fbcache-steps): invalid value 'abc'" in result.output
