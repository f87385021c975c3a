"""``pytest benchmarks`` end to end in a subprocess, on the tiny model: what users run."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FAST, MODEL, ROOT, STEPS, run_sweep
from fbcache.history import BenchRecord
from fbcache.verdicts.bounds import load_profile

pytestmark = pytest.mark.integration

EXTRA_INFO_FIELDS = {
    "threshold", "first_s", "second_s", "median_s", "speedup", "hits", "computed_steps", "hits_per_round",
    "residual_diff_trace", "hit_trace", "ssim", "psnr", "peak_memory_bytes", "model", "quantization",
    "cache_backend", "model_digest", "bounds", "fbcache_schema",
}
STANDINS = ROOT / "tests" / "standins"
#: one sweep per supported layout, few enough steps and rounds for a busy 2-core CPU
NUNCHAKU_SWEEP = ["--fbcache-steps", "8", "--fbcache-rounds", "1", "--fbcache-warmup-rounds", "0",
                  "--fbcache-thresholds", "0 0.5", "--fbcache-cache-backend", "nunchaku"]


def standin_env(folder: Path) -> dict[str, str]:
    """Puts one nunchaku stand-in folder (tests only, not the engine; see its README) on the import path."""
    return {"PYTHONPATH": os.pathsep.join(map(str, (ROOT, ROOT / "tests", folder)))}


MACHINE_INFO_FIELDS = {"accelerator", "versions", "model", "quantization", "cache_backend", "fingerprint"}


ALL_THRESHOLDS = ("0", "0.01", "0.05", "0.1", "0.2", "0.5", "0.8")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One sweep of every default threshold, saved with raw rounds and calibrated, shared by the tests
    that only read what it wrote (never append to its storage: copy it)."""
    base = tmp_path_factory.mktemp("saved")
    result = run_sweep(base, "--fbcache-model", MODEL, *FAST, "--benchmark-autosave", "--benchmark-save-data",
                       "--fbcache-bounds", "none", "--fbcache-calibrate", str(base / "calibrated.toml"))
    assert result.returncode == 0, result.output
    return result


def copy_history(saved, tmp_path) -> None:
    shutil.copytree(saved.storage, tmp_path / "history")


@pytest.mark.xdist_group("saved-sweep")
def test_sweep_saves_every_field(saved):
    run = saved.last_run()
    names = sorted(b["name"] for b in run["benchmarks"])
    assert names == sorted(["test_uncached"] + [f"test_threshold[t{t}]" for t in ALL_THRESHOLDS])
    for bench in run["benchmarks"]:
        assert EXTRA_INFO_FIELDS <= set(bench["extra_info"]), bench["name"]
        assert bench["stats"]["rounds"] == 2 and len(bench["stats"]["data"]) == 2
    info = run["machine_info"]["fbcache"]
    assert MACHINE_INFO_FIELDS <= set(info)
    assert {"torch", "diffusers", "transformers", "fbcache"} <= set(info["versions"])
    assert {"name", "driver", "cuda"} <= set(info["accelerator"])
    assert "| threshold | 1st (s) | 2nd (s) | total (s) | speedup | hits/steps | SSIM | PSNR |" in saved.output
    assert "history: saved" in saved.output
    assert saved.saved_runs()[0].stat().st_mode & 0o777 == 0o644, "shared runners read the history as another user"
    for t in ("0", "0.1", "0.8"):
        assert (saved.output_dir / f"flux_t{t}_first.png").is_file()
        assert (saved.output_dir / f"flux_t{t}_second.png").is_file()
    recorded = json.loads((saved.output_dir / "fbcache-run.json").read_text())
    assert recorded["fingerprint"] == info["fingerprint"], "the images record which sweep made them"

    records = {BenchRecord.from_extra_info(b["extra_info"]).threshold: BenchRecord.from_extra_info(b["extra_info"])
               for b in run["benchmarks"]}
    uncached = records.pop(None)
    assert uncached.ssim == 1.0 and uncached.hits is None
    hits = [records[t].hits for t in sorted(records)]
    assert hits == sorted(hits), f"hits must never decrease as the threshold grows: {hits}"
    assert records[0.0].hits == 0 and records[0.0].ssim == 1.0 and hits[-1] > 0
    for record in records.values():
        assert len(record.hit_trace) == STEPS and record.hits_consistent
        assert record.hits + record.computed_steps == STEPS


@pytest.mark.xdist_group("saved-sweep")
def test_second_sweep_compares_against_the_first(saved, sweep, tmp_path):
    copy_history(saved, tmp_path)
    second = sweep("--fbcache-model", MODEL, *FAST, "--benchmark-autosave",
                   "--benchmark-compare", "--fbcache-bounds", "none")
    assert second.returncode == 0, second.output
    assert "Comparing against benchmarks from" in second.output
    assert len(second.saved_runs()) == 2


