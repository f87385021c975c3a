"""Option parsing and validation: every bad input names the option and what it accepts."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from fbcache import models
from fbcache.config import SEED_THRESHOLDS, HarnessConfig, parse_resolution, parse_thresholds
from fbcache.configure import build_config, options, resolve_raw
from fbcache.errors import ConfigError

NO_CUDA = (lambda: False, lambda: 0)
ONE_GPU = (lambda: True, lambda: 1)


def config(tmp_path: Path, cuda=NO_CUDA, **raw):
    raw.setdefault("model", "tiny-random")
    raw.setdefault("output_dir", str(tmp_path / "out"))
    return build_config(raw, cuda=cuda)


def test_defaults_are_the_seed_sweep(tmp_path):
    c = config(tmp_path)
    assert c.thresholds == SEED_THRESHOLDS
    assert (c.steps, c.width, c.height, c.device) == (28, 64, 64, "cpu")
    assert c.prompt == "A cute panda holding a sign that says hello world"
    assert not (tmp_path / "out").exists(), "validation must not create the output dir"


def test_thresholds_are_sorted_and_deduplicated():
    assert parse_thresholds("--fbcache-thresholds", "0.5, 0 0.1,0.5") == (0.0, 0.1, 0.5)


@pytest.mark.parametrize("raw, why", [("-0.1", "negative"), ("nan", "not finite"), ("inf", "not finite"),
                                      ("abc", "not a number"), ("0.1 x", "not a number"), ("", "no thresholds")])
def test_bad_thresholds_name_the_option(raw, why):
    with pytest.raises(ConfigError) as excinfo:
        parse_thresholds("--fbcache-thresholds", raw)
    message = str(excinfo.value)
    assert "--fbcache-thresholds" in message and why in message and "accepted: numbers >= 0" in message


@pytest.mark.parametrize("raw, expected", [("1024", (1024, 1024)), ("1024x768", (1024, 768)), ("64X48", (64, 48))])
def test_resolution(raw, expected):
    assert parse_resolution("--fbcache-resolution", raw) == expected


@pytest.mark.parametrize("raw", ["100", "1024x770", "0", "-16", "big", "16x"])
def test_bad_resolution(raw):
    with pytest.raises(ConfigError, match="--fbcache-resolution.*multiple of 16"):
        parse_resolution("--fbcache-resolution", raw)


@pytest.mark.parametrize("option, value, fragment", [
    ("steps", "0", "--fbcache-steps: invalid value '0' (less than 1)"),
    ("steps", "ten", "--fbcache-steps"),
    ("rounds", "0", "--fbcache-rounds"),
    ("warmup_rounds", "-1", "--fbcache-warmup-rounds"),
    ("model", "tinyy", "--fbcache-model: invalid value 'tinyy' (unknown model); accepted: tiny, tiny-random"),
    ("model", "./no/such/dir", "no such directory"),
    ("quant", "int3", "accepted: none, torchao-int8wo, torchao-int4wo, torchao-fp8, torchao-fp8-tensor, nunchaku"),
    ("compile", "max-autotune",
     "--fbcache-compile: invalid value 'max-autotune'; accepted: none, regional, regional+io, full"),
    ("cache_backend", "teacache", "accepted: diffusers, cache-dit, nunchaku"),
    ("device", "tpu", "accepted: auto, cpu, cuda, cuda:N"),
    ("device", "cuda", "CUDA was requested but torch sees no CUDA device"),
    ("seed", "-3", "--fbcache-seed"),
    ("force_compare", "maybe", "--fbcache-force-compare"),
])
def test_bad_values(tmp_path, option, value, fragment):
    with pytest.raises(ConfigError) as excinfo:
        config(tmp_path, **{option: value})
    assert fragment in str(excinfo.value)


def test_hub_ids_and_model_directories(tmp_path):
    assert models.source_for(config(tmp_path, model="black-forest-labs/FLUX.1-dev").model).name == "pretrained"
    folder = tmp_path / "flux"
    folder.mkdir()
    with pytest.raises(ConfigError, match="no model_index.json"):
        config(tmp_path, model=str(folder))
    (folder / "model_index.json").write_text("{}")
    assert config(tmp_path, model=str(folder)).model == str(folder.resolve())


def test_cuda_devices(tmp_path):
    assert config(tmp_path, cuda=ONE_GPU).device == "cuda"
    assert config(tmp_path, cuda=ONE_GPU, device="cuda:0").device == "cuda:0"
    with pytest.raises(ConfigError, match="no such CUDA device"):
        config(tmp_path, cuda=ONE_GPU, device="cuda:1")


def test_model_and_quantization_combinations(tmp_path):
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        config(tmp_path, model="flux-random")
    assert config(tmp_path, cuda=ONE_GPU, model="flux-random").resolution == "1024x1024"
    with pytest.raises(ConfigError, match="float8 needs a CUDA GPU"):
        config(tmp_path, quant="torchao-fp8")
    with pytest.raises(ConfigError, match="--fbcache-nunchaku-transformer"):
        config(tmp_path, cuda=ONE_GPU, model="org/flux", quant="nunchaku")


def test_output_dir_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="--fbcache-output-dir.*is a file"):
        config(tmp_path, output_dir=str(blocker / "images"))


class FakeConfig:
    def __init__(self, cli, ini):
        self.cli, self.ini = cli, ini

    def getoption(self, dest, default=None):
        return self.cli.get(dest, default)

    def getini(self, name):
        return self.ini.get(name, None)


def test_precedence_is_cli_then_env_then_ini():
    fake = FakeConfig(cli={"fbcache_steps": "5"}, ini={"fbcache_steps": "7", "fbcache_seed": "3",
                                                       "fbcache_rounds": "9"})
    raw = resolve_raw(fake, environ={"FBCACHE_STEPS": "6", "FBCACHE_SEED": "4"})
    assert (raw["steps"], raw["seed"], raw["rounds"]) == ("5", "4", "9")
    assert raw["model"] is None


def test_every_option_has_the_three_spellings():
    for spec in options():
        assert spec.cli == "--fbcache-" + spec.name.replace("_", "-")
        assert spec.env == "FBCACHE_" + spec.name.upper()
        assert spec.ini == "fbcache_" + spec.name


def test_thresholds_from_ini_string(tmp_path):
    assert config(tmp_path, thresholds="0.2 0.1").thresholds == (0.1, 0.2)
    assert not any(math.isnan(t) for t in config(tmp_path).thresholds)


def test_an_empty_prompt_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="--fbcache-prompt: invalid value '' \\(empty\\)"):
        config(tmp_path, prompt="")
    with pytest.raises(ConfigError, match="--fbcache-prompt"):
        config(tmp_path, prompt="   ")


def test_an_error_names_where_the_value_came_from():
    from fbcache.configure import source_of

    fake = FakeConfig(cli={"fbcache_seed": "1"}, ini={"fbcache_rounds": "x"})
    environ = {"FBCACHE_STEPS": "abc"}
    assert source_of(fake, "steps", environ) == "FBCACHE_STEPS"
    assert source_of(fake, "seed", environ) == "--fbcache-seed"
    assert source_of(fake, "rounds", environ) == "fbcache_rounds (ini)"
    error = ConfigError("--fbcache-steps", "abc", "a whole number >= 1", "not a whole number")
    assert str(error.from_source("FBCACHE_STEPS")).startswith(
        "FBCACHE_STEPS (for --fbcache-steps): invalid value 'abc' (not a whole number)")


def test_a_missing_nunchaku_transformer_is_said_in_words(tmp_path):
    with pytest.raises(ConfigError) as error:
        config(tmp_path, cuda=ONE_GPU, model="org/flux", quant="nunchaku")
    assert str(error.value).startswith("--fbcache-nunchaku-transformer is missing (")
    assert "None" not in str(error.value)


def test_clock_defaults_to_cpu_time_for_cpu_runs_and_refuses_it_on_a_gpu():
    from fbcache.config import resolve_clock
    from fbcache.errors import ConfigError

    assert resolve_clock("--fbcache-clock", "auto", "cpu", 1) == "cpu"
    assert resolve_clock("--fbcache-clock", "auto", "cpu", None) == "wall", "torch's own threads: wall time"
    assert resolve_clock("--fbcache-clock", "auto", "cuda", None) == "wall"
    assert resolve_clock("--fbcache-clock", "WALL", "cpu", 1) == "wall"
    with pytest.raises(ConfigError, match="--fbcache-clock") as refused:
        resolve_clock("--fbcache-clock", "cpu", "cuda:0", None)
    assert "auto, wall" in str(refused.value)
    with pytest.raises(ConfigError, match="auto, wall, cpu"):
        resolve_clock("--fbcache-clock", "gpu", "cpu", 1)


def test_the_schema_defaults_are_what_build_config_gives_without_options(tmp_path):
    """HarnessConfig's literal defaults (the tiny model's 28 steps, 64x64) agree with the registries'."""
    built = build_config({"output_dir": str(tmp_path)}, cuda=NO_CUDA, environ={})
    assert replace(built, output_dir=HarnessConfig().output_dir, clock="wall", extra={}) == HarnessConfig()


