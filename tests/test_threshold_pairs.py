"""MULTI/SINGLE threshold pairs (a cache that decides twice per step, like nunchaku's double first-block
cache): parsed and checked, refused where a cache decides once per step or a nunchaku release has no
double cache, stored per stage, keyed by their label in bounds and fingerprints, shown as a second hit
map. Single thresholds keep every key they had, so saved histories still load and compare."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import tomllib

from fbcache.backends import DecisionLog
from fbcache.config import HarnessConfig, ThresholdPair, parse_thresholds, threshold_to_json
from fbcache.configure import build_config, check_environment
from fbcache.errors import BrokenRunError, ConfigError
from fbcache.history import BenchRecord, ordered, summarize
from fbcache.history.fingerprint import procedure_key, workload_key
from fbcache.history.storage import load_runs
from fbcache.render import hit_map, row
from fbcache.verdicts.bounds import calibrate, check, load_profile, parse_profile
from fbcache.verdicts.judge import HitsTracker

ROOT = Path(__file__).resolve().parent.parent
STANDINS = ROOT / "tests" / "standins"
NO_CUDA = (lambda: False, lambda: 0)
PAIR = ThresholdPair(0.09, 0.12)


# ------------------------------------------------------------------------------------------ parsing


def test_pairs_parse_sort_after_their_double_stream_threshold_and_deduplicate():
    parsed = parse_thresholds("--fbcache-thresholds", "0.12/0.12 0.1,0.09/0.12 0.09 0.09/0.12")
    assert parsed == (0.09, PAIR, 0.1, ThresholdPair(0.12, 0.12))
    assert [f"{t:g}" for t in parsed] == ["0.09", "0.09/0.12", "0.1", "0.12/0.12"]


@pytest.mark.parametrize("token, why", [("0.09/", "'' is not a number"), ("x/0.12", "'x' is not a number"),
                                        ("0.1/0.2/0.3", "a pair is two numbers, MULTI/SINGLE"),
                                        ("0.09/-0.12", "negative"), ("inf/0.12", "not finite")])
def test_a_bad_pair_is_one_line_naming_the_option_and_the_accepted_forms(token, why):
    with pytest.raises(ConfigError) as raised:
        parse_thresholds("--fbcache-thresholds", f"0.1 {token}")
    message = str(raised.value)
    assert message.startswith(f"--fbcache-thresholds: invalid value {token!r} ({why})"), message
    assert "MULTI/SINGLE pairs" in message and "'0.09/0.12 0.12/0.12'" in message and "\n" not in message


def test_a_pair_never_equals_or_replaces_its_double_stream_threshold():
    assert PAIR != 0.09 and 0.09 != PAIR
    assert sorted({PAIR: "pair", 0.09: "single"}.values()) == ["pair", "single"]


# ------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("backend", ["diffusers", "cache-dit"])
def test_a_one_stage_backend_refuses_a_pair_in_one_line_before_any_model(tmp_path, backend):
    with pytest.raises(ConfigError) as raised:
        build_config({"model": "tiny", "cache_backend": backend, "thresholds": "0.1 0.09/0.12",
                      "output_dir": str(tmp_path)}, cuda=NO_CUDA)
    message = str(raised.value)
    assert message.startswith("--fbcache-thresholds: invalid value '0.09/0.12'"), message
    assert f"the {backend} cache decides once per step" in message and "\n" not in message
    assert "MULTI/SINGLE pairs with a backend that decides twice per step: nunchaku" in message


def test_the_nunchaku_backend_takes_pairs_and_single_thresholds_together(tmp_path):
    built = build_config({"model": "tiny", "cache_backend": "nunchaku", "thresholds": "0.09/0.12 0.12",
                          "output_dir": str(tmp_path)}, cuda=NO_CUDA)
    assert built.thresholds == (PAIR, 0.12)


@pytest.fixture
def nunchaku_on_path(monkeypatch):
    """``put(folder)``: that folder's ``nunchaku`` is what ``import nunchaku`` finds, until the test ends."""
    def mine() -> list[str]:
        return [m for m in sys.modules if m == "nunchaku" or m.startswith("nunchaku.")]

    for name in mine():
        monkeypatch.delitem(sys.modules, name)

    def put(folder: Path) -> None:
        monkeypatch.syspath_prepend(str(folder))
        importlib.invalidate_caches()

    yield put
    for name in mine():
        del sys.modules[name]


def pair_config(tmp_path: Path) -> HarnessConfig:
    return HarnessConfig(model="tiny", cache_backend="nunchaku", thresholds=(PAIR, 0.12), output_dir=tmp_path)


