"""Extending fbcache through its registries alone: one throwaway of each kind, defined here.

An image metric; a cache backend with its own option, preflight refusal, versions and fingerprint
settings; a quantization mode applied at load time (a transformer the model source uses instead of
its own) with its own option; and a model source with its own option. Each is registered with one
call and nothing in the package is edited. A plugin module (``-p``) registers them in the sweep's
process too: the options must reach pytest, the environment and the config, and the sweep must run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fbcache import backends, configure, metrics, models, quant
from fbcache.backends import BackendSpec
from fbcache.backends.diffusers import DiffusersFBCache
from fbcache.cli.main import main as fbcache_main
from fbcache.config.harness import HarnessConfig
from fbcache.config.options import OptionSpec, parse_choice, parse_int, parse_margin
from fbcache.errors import ConfigError
from fbcache.metrics.base import ImageMetric
from fbcache.models import LoadedModel, ModelSource
from fbcache.models.tiny import TINY_WEIGHTS, build_tiny_pipeline
from fbcache.quant import QuantMode
from fbcache.verdicts.bounds import load_profile

ROOT = Path(__file__).resolve().parent.parent
NO_CUDA = (lambda: False, lambda: 0)


def mean_abs_difference(image: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean(np.abs(image.astype(np.float64) - reference.astype(np.float64))))


THROWAWAY_METRIC = ImageMetric(name="mad", title="MAD", compute=mean_abs_difference, tolerance=0.5,
                               calibrate_margin=1.0, higher_is_better=False, decimals=3)

# ------------------------------------------------------------------- a backend with an option of its own

FLAVOUR = OptionSpec("throwaway_flavour", "what the throwaway backend records; 'refused' fails its preflight",
                     "renamed", "NAME", parse=lambda option, raw: parse_choice(option, raw, ("renamed", "plain", "refused")))


class RenamedFBCache(DiffusersFBCache):
    """diffusers' FirstBlockCache under another name: a backend defined outside the package."""

    name = "throwaway"


def refuse_a_flavour(config: HarnessConfig) -> None:
    if config.option(FLAVOUR) == "refused":
        raise ConfigError(FLAVOUR.cli, "refused", "renamed, plain", "the throwaway backend refuses it")


THROWAWAY_BACKEND = BackendSpec(name="throwaway", summary="test-only backend",
                                create=lambda pipe, config: RenamedFBCache(pipe), options=(FLAVOUR,),
                                preflight=refuse_a_flavour, versions=lambda: {"throwaway": "0.0"},
                                settings=lambda config: {"flavour": config.option(FLAVOUR)})

# ------------------------------------------------------------------- a quantization mode applied at load time

BITS = OptionSpec("throwaway_bits", "bits the throwaway mode rounds the tiny transformer's weights to", "8", "N",
                  parse=lambda option, raw: parse_int(option, raw, 2))


def rounded_transformer(config: HarnessConfig):
    """The trained tiny transformer with every weight rounded to ``2**bits - 1`` levels per tensor."""
    import torch

    transformer = build_tiny_pipeline(weights=TINY_WEIGHTS)[0].transformer
    levels = 2 ** config.option(BITS) - 1
    with torch.no_grad():
        for weight in transformer.parameters():
            step = float(weight.abs().max()) * 2 / levels
            if step > 0:
                weight.copy_(torch.round(weight / step) * step)
    return transformer


THROWAWAY_QUANT = QuantMode("throwaway-rounded", "test-only: the tiny transformer, rounded, loaded at load time",
                            options=(BITS,), load_transformer=rounded_transformer,
                            settings=lambda config: f"rounded to {config.option(BITS)} bits",
                            versions=lambda: {"throwaway-rounded": "0.0"})

# ------------------------------------------------------------------- a model source with an option of its own

GUIDANCE = OptionSpec("throwaway_guidance", "guidance scale of the throwaway model source", "3.5", "SCALE",
                      parse=lambda option, raw: parse_margin(option, raw, 100.0))


def load_throwaway(config: HarnessConfig) -> LoadedModel:
    pipe, spec = build_tiny_pipeline(weights=TINY_WEIGHTS, device=config.device)
    transformer = quant.transformer_for(config)
    if transformer is not None:
        pipe.register_modules(transformer=transformer.to(config.device))
    return LoadedModel(pipe=pipe, name=config.model, digest=f"throwaway around {config.quant}",
                       call_kwargs=dict(prompt=config.prompt, guidance_scale=config.option(GUIDANCE),
                                        max_sequence_length=spec.max_sequence_length))


THROWAWAY_SOURCE = ModelSource(name="throwaway-tiny", summary="test-only: the tiny FLUX around a load-time transformer",
                               matches=lambda value: value == "throwaway-tiny", load=load_throwaway,
                               default_resolution=(64, 64), options=(GUIDANCE,), takes_transformer=True)


def register_throwaways() -> None:
    """The only extension code: one registry call each."""
    metrics.register(THROWAWAY_METRIC)
    backends.register(THROWAWAY_BACKEND)
    quant.register(THROWAWAY_QUANT)
    models.register(THROWAWAY_SOURCE)


def unregister_throwaways() -> None:
    metrics.unregister(THROWAWAY_METRIC.name)
    backends.unregister(THROWAWAY_BACKEND.name)
    quant.unregister(THROWAWAY_QUANT.name)
    models.unregister(THROWAWAY_SOURCE.name)


PLUGIN = "from test_registries import register_throwaways\nregister_throwaways()\n"


@pytest.fixture
def throwaways():
    register_throwaways()
    yield
    unregister_throwaways()


class FakePytestConfig:
    def __init__(self, cli, ini):
        self.cli, self.ini = cli, ini

    def getoption(self, dest, default=None):
        return self.cli.get(dest, default)

    def getini(self, name):
        return self.ini.get(name, None)