def test_bound_that_must_fail_exits_nonzero_and_is_kept_marked(sweep, tmp_path):
    profile = tmp_path / "strict.toml"
    profile.write_text('[profile]\nname = "strict"\n[thresholds."0.8"]\nmin_ssim = 0.99999\n')
    result = sweep("--fbcache-model", MODEL, *FAST, "--fbcache-thresholds", "0 0.8", "--benchmark-autosave",
                   "--fbcache-bounds", str(profile))
    assert result.returncode == 1, result.output
    assert "threshold 0.8: ssim" in result.output and "is below min_ssim 0.99999" in result.output
    assert "(profile strict)" in result.output
    run = result.last_run()
    marked = {b["name"]: b["extra_info"]["bounds"]["violations"] for b in run["benchmarks"]}
    assert marked["test_threshold[t0.8]"] and not marked["test_threshold[t0]"]
    assert "marked: bounds broken" in result.output


@pytest.mark.xdist_group("saved-sweep")
def test_mismatched_fingerprint_refuses_compare_unless_forced(saved, sweep, tmp_path):
    copy_history(saved, tmp_path)
    other = ("--fbcache-model", MODEL, *FAST, "--fbcache-thresholds", "0.5", "--fbcache-steps", "3",
             "--fbcache-rounds", "1", "--benchmark-compare")
    refused = sweep(*other)
    assert refused.returncode == 4
    assert "--benchmark-compare refused" in refused.output and "workload" in refused.output
    forced = sweep(*other, "--fbcache-force-compare")
    assert forced.returncode == 0, forced.output


def test_options_from_environment_lose_to_the_command_line(sweep):
    result = sweep("--fbcache-thresholds", "0.5", "--fbcache-rounds", "1", "--fbcache-warmup-rounds", "0",
                   env={"FBCACHE_MODEL": MODEL, "FBCACHE_STEPS": "3", "FBCACHE_THRESHOLDS": "0.1 0.2"})
    assert result.returncode == 0, result.output
    assert f"model {MODEL} |" in result.output and "| 3 steps |" in result.output
    assert "test_threshold[t0.5]" in result.output and "t0.1" not in result.output


@pytest.mark.parametrize("version", ["1.1.0", "0.3.2"])
def test_nunchaku_sweep_on_each_supported_layout(sweep, version):
    """The adapter on the 1.x and 0.3.2 decision paths (stand-ins checked against the engine's manifests)."""
    result = sweep("--fbcache-model", MODEL, *NUNCHAKU_SWEEP, "--benchmark-autosave",
                   env=standin_env(STANDINS / f"nunchaku-{version}"))
    assert result.returncode == 0, result.output
    run = result.last_run()
    assert run["machine_info"]["fbcache"]["versions"]["nunchaku"] == \
        f"stand-in of {version} (tests only, not the real engine)"
    records = {b["extra_info"]["threshold"]: b["extra_info"] for b in run["benchmarks"]}
    assert records[0.0]["hits"] == 0 and len(records[0.0]["hit_trace"]) == 8
    assert 0 < records[0.5]["hits"] < 8 and len(records[0.5]["hit_trace"]) == 8
    assert all(r["cache_backend"] == "nunchaku" for r in records.values())
    assert records[None]["ssim"] == 1.0 and records[0.5]["ssim"] < 1.0


@pytest.mark.parametrize("version", ["1.1.0", "0.3.2"])
def test_nunchaku_double_cache_sweep_counts_hits_per_stage_on_each_layout(sweep, version):
    """MULTI/SINGLE pairs through the double first-block cache on the 1.x and 0.3.2 stand-ins: each stage's
    hits stored, the pair in the fingerprint, two hit maps shown."""
    result = sweep("--fbcache-model", MODEL, *NUNCHAKU_SWEEP, "--fbcache-thresholds", "0.5 0/0.5", "--benchmark-autosave",
                   env=standin_env(STANDINS / f"nunchaku-{version}"))
    assert result.returncode == 0, result.output
    run = result.last_run()
    records = {json.dumps(b["extra_info"]["threshold"]): b["extra_info"] for b in run["benchmarks"]}
    pair = records['{"multi": 0.0, "single": 0.5}']
    assert (pair["hits"], len(pair["hit_trace"])) == (0, 8), "multi 0: the double-stream decision never hits"
    assert 0 < pair["single_hits"] < 8 and len(pair["single_hit_trace"]) == 8
    assert "single_hits" not in records["0.5"] and 0 < records["0.5"]["hits"] < 8
    assert "thresholds 0/0.5 0.5," in run["machine_info"]["fbcache"]["fingerprint"]["procedure"]
    assert run["machine_info"]["fbcache"]["cache_settings"] == {"use_double_fb_cache": True}
    single_map = result.output.split("Hits per step of the single-stream decision")[1]
    assert f"   0/0.5  {''.join('.' if hit else '#' for hit in pair['single_hit_trace'])}" in single_map
    assert (result.output_dir / "flux_t0-0.5_first.png").is_file()


def test_diffusers_refuses_a_threshold_pair_in_one_line_before_any_model_is_built(sweep):
    result = sweep("--fbcache-model", MODEL, *FAST, "--fbcache-thresholds", "0.1 0.09/0.12",
                   env={"FBCACHE_TEST_FAULT": "no-model"}, plugins=("plugins.faults",))
    assert result.returncode == 4, result.output
    [line] = [line for line in result.output.splitlines() if "0.09/0.12" in line]
    assert "--fbcache-thresholds: invalid value '0.09/0.12' (the diffusers cache decides once per step" in line
    assert "MODEL WAS BUILT" not in result.output and result.saved_runs() == []