@pytest.mark.parametrize("version", ["0.3.2", "1.1.0"])
def test_releases_with_the_double_cache_pass_preflight_with_pairs(tmp_path, nunchaku_on_path, version):
    nunchaku_on_path(STANDINS / f"nunchaku-{version}")
    check_environment(pair_config(tmp_path))


def test_a_release_without_the_double_cache_is_refused_for_pairs_before_any_model(tmp_path, nunchaku_on_path):
    """nunchaku 0.2.0's adapter (its real signature) takes residual_diff_threshold alone."""
    old = tmp_path / "nunchaku-0.2.0"
    shutil.copytree(STANDINS / "nunchaku-0.3.2", old, ignore=shutil.ignore_patterns("__pycache__"))
    (old / "nunchaku" / "__version__.py").write_text('__version__ = "0.2.0"\n')
    adapter = old / "nunchaku" / "caching" / "diffusers_adapters" / "flux.py"
    source, count = re.subn(r"def apply_cache_on_transformer\(.*?\):\n",
                            "def apply_cache_on_transformer(transformer: FluxTransformer2DModel, *, "
                            "residual_diff_threshold=0.12):\n", adapter.read_text(), count=1, flags=re.S)
    assert count == 1
    adapter.write_text(source)
    nunchaku_on_path(old)
    with pytest.raises(ConfigError) as raised:
        check_environment(pair_config(tmp_path))
    message = str(raised.value)
    assert message.startswith("--fbcache-thresholds: invalid value '0.09/0.12' (nunchaku 0.2.0 has no double "
                              "first-block cache"), message
    assert "use_double_fb_cache, residual_diff_threshold_multi, residual_diff_threshold_single" in message
    assert "\n" not in message


# ------------------------------------------------------------------------------------ decisions


def test_a_single_stream_decision_joins_its_step():
    log = DecisionLog()
    log.note_decision(hit=False)
    log.note_decision(hit=True, diff=0.05, single_stream=True)
    log.note_decision(hit=True, diff=0.02)
    log.note_decision(hit=False, diff=0.2, single_stream=True)
    steps = log.finish_generation()
    assert [(s.step, s.hit, s.single_hit, s.single_diff) for s in steps] == [(0, False, True, 0.05),
                                                                              (1, True, False, 0.2)]


def test_a_single_stream_decision_without_its_double_stream_decision_breaks_the_run():
    log = DecisionLog()
    with pytest.raises(BrokenRunError, match="out of step"):
        log.note_decision(hit=True, single_stream=True)


# -------------------------------------------------------------------------------------- records


def record(threshold, **fields) -> BenchRecord:
    return BenchRecord(threshold=threshold, model="tiny", quantization="none", cache_backend="nunchaku", steps=4,
                       resolution="64x64", seed=0, **fields)


def pair_record(single_trace: list[bool], **fields) -> BenchRecord:
    return record(PAIR, hits=1, computed_steps=3, hits_per_round=[1, 1], hit_trace=[False, True, False, False],
                  residual_diff_trace=[None, 0.05, 0.2, 0.3], single_hits=sum(single_trace),
                  single_hits_per_round=[sum(single_trace)] * 2, single_hit_trace=single_trace,
                  single_residual_diff_trace=[None, 0.1, 0.1, 0.2], **fields)


def test_a_pair_record_stores_both_stages_and_reads_back_equal():
    stored = pair_record([False, True, True, False], metrics={"ssim": 0.9, "psnr": 20.0})
    info = json.loads(json.dumps(stored.to_extra_info()))
    assert info["threshold"] == {"multi": 0.09, "single": 0.12}
    assert (info["single_hits"], info["single_hit_trace"]) == (2, [False, True, True, False])
    assert BenchRecord.from_extra_info(info) == stored


def test_a_single_threshold_record_keeps_the_layout_it_always_had():
    info = record(0.1, hits=1, hit_trace=[False, True, False, False]).to_extra_info()
    assert info["threshold"] == 0.1 and not [key for key in info if key.startswith("single")]


def test_records_and_summaries_list_uncached_then_thresholds_with_a_pair_after_its_plain_threshold():
    records = [record(t, prompt_index=p) for t in (0.1, PAIR, 0.09, None, ThresholdPair(0.0, 0.5)) for p in (1, 0)]
    assert [r.label for r in ordered(records)] == [
        "uncached[p0]", "uncached[p1]", "0/0.5[p0]", "0/0.5[p1]", "0.09[p0]", "0.09[p1]",
        "0.09/0.12[p0]", "0.09/0.12[p1]", "0.1[p0]", "0.1[p1]"]
    assert [s.label for s in ordered(reversed(summarize(records)))] == ["uncached", "0/0.5", "0.09", "0.09/0.12", "0.1"]