def test_extension_options_reach_their_extension_from_the_command_line_environment_and_ini(throwaways, tmp_path):
    fake = FakePytestConfig(cli={"fbcache_throwaway_flavour": "plain"}, ini={"fbcache_throwaway_guidance": "2"})
    raw = configure.resolve_raw(fake, environ={"FBCACHE_THROWAWAY_BITS": "4"})
    config = configure.build_config({**raw, "output_dir": str(tmp_path)}, cuda=NO_CUDA, environ={})
    assert (config.option(FLAVOUR), config.option(BITS), config.option(GUIDANCE)) == ("plain", 4, 2.0)
    assert {"throwaway_flavour", "throwaway_bits", "throwaway_guidance"} <= {s.name for s in configure.options()}


def test_an_extension_option_error_names_the_option_and_where_it_came_from(throwaways, tmp_path):
    with pytest.raises(ConfigError) as error:
        configure.build_config({"throwaway_bits": "1", "output_dir": str(tmp_path)}, cuda=NO_CUDA, environ={})
    assert str(error.value.from_source("FBCACHE_THROWAWAY_BITS")) == (
        "FBCACHE_THROWAWAY_BITS (for --fbcache-throwaway-bits): invalid value '1' (less than 2); "
        "accepted: a whole number >= 2")


def test_a_backend_refuses_in_its_own_preflight(throwaways, tmp_path):
    config = configure.build_config({"cache_backend": "throwaway", "throwaway_flavour": "refused",
                                     "output_dir": str(tmp_path)}, cuda=NO_CUDA, environ={})
    with pytest.raises(ConfigError, match="^--fbcache-throwaway-flavour: invalid value 'refused'"):
        configure.check_environment(config)


def test_a_load_time_mode_is_refused_with_a_source_that_builds_its_own_transformer(throwaways, tmp_path):
    with pytest.raises(ConfigError, match="^--fbcache-quant: invalid value 'throwaway-rounded' \\(throwaway-rounded "
                                          "loads its own transformer, and the tiny model source builds its own"):
        configure.build_config({"model": "tiny", "quant": "throwaway-rounded", "output_dir": str(tmp_path)},
                               cuda=NO_CUDA, environ={})


def test_a_conftest_that_registers_an_extension_adds_its_options_to_the_command_line(tmp_path):
    """The fbcache plugin loads (entry point) before any conftest.py: options of extensions registered
    there are added when the conftest is registered, before pytest parses the command line."""
    (tmp_path / "conftest.py").write_text(PLUGIN)
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--co", "-q",
                           "--fbcache-throwaway-flavour", "plain", "test_nothing.py"], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.integration
def test_registered_extensions_of_every_kind_run_a_sweep_and_a_compare(sweep, tmp_path: Path, throwaways, capsys):
    (tmp_path / "throwaway_plugin.py").write_text(PLUGIN)
    env = {"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}:{tmp_path}", "FBCACHE_THROWAWAY_BITS": "6"}
    args = ("--fbcache-model", "throwaway-tiny", "--fbcache-quant", "throwaway-rounded",
            "--fbcache-cache-backend", "throwaway", "--fbcache-throwaway-flavour", "plain",
            "--fbcache-steps", "4", "--fbcache-rounds", "2", "--fbcache-warmup-rounds", "0",
            "--fbcache-thresholds", "0 0.5", "--fbcache-bounds", "none", "--benchmark-autosave")
    runs = [sweep(*args, env=env, plugins=("throwaway_plugin",)) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.output
    saved = runs[-1].last_run()

    # backend, quantization mode and model source ran; their versions and settings reached machine_info
    info = saved["machine_info"]["fbcache"]
    assert (info["model"], info["quantization"], info["cache_backend"]) == \
        ("throwaway-tiny", "throwaway-rounded", "throwaway")
    assert info["versions"]["throwaway"] == "0.0" and info["versions"]["throwaway-rounded"] == "0.0"
    assert info["fingerprint"]["cache_settings"] == '{"flavour": "plain"}'
    assert info["fingerprint"]["quant_config"] == "rounded to 6 bits", "the mode's option, from the environment"
    cached = next(b for b in saved["benchmarks"] if b["extra_info"]["threshold"] == 0.5)
    assert cached["extra_info"]["model_digest"] == "throwaway around throwaway-rounded"
    assert len(cached["extra_info"]["hit_trace"]) == 4 and cached["extra_info"]["hits"] > 0

    # the metric: extra_info, the results table
    assert all("mad" in b["extra_info"] for b in saved["benchmarks"])
    uncached = next(b for b in saved["benchmarks"] if b["extra_info"]["threshold"] is None)
    assert uncached["extra_info"]["mad"] == 0.0
    assert "| SSIM | PSNR | MAD |" in runs[-1].output

    # ... fbcache compare (in this process, where the test registered them)
    capsys.readouterr()
    # two runs of the same seeded generations: the same images, hits and MAD, and one earlier run is too
    # few to judge time, so the compare is clean and the new metric's verdicts say ok
    code = fbcache_main(["compare", "--storage", str(runs[-1].storage), "--json", str(tmp_path / "r.json")])
    assert code == 0
    assert "MAD" in capsys.readouterr().out
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert {v["status"] for row in rows for v in row["verdicts"] if v["metric"] == "mad"} == {"ok"}

    # ... and a calibrated profile, whose new key loads back as a bound
    profile = tmp_path / "mine.toml"
    assert fbcache_main(["calibrate", "--storage", str(runs[-1].storage), "--out", str(profile)]) == 0
    assert "max_mad = " in profile.read_text()
    assert "mad" in load_profile(profile).bound_for(0.5).image