def test_the_nunchaku_options_keep_their_spellings_values_and_errors(tmp_path):
    specs = {spec.name: spec for spec in options()}
    assert [(specs[n].cli, specs[n].env, specs[n].ini, specs[n].nightly) for n in ("nunchaku_transformer",
                                                                                   "nunchaku_precision")] == [
        ("--fbcache-nunchaku-transformer", "FBCACHE_NUNCHAKU_TRANSFORMER", "fbcache_nunchaku_transformer", True),
        ("--fbcache-nunchaku-precision", "FBCACHE_NUNCHAKU_PRECISION", "fbcache_nunchaku_precision", False)]
    with pytest.raises(ConfigError, match="^--fbcache-nunchaku-precision: invalid value 'int8'; accepted: auto, int4, "
                                          "fp4$"):
        config(tmp_path, nunchaku_precision="int8")
    raw = resolve_raw(FakeConfig(cli={}, ini={"fbcache_nunchaku_transformer": "svdq.safetensors"}),
                      environ={"FBCACHE_NUNCHAKU_PRECISION": "FP4"})
    built = config(tmp_path, cuda=ONE_GPU, **{**{k: v for k, v in raw.items() if v is not None}, "model": "org/flux",
                                              "quant": "nunchaku"})
    assert (built.extra["nunchaku_transformer"], built.extra["nunchaku_precision"]) == ("svdq.safetensors", "fp4")