def test_a_stored_threshold_that_is_no_number_and_no_pair_is_refused_naming_the_field():
    info = pair_record([False] * 4).to_extra_info()
    info["threshold"] = {"multi": 0.09}
    with pytest.raises(ValueError, match=r"^extra_info.threshold = \{'multi': 0.09\}: .*neither a number nor"):
        BenchRecord.from_extra_info(info)


def test_saved_single_threshold_histories_load_and_keep_their_fingerprint(tmp_path):
    """A run saved before pairs existed: same records, and today's config of that sweep fingerprints alike."""
    history = ROOT / "tests" / "data" / "cpu-tiny-2026-12-07" / "history"
    runs, skipped = load_runs(history)
    assert (len(runs), skipped) == (3, [])
    labels = {label: r.threshold for run in runs for label, r in run.records.items()}
    assert labels == {"uncached": None, "0.1": 0.1, "0.2": 0.2, "0.8": 0.8}
    saved = runs[-1].machine_info["fbcache"]
    today = build_config({"model": "tiny", "thresholds": "0.1 0.2 0.8", "rounds": "5", "warmup_rounds": "1",
                          "output_dir": str(tmp_path)}, cuda=NO_CUDA)
    assert procedure_key(today) == saved["fingerprint"]["procedure"]
    assert workload_key(today) == saved["fingerprint"]["workload"]
    assert [threshold_to_json(t) for t in today.thresholds] == saved["procedure"]["thresholds"]


# -------------------------------------------------------------------------------------- bounds


def test_a_bounds_profile_keys_a_pair_by_its_label_apart_from_its_double_stream_threshold():
    profile = parse_profile({"profile": {"name": "pairs"}, "thresholds": {
        "0.09": {"min_ssim": 0.5}, "0.09/0.12": {"min_ssim": 0.9}}}, "pairs.toml")
    assert profile.bound_for(PAIR).image == {"ssim": 0.9} and profile.bound_for(0.09).image == {"ssim": 0.5}
    [violation] = check(profile, pair_record([False] * 4, metrics={"ssim": 0.8}))
    assert violation.message().startswith("threshold 0.09/0.12: ssim 0.8000 is below min_ssim 0.9")


def test_a_bad_pair_key_in_a_bounds_profile_names_the_file_and_the_key():
    with pytest.raises(ConfigError, match=r"pairs.toml: thresholds.'0.09/x': 'x' is not a number"):
        parse_profile({"thresholds": {"0.09/x": {"min_ssim": 0.9}}}, "pairs.toml")


def test_calibrate_writes_a_pair_under_its_label_and_single_thresholds_under_theirs(tmp_path):
    records = [record(None), record(0.1, speedup=2.0, metrics={"ssim": 0.95}),
               pair_record([False] * 4, speedup=1.5, metrics={"ssim": 0.9})]
    text = calibrate(records, speedup_margin=0.1, metric_margins={"ssim": 0.02}, name="cal", match={},
                     enforce_speedup=False, measured_on="cpu: test")
    assert sorted(tomllib.loads(text)["thresholds"]) == ["0.09/0.12", "0.1"]
    (tmp_path / "cal.toml").write_text(text)
    assert load_profile(tmp_path / "cal.toml").bound_for(PAIR).image == {"ssim": 0.88}


# ---------------------------------------------------------------------------------- verdicts, views


def test_a_flip_of_the_single_stream_decision_alone_is_a_hits_change():
    tracker = HitsTracker()
    tracker.judge(0, pair_record([False, True, True, False]), accepted=False)
    judged = tracker.judge(1, pair_record([False, True, False, False]), accepted=False)
    assert judged.status == "changed"
    assert "single-stream 2 -> 1, steps that flipped: [2]" in judged.detail


def test_a_pair_shows_both_stages_hits_and_a_second_hit_map():
    records = [record(None), record(0.1, hits=1, hit_trace=[False, True, False, False]),
               pair_record([False, True, True, False])]
    assert hit_map(records).splitlines() == ["0.09/0.12  #.##  1/4 hits", "     0.1  #.##  1/4 hits"]
    assert hit_map(records, single_stream=True).splitlines() == ["0.09/0.12  #..#  2/4 hits"]
    assert row(records[2])[5] == "1/4, single-stream 2/4"
    assert row(replace(records[2], single_hits_per_round=[2, 1]))[5] == \
        "1/4, single-stream 2/4 (varied: [1], single-stream [1, 2])"
