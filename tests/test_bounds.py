"""Bounds logic: floors per threshold, enforced or reported, resolution of profiles, calibration."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import tomllib

from fbcache.config import DEFAULT_PROMPT, load_prompt_set
from fbcache.errors import ConfigError
from fbcache.history import BenchRecord
from fbcache.history.fingerprint import match_facts, prompt_id
from fbcache.verdicts.bounds import (
    UNCALIBRATED,
    calibrate,
    check,
    load_profile,
    other_workload,
    parse_profile,
    resolve_profile,
)

PROFILE = {
    "profile": {"name": "demo", "enforce_speedup": False},
    "match": {"model": "tiny", "accelerator": "cpu"},
    "thresholds": {"0.1": {"min_speedup": 1.5, "min_ssim": 0.9}, "0.5": {"min_ssim": UNCALIBRATED}},
}


def record(threshold, speedup=None, ssim=None) -> BenchRecord:
    return BenchRecord(threshold=threshold, model="tiny", quantization="none", cache_backend="diffusers", steps=28,
                       resolution="64x64", seed=0, speedup=speedup,
                       metrics={} if ssim is None else {"ssim": ssim})


def test_kept_bounds_give_no_violation():
    profile = parse_profile(PROFILE, "demo.toml")
    assert check(profile, record(0.1, speedup=1.6, ssim=0.95)) == []
    assert check(profile, record(0.1, speedup=1.5, ssim=0.9)) == [], "a floor is inclusive"


def test_ssim_violation_names_threshold_value_and_bound():
    profile = parse_profile(PROFILE, "demo.toml")
    [violation] = check(profile, record(0.1, speedup=2.0, ssim=0.8))
    assert violation.enforced
    assert violation.message() == "threshold 0.1: ssim 0.8000 is below min_ssim 0.9 (profile demo)"


def test_speedup_is_reported_but_not_enforced_on_a_cpu_profile():
    [violation] = check(parse_profile(PROFILE, "demo.toml"), record(0.1, speedup=1.0, ssim=0.99))
    assert violation.metric == "speedup" and not violation.enforced
    assert "not enforced" in violation.message()
    enforcing = parse_profile({**PROFILE, "profile": {"name": "gpu", "enforce_speedup": True}}, "gpu.toml")
    [violation] = check(enforcing, record(0.1, speedup=1.0, ssim=0.99))
    assert violation.enforced


def test_uncalibrated_and_missing_thresholds_are_not_checked():
    profile = parse_profile(PROFILE, "demo.toml")
    assert "ssim" not in profile.bound_for(0.5).image
    assert check(profile, record(0.5, ssim=0.1)) == []
    assert check(profile, record(0.2, ssim=0.1)) == []
    assert check(profile, record(None, ssim=0.1)) == []


def test_bad_bound_values_are_config_errors():
    with pytest.raises(ConfigError, match="--fbcache-bounds"):
        parse_profile({"thresholds": {"0.1": {"min_ssim": "high"}}}, "bad.toml")
    with pytest.raises(ConfigError, match="threshold keys"):
        parse_profile({"thresholds": {"low": {"min_ssim": 0.5}}}, "bad.toml")


def test_resolve_auto_none_name_path(tmp_path: Path):
    floor = '[thresholds."0.5"]\nmin_ssim = 0.5\n'
    (tmp_path / "cpu.toml").write_text('[profile]\nname="cpu"\n[match]\nmodel="tiny"\naccelerator="cpu"\n' + floor)
    (tmp_path / "gpu.toml").write_text('[profile]\nname="gpu"\n[match]\nmodel="tiny"\naccelerator="A6000"\n' + floor)
    facts = {"model": "tiny", "accelerator": "cpu: AMD EPYC", "quantization": "none", "cache_backend": "diffusers"}
    assert resolve_profile("auto", tmp_path, facts).name == "cpu"
    assert resolve_profile("auto", tmp_path, {**facts, "accelerator": "NVIDIA RTX A6000"}).name == "gpu"
    assert resolve_profile("auto", tmp_path, {**facts, "model": "flux-random"}) is None
    assert resolve_profile("none", tmp_path, facts) is None
    assert resolve_profile("gpu", tmp_path, facts).name == "gpu"
    assert resolve_profile(str(tmp_path / "cpu.toml"), tmp_path, facts).name == "cpu"
    with pytest.raises(ConfigError, match="one of: cpu, gpu"):
        resolve_profile("tpu", tmp_path, facts)


def test_calibration_is_measured_minus_margin_and_round_trips(tmp_path: Path):
    text = calibrate([record(None), record(0.1, speedup=2.0, ssim=0.95), record(0.5, speedup=4.0, ssim=0.8)],
                     speedup_margin=0.15, metric_margins={"ssim": 0.02}, name="cal", match={"model": "tiny"},
                     enforce_speedup=False, measured_on="cpu: test")
    assert "min_speedup = measured speedup x (1 - 0.15)" in text
    data = tomllib.loads(text)
    assert data["thresholds"]["0.1"] == {"min_speedup": 1.7, "min_ssim": 0.93}
    assert data["thresholds"]["0.5"]["min_speedup"] == 3.4
    path = tmp_path / "cal.toml"
    path.write_text(text)
    profile = load_profile(path)
    assert not profile.enforce_speedup and profile.match == {"model": "tiny"}
    assert check(profile, record(0.1, speedup=2.0, ssim=0.95)) == []


def test_shipped_profiles_parse():
    shipped = sorted((Path(__file__).resolve().parent.parent / "benchmarks" / "bounds").glob("*.toml"))
    for path in shipped:
        profile = load_profile(path)
        assert profile.thresholds, path


@pytest.mark.parametrize("where, what", [("directory", "a directory"), ("/dev/zero", "a character device")])
def test_a_bounds_path_that_is_not_a_file_says_what_it_is(tmp_path: Path, where, what):
    path = tmp_path if where == "directory" else Path(where)
    with pytest.raises(ConfigError) as error:
        resolve_profile(str(path), tmp_path, {})
    assert f"invalid value {str(path)!r} ({what}, not a profile file); accepted: auto, none" in str(error.value)


def test_a_profile_with_a_byte_order_mark_loads_as_without(tmp_path: Path):
    text = '[profile]\nname = "bom"\n[thresholds."0.5"]\nmin_ssim = 0.5\n'
    (tmp_path / "plain.toml").write_text(text, encoding="utf-8")
    (tmp_path / "bom.toml").write_text(text, encoding="utf-8-sig")
    assert (tmp_path / "bom.toml").read_bytes().startswith(b"\xef\xbb\xbf")
    bom, plain = load_profile(tmp_path / "bom.toml"), load_profile(tmp_path / "plain.toml")
    assert (bom.name, bom.thresholds) == (plain.name, plain.thresholds)


SHIPPED = Path(__file__).resolve().parent.parent / "benchmarks" / "bounds"
DEFAULT_SET = load_prompt_set("--fbcache-prompts", "default", 0)


def tiny_cpu_facts(prompt_set: bool) -> dict[str, str]:
    """What a run of the tiny model on a CPU, 28 steps at 64x64, matches profiles with: the default prompt or set."""
    workload = {"steps": 28, "resolution": "64x64", "seed": 0, "prompt": DEFAULT_PROMPT,
                **({"prompt_set": DEFAULT_SET.describe()} if prompt_set else {})}
    return match_facts({"model": "tiny", "quantization": "none", "compile": {"mode": "none"},
                        "cache_backend": "diffusers", "accelerator": {"name": "cpu: AMD EPYC"}, "workload": workload})


def test_auto_applies_the_tiny_profile_to_the_prompt_it_was_calibrated_on():
    assert resolve_profile("auto", SHIPPED, tiny_cpu_facts(prompt_set=False)).name == "tiny"


def test_auto_applies_no_profile_to_a_prompt_set_and_says_why_in_one_line():
    facts = tiny_cpu_facts(prompt_set=True)
    assert resolve_profile("auto", SHIPPED, facts) is None
    assert other_workload(SHIPPED, facts) == (
        f"no profile matches this workload (prompt set {DEFAULT_SET.digest}): tiny (tiny.toml) was calibrated on "
        "prompt f0979f5e; calibrate one on it with --fbcache-calibrate")


def test_every_shipped_profile_states_its_workload():
    assert {path.name: load_profile(path).match.get("prompts") for path in SHIPPED.glob("*.toml")} == {
        path.name: f"prompt {prompt_id(DEFAULT_PROMPT)}" for path in SHIPPED.glob("*.toml")}


def test_a_profile_that_states_no_workload_holds_for_the_default_prompt_only(tmp_path: Path):
    legacy = tmp_path / "legacy.toml"
    legacy.write_text('[match]\nmodel = "tiny"\n[thresholds."0.8"]\nmin_ssim = 0.4\n')
    assert [p.name for p in [resolve_profile("auto", tmp_path, tiny_cpu_facts(prompt_set=False))]] == ["legacy"]
    assert resolve_profile("auto", tmp_path, tiny_cpu_facts(prompt_set=True)) is None


def test_calibrate_writes_the_workload_and_auto_holds_the_profile_to_it(tmp_path: Path):
    facts = tiny_cpu_facts(prompt_set=True)
    records = [replace(record(threshold, speedup=2.0, ssim=0.9), prompt_index=index)
               for threshold in (None, 0.5) for index in range(len(DEFAULT_SET.cases))]
    text = calibrate(records, 0.15, {"ssim": 0.02}, name="mine", match=facts, enforce_speedup=False, measured_on="t")
    assert f'\nprompts = "prompt set {DEFAULT_SET.digest}"  # calibrated on this set of 8 prompts only\n' in text
    (tmp_path / "mine.toml").write_text(text)
    assert resolve_profile("auto", tmp_path, facts).prompts == f"prompt set {DEFAULT_SET.digest}"
    assert resolve_profile("auto", tmp_path, tiny_cpu_facts(prompt_set=False)) is None