# ------------------------------------------------------------------- per-metric calibrate margins


@pytest.mark.parametrize("cli, environ, ini, margins", [
    ({"fbcache_calibrate_margin": ["ssim=0.05", "psnr=1.5"]}, {}, {}, {"ssim": 0.05, "psnr": 1.5}),
    ({}, {"FBCACHE_CALIBRATE_MARGIN": "ssim=0.05, psnr=1.5"}, {}, {"ssim": 0.05, "psnr": 1.5}),
    ({}, {}, {"fbcache_calibrate_margin": "psnr=3"}, {"psnr": 3.0}),
    ({"fbcache_calibrate_ssim_margin": "0.05"}, {}, {}, {"ssim": 0.05}),
    ({}, {"FBCACHE_CALIBRATE_SSIM_MARGIN": "0.05"}, {}, {"ssim": 0.05}),
    ({}, {}, {"fbcache_calibrate_ssim_margin": "0.05"}, {"ssim": 0.05}),
    ({"fbcache_calibrate_margin": ["psnr=1"]}, {"FBCACHE_CALIBRATE_SSIM_MARGIN": "0.05"}, {}, {"ssim": 0.05, "psnr": 1.0}),
    ({}, {}, {}, {}),
], ids=["repeated-flag", "env", "ini", "old-flag", "old-env", "old-ini", "both-spellings", "none"])
def test_calibrate_margins_are_per_metric_in_every_spelling(tmp_path, cli, environ, ini, margins):
    raw = resolve_raw(FakeConfig(cli=cli, ini=ini), environ=environ)
    assert build_config({**raw, "output_dir": str(tmp_path)}, cuda=NO_CUDA, environ={}).calibrate_margins == margins


