"""Prompt sets: the file formats and their errors, the fingerprint, shards, summaries, bounds on the mean
and on the worst prompt, and one real sweep of a set on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import FAST, ROOT
from fbcache.config import load_prompt_set, parse_shard
from fbcache.configure import build_config
from fbcache.errors import ConfigError
from fbcache.history import BenchRecord, summarize
from fbcache.history.fingerprint import workload_key
from fbcache.verdicts.bounds import calibrate, check, check_set, parse_profile

NO_CUDA = (lambda: False, lambda: 0)
TWO_GPUS = (lambda: True, lambda: 2)
OPTION = "--fbcache-prompts"


def config(tmp_path: Path, cuda=NO_CUDA, environ=None, **raw):
    raw.setdefault("model", "tiny-random")
    raw.setdefault("output_dir", str(tmp_path / "out"))
    return build_config(raw, cuda=cuda, environ=environ or {})


def test_the_shipped_default_set_has_eight_distinct_prompts():
    shipped = load_prompt_set(OPTION, "default", 0)
    assert len(shipped.cases) == 8 and len({c.text for c in shipped.cases}) == 8
    assert all(c.seed == 0 for c in shipped.cases)


@pytest.mark.parametrize("name, body, second_seed", [
    ("set.txt", "# comment\nfirst prompt\n\nsecond prompt\n", 3),
    ("set.toml", 'prompts = ["first prompt", "second prompt"]\n', 3),
    ("set.toml", '[[prompt]]\ntext = "first prompt"\n[[prompt]]\ntext = "second prompt"\nseed = 7\n', 7),
    ("set.json", json.dumps(["first prompt", {"prompt": "second prompt", "seed": 7}]), 7),
    ("set.json", json.dumps({"prompts": ["first prompt", "second prompt"]}), 3),
])
def test_formats(tmp_path, name, body, second_seed):
    path = tmp_path / name
    path.write_text(body)
    loaded = load_prompt_set(OPTION, str(path), 3)
    assert [c.text for c in loaded.cases] == ["first prompt", "second prompt"]
    assert loaded.cases[0].seed == 3, "a prompt without a seed takes --fbcache-seed"
    assert loaded.cases[1].seed == second_seed, "a prompt's own seed wins over --fbcache-seed"


@pytest.mark.parametrize("name, body, why", [
    ("missing.txt", None, "no such file"),
    ("empty.txt", "# only a comment\n\n", "the set has no prompts"),
    ("bad.toml", "prompts = [", "not valid TOML"),
    ("bad.json", '[{"prompt": "x", "seed": -1}]', "seed must be a whole number >= 0"),
    ("keys.json", '[{"prompt": "x", "sed": 1}]', "unknown key(s) sed"),
    ("twice.txt", "same\nsame\n", "appear twice"),
    ("blank.json", '[""]', "empty or missing prompt text"),
])
def test_bad_sets_are_one_line_config_errors(tmp_path, name, body, why):
    path = tmp_path / name
    if body is not None:
        path.write_text(body)
    with pytest.raises(ConfigError) as raised:
        config(tmp_path, prompts=str(path))
    message = str(raised.value)
    assert message.startswith(f"{OPTION}: invalid value") and why in message and "\n" not in message


def test_the_set_digest_is_in_the_fingerprint_and_a_single_prompt_keeps_its_key(tmp_path):
    single = config(tmp_path)
    assert workload_key(single).endswith("prompt f0979f5e"), "the key every saved single-prompt run has"
    with_set = config(tmp_path, prompts="default")
    other_seed = config(tmp_path, prompts="default", seed="1")
    assert "prompt set" in workload_key(with_set) and "(8 prompts)" in workload_key(with_set)
    assert workload_key(with_set) != workload_key(other_seed)
    shard = config(tmp_path, prompts="default", shard="1/2")
    assert workload_key(shard) == workload_key(with_set), "a shard has the whole set's fingerprint"


def test_shards_split_the_set_and_take_their_gpu(tmp_path):
    torchrun = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    shard = config(tmp_path, cuda=TWO_GPUS, environ=torchrun, prompts="default", device="cuda")
    assert shard.shard_indices == [1, 3, 5, 7] and shard.device == "cuda:1"
    other = config(tmp_path, cuda=TWO_GPUS, environ={**torchrun, "RANK": "0", "LOCAL_RANK": "0"}, prompts="default")
    assert sorted(other.shard_indices + shard.shard_indices) == list(range(8))
    assert config(tmp_path, environ=torchrun, prompts="default").device == "cpu"
    assert config(tmp_path, environ=torchrun, prompts="default", shard="off").shard is None
    with pytest.raises(ConfigError, match="--fbcache-shard: .*every shard needs a prompt"):
        config(tmp_path, environ=torchrun)
    with pytest.raises(ConfigError, match="--fbcache-shard: invalid value '2/2'"):
        parse_shard("--fbcache-shard", "2/2", {})
    with pytest.raises(ConfigError, match="LOCAL_RANK names a GPU"):
        config(tmp_path, cuda=TWO_GPUS, environ={"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "5"},
               prompts="default", device="cuda")


def record(threshold, prompt_index, median, hits=None, ssim=None, speedup=None) -> BenchRecord:
    return BenchRecord(threshold=threshold, model="tiny", quantization="none", cache_backend="diffusers", steps=8,
                       resolution="64x64", seed=0, rounds_s=[median], hits=hits, speedup=speedup,
                       metrics={} if ssim is None else {"ssim": ssim, "psnr": 30.0}, prompt_index=prompt_index,
                       prompt=None if prompt_index is None else f"prompt {prompt_index}")


def test_a_set_summary_is_mean_worst_and_the_speedup_of_the_whole_set():
    records = [record(None, 0, 1.0), record(None, 1, 3.0), record(0.5, 0, 0.5, 6, 0.9), record(0.5, 1, 1.5, 4, 0.7)]
    uncached, half = summarize(records)
    assert uncached.threshold is None and uncached.prompts == 2
    assert half.speedup == pytest.approx(4.0 / 2.0), "total uncached time over total cached time"
    assert (half.hits_mean, half.hits_min, half.hits_max) == (5.0, 4, 6)
    assert half.metrics["ssim"].mean == pytest.approx(0.8) and half.metrics["ssim"].worst == pytest.approx(0.7)
    [single] = [s for s in summarize([record(0.5, None, 1.0, 3, 0.9, speedup=2.0)])]
    assert single.speedup == 2.0 and single.metrics["ssim"].mean == single.metrics["ssim"].worst == 0.9


def test_bounds_on_the_mean_and_on_the_worst_prompt():
    profile = parse_profile({"profile": {"name": "set"}, "thresholds": {"0.5": {
        "min_ssim": 0.85, "min_ssim_worst": 0.75, "min_speedup": 1.5}}}, "set.toml")
    prompt = record(0.5, 1, 1.5, 4, 0.7)
    [worst] = check(profile, prompt)
    assert worst.key == "min_ssim_worst" and "(prompt p1)" in worst.message()
    assert check(profile, record(0.5, 0, 0.5, 6, 0.9)) == [], "a prompt is not held to the mean's floor"
    records = [record(None, 0, 1.0), record(None, 1, 3.0), record(0.5, 0, 0.5, 6, 0.9), prompt]
    [mean] = check_set(profile, summarize(records)[1])
    assert mean.key == "min_ssim" and "(mean of 2 prompts, worst p1)" in mean.message() and mean.worst_prompt == 1
    single = check(profile, record(0.5, None, 1.0, 3, 0.7, speedup=2.0))
    assert {v.key for v in single} == {"min_ssim", "min_ssim_worst"}, "one prompt is its own mean and worst"
    with pytest.raises(ConfigError, match="unknown key"):
        parse_profile({"thresholds": {"0.5": {"min_ssim_wrost": 0.1}}}, "typo.toml")


def test_calibrating_a_set_floors_the_mean_and_the_worst():
    records = [record(None, 0, 1.0), record(None, 1, 3.0), record(0.5, 0, 0.5, 6, 0.9), record(0.5, 1, 1.5, 4, 0.7)]
    text = calibrate(records, 0.15, {"ssim": 0.02}, name="x", match={}, enforce_speedup=False, measured_on="test")
    profile = parse_profile(__import__("tomllib").loads(text), "x.toml")
    bound = profile.bound_for(0.5)
    assert bound.image["ssim"] == pytest.approx(0.78) and bound.worst["ssim"] == pytest.approx(0.68)


def test_a_single_prompt_record_keeps_its_json_layout():
    info = record(0.5, None, 1.0, 3, 0.9).to_extra_info()
    assert "prompt_index" not in info and "prompt" not in info
    assert BenchRecord.from_extra_info(info).label == "0.5"
    with_set = record(0.5, 2, 1.0, 3, 0.9)
    assert BenchRecord.from_extra_info(with_set.to_extra_info()).label == "0.5[p2]"


@pytest.mark.integration
def test_a_set_sweep_and_a_bound_on_its_worst_prompt(sweep, tmp_path):
    prompts = tmp_path / "set.json"
    prompts.write_text(json.dumps(["a red circle at the top left", {"prompt": "a big blue square in the center",
                                                                      "seed": 3}]))
    profile = tmp_path / "strict.toml"
    profile.write_text('[profile]\nname = "strict"\n[thresholds."0.5"]\nmin_ssim_worst = 0.99999\n')
    result = sweep("--fbcache-prompts", str(prompts), "--fbcache-steps", "8", "--fbcache-thresholds", "0.5",
                   "--fbcache-rounds", "1", "--fbcache-warmup-rounds", "0", "--benchmark-autosave",
                   "--fbcache-bounds", str(profile), env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 1, result.output
    run = result.last_run()
    names = sorted(b["name"] for b in run["benchmarks"])
    assert names == ["test_threshold[t0.5-p0]", "test_threshold[t0.5-p1]", "test_uncached[p0]", "test_uncached[p1]"]
    by_name = {b["name"]: b["extra_info"] for b in run["benchmarks"]}
    assert by_name["test_threshold[t0.5-p1]"]["seed"] == 3 and by_name["test_uncached[p1]"]["seed"] == 3
    assert all(by_name[f"test_uncached[p{i}]"]["ssim"] == 1.0 for i in (0, 1)), "each prompt has its own reference"
    assert "(prompt p0): ssim" in result.output and "min_ssim_worst 0.99999" in result.output
    assert "marked: bounds broken" in result.output
    assert "| threshold | prompts | mean time (s) |" in result.output
    assert (result.output_dir / "flux_t0.5_p1_first.png").is_file()
    assert run["machine_info"]["fbcache"]["workload"]["prompt_set"]["count"] == 2
    assert str(ROOT) not in json.dumps(run["machine_info"]["fbcache"]["workload"]["prompt_set"])


#: the default prompt first: on the tiny model at 4 steps its SSIM at 0.5 is far below the two shapes'
WORST_FIRST = ["A cute panda holding a sign that says hello world", "a red circle at the top left",
               "a big blue square in the center"]


@pytest.mark.integration
def test_a_broken_bound_on_the_mean_marks_the_worst_prompt_not_the_last(sweep, tmp_path):
    prompts = tmp_path / "set.json"
    prompts.write_text(json.dumps(WORST_FIRST))
    profile = tmp_path / "mean.toml"
    profile.write_text('[profile]\nname = "mean"\n[thresholds."0.5"]\nmin_ssim = 0.99999\n')
    result = sweep("--fbcache-prompts", str(prompts), *FAST, "--fbcache-thresholds", "0.5", "--benchmark-autosave",
                   "--fbcache-bounds", str(profile))
    assert result.returncode == 1, result.output
    violations = {b["name"]: b["extra_info"]["bounds"]["violations"] for b in result.last_run()["benchmarks"]}
    ssim = {b["name"]: b["extra_info"]["ssim"] for b in result.last_run()["benchmarks"]}
    assert min(ssim, key=ssim.get) == "test_threshold[t0.5-p0]", ssim
    assert [name for name, found in violations.items() if found] == ["test_threshold[t0.5-p0]"]
    assert "(mean of 3 prompts, worst p0): ssim" in violations["test_threshold[t0.5-p0]"][0]
    assert "| 0.5[p0] ! |" in result.output and "| 0.5[p2] |" in result.output


@pytest.mark.integration
def test_a_prompt_set_sweep_runs_without_the_single_prompt_profile(sweep, tmp_path):
    """The tiny profile was calibrated on the default prompt: auto leaves a set of other prompts unbounded, in one line."""
    prompts = tmp_path / "set.json"
    prompts.write_text(json.dumps(WORST_FIRST[1:]))
    result = sweep("--fbcache-prompts", str(prompts), "--fbcache-steps", "28", "--fbcache-thresholds", "0.8",
                   "--fbcache-rounds", "1", "--fbcache-warmup-rounds", "0", "--benchmark-autosave")
    assert result.returncode == 0, result.output
    digest = result.last_run()["machine_info"]["fbcache"]["workload"]["prompt_set"]["digest"]
    assert (f"bounds: none: no profile matches this workload (prompt set {digest}): tiny (tiny.toml) was "
            "calibrated on prompt f0979f5e; calibrate one on it with --fbcache-calibrate") in result.output