def test_unsupported_nunchaku_release_is_refused_before_any_model_is_built(sweep, tmp_path):
    old = tmp_path / "nunchaku-0.3.1"
    shutil.copytree(STANDINS / "nunchaku-0.3.2", old, ignore=shutil.ignore_patterns("__pycache__"))
    (old / "nunchaku" / "__version__.py").write_text('__version__ = "0.3.1"\n')
    result = sweep("--fbcache-model", MODEL, *NUNCHAKU_SWEEP, "--benchmark-autosave",
                   env={**standin_env(old), "FBCACHE_TEST_FAULT": "no-model"}, plugins=("plugins.faults",))
    assert result.returncode == 4, result.output
    assert "nunchaku 0.3.1 is not supported" in result.output and "upgrade to nunchaku >= 0.3.2" in result.output
    assert "MODEL WAS BUILT" not in result.output and result.saved_runs() == []


def test_nunchaku_backend_without_baseline_first_still_has_a_reference(sweep):
    result = sweep("--fbcache-model", MODEL, *FAST, "--fbcache-cache-backend", "nunchaku",
                   "--fbcache-thresholds", "0.5", "-k", "threshold", env=standin_env(STANDINS / "nunchaku-1.1.0"))
    assert result.returncode == 0, result.output
    assert "| 0.5 |" in result.output


def test_cache_dit_sweep_saves_history_with_the_same_hits_as_diffusers(tmp_path):
    pytest.importorskip("cache_dit")
    args = ["--fbcache-model", MODEL, "--fbcache-steps", "8", "--fbcache-rounds", "1", "--fbcache-warmup-rounds", "0",
            "--fbcache-thresholds", "0 0.1 0.2 0.5 0.8", "--benchmark-autosave"]
    runs = {}
    for backend in ("cache-dit", "diffusers"):
        (tmp_path / backend).mkdir()
        result = run_sweep(tmp_path / backend, *args, "--fbcache-cache-backend", backend)
        assert result.returncode == 0, result.output
        runs[backend] = result.last_run()
    info = runs["cache-dit"]["machine_info"]["fbcache"]
    assert info["versions"]["cache-dit"] == importlib.metadata.version("cache-dit"), "the installed release"
    assert info["cache_backend"] == "cache-dit"
    assert info["cache_settings"]["max_warmup_steps"] == 0 and "cache_settings" in info["fingerprint"]
    records = {name: {b["extra_info"]["threshold"]: BenchRecord.from_extra_info(b["extra_info"])
                      for b in run["benchmarks"]} for name, run in runs.items()}
    for threshold in (0.0, 0.1, 0.2, 0.5, 0.8):
        ours, theirs = records["cache-dit"][threshold], records["diffusers"][threshold]
        assert ours.hit_trace == theirs.hit_trace, threshold
        assert ours.ssim == pytest.approx(theirs.ssim, abs=1e-4)
    assert [records["cache-dit"][t].hits for t in (0.0, 0.1, 0.2, 0.5, 0.8)] == [0, 1, 4, 6, 7]


def test_the_default_workload_checks_the_shipped_tiny_profile(sweep):
    """The default model, steps and resolution, so ``--fbcache-bounds auto`` picks the shipped tiny profile;
    one threshold and one round, since hits and SSIM are deterministic."""
    result = sweep("--fbcache-thresholds", "0.1", "--fbcache-rounds", "1", "--fbcache-warmup-rounds", "0")
    assert result.returncode == 0, result.output
    assert "bounds: profile tiny" in result.output and "all enforced bounds kept" in result.output
    assert "| 0.1 |" in result.output and "18/28" in result.output


@pytest.mark.xdist_group("saved-sweep")
def test_calibrate_writes_a_profile_that_the_same_run_keeps(saved, sweep, tmp_path):
    profile = saved.storage.parent / "calibrated.toml"
    calibrated = load_profile(profile)
    run = saved.last_run()
    ssim = {b["extra_info"]["threshold"]: b["extra_info"]["ssim"] for b in run["benchmarks"]}
    assert calibrated.bound_for(0.5).image["ssim"] == round(ssim[0.5] - 0.02, 4)
    assert not calibrated.enforce_speedup and calibrated.match["steps"] == str(STEPS)
    again = sweep("--fbcache-model", MODEL, *FAST, "--fbcache-thresholds", "0.1 0.5", "--fbcache-bounds", str(profile))
    assert again.returncode == 0 and "all enforced bounds kept" in again.output
    from_history = tmp_path / "from-history.toml"
    done = subprocess.run([sys.executable, "-m", "fbcache", "calibrate", "--storage", str(saved.storage),
                           "--out", str(from_history)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert load_profile(from_history).bound_for(0.5).image["ssim"] == calibrated.bound_for(0.5).image["ssim"]