@pytest.mark.parametrize("raw, message", [
    ({"calibrate_margin": "fid=0.1"}, "--fbcache-calibrate-margin: invalid value 'fid=0.1' (no METRIC 'fid'); "
                                      "accepted: METRIC=VALUE, METRIC one of ssim, psnr, lpips; several separated by commas"),
    ({"calibrate_margin": "ssim=1"}, "--fbcache-calibrate-margin: invalid value 'ssim=1' (out of range); accepted: "
                                     "ssim=VALUE, VALUE a number in [0, 1)"),
    ({"calibrate_margin": "psnr=-1"}, "--fbcache-calibrate-margin: invalid value 'psnr=-1' (out of range); accepted: "
                                      "psnr=VALUE, VALUE a finite number >= 0"),
    ({"calibrate_margin": "ssim"}, "--fbcache-calibrate-margin: invalid value 'ssim' (no METRIC=VALUE)"),
    ({"calibrate_margin": "ssim=0.1,ssim=0.2"}, "--fbcache-calibrate-margin: invalid value 'ssim=0.2' (ssim given twice)"),
    ({"calibrate_ssim_margin": "2"}, "--fbcache-calibrate-ssim-margin: invalid value '2' (out of range); accepted: a "
                                     "number in [0, 1)"),
    ({"calibrate_margin": "ssim=0.1", "calibrate_ssim_margin": "0.2"},
     "--fbcache-calibrate-ssim-margin: invalid value '0.2' (--fbcache-calibrate-margin sets ssim too); accepted: "
     "0.1, as --fbcache-calibrate-margin ssim=0.1 says, or only one of the two"),
], ids=["unknown-metric", "beyond-the-span", "negative", "no-value", "twice", "old-spelling", "two-spellings-disagree"])
def test_a_bad_calibrate_margin_names_the_option_and_what_it_accepts(tmp_path, raw, message):
    with pytest.raises(ConfigError) as refused:
        config(tmp_path, **raw)
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize("argv, tolerances", [
    (["--tolerance", "ssim=0.02", "--tolerance", "psnr=0.5"], {"ssim": 0.02, "psnr": 0.5}),
    (["--tolerance", "ssim=0.02,psnr=0.5"], {"ssim": 0.02, "psnr": 0.5}),
    (["--ssim-tolerance", "0.02"], {"ssim": 0.02}),
    ([], {}),
], ids=["repeated", "comma-separated", "old-spelling", "none"])
def test_compare_tolerances_are_per_metric_in_either_spelling(argv, tolerances):
    from fbcache.cli import build_parser, compare_settings

    args = build_parser().parse_args(["compare", *argv])
    assert compare_settings(args).tolerances == tolerances


@pytest.mark.parametrize("argv, margins", [
    (["--margin", "ssim=0.05", "--margin", "psnr=1"], {"ssim": 0.05, "psnr": 1.0}),
    (["--ssim-margin", "0.05"], {"ssim": 0.05}),
], ids=["repeated", "old-spelling"])
def test_calibrate_margins_of_the_verb_are_per_metric_in_either_spelling(argv, margins):
    from fbcache.cli import build_parser, metric_amounts

    args = build_parser().parse_args(["calibrate", "--out", "p.toml", *argv])
    assert metric_amounts(args, "margin") == margins
