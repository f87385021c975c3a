"""Extending fbcache through its registries alone: one throwaway of each kind, defined here.

An image metric (and one whose package is missing); a cache backend with its own option, preflight
refusal, versions and fingerprint settings; a quantization mode applied at load time (a transformer
the model source uses instead of its own) with its own option; a model source with its own option;
and an alert sink with its own option. Each is registered with one call and nothing in the package
is edited. A plugin module (``-p``) registers them in the sweep's process too: the options must reach
pytest, the environment and the config, and the sweep must run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fbcache import alerts, backends, configure, metrics, models, quant
from fbcache.alerts import AlertSink, Finding, Outcome
from fbcache.backends import BackendSpec
from fbcache.backends.diffusers import DiffusersFBCache
from fbcache.cli import main as fbcache_main
from fbcache.config import HarnessConfig, OptionSpec, parse_choice, parse_int, parse_margin
from fbcache.errors import EXIT_REGRESSION, EXIT_USAGE, ConfigError
from fbcache.metrics import ImageMetric
from fbcache.models import LoadedModel, ModelSource
from fbcache.models.tiny import TINY_WEIGHTS, build_tiny_pipeline
from fbcache.quant import QuantMode
from fbcache.verdicts import CompareResult, CompareSettings, ThresholdResult, Verdict
from fbcache.verdicts.bounds import load_profile

ROOT = Path(__file__).resolve().parent.parent
NO_CUDA = (lambda: False, lambda: 0)


def mean_abs_difference(image: np.ndarray, reference: np.ndarray) -> float:
    """Mean absolute pixel difference, times $THROWAWAY_MAD_SCALE (default 1): a sweep that sets it reads worse."""
    scale = float(os.environ.get("THROWAWAY_MAD_SCALE", "1"))
    return float(np.mean(np.abs(image.astype(np.float64) - reference.astype(np.float64)))) * scale


THROWAWAY_METRIC = ImageMetric(name="mad", title="MAD", compute=mean_abs_difference, tolerance=0.5,
                               calibrate_margin=1.0, higher_is_better=False, decimals=3)
#: a metric whose package is not installed: every sweep is refused before a model is built
NEEDY_METRIC = ImageMetric(name="needy", title="Needy", compute=mean_abs_difference, tolerance=0.5,
                           calibrate_margin=1.0, requires={"fbcache_throwaway_absent": "pip install throwaway-absent"})

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
    if os.environ.get("THROWAWAY_LOADED"):  # a file that says a model was built
        Path(os.environ["THROWAWAY_LOADED"]).write_text(config.model)
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


# ------------------------------------------------------------------- an alert sink with an option of its own


def add_sink_file(parser) -> None:
    parser.add_argument("--throwaway-sink-file", help="append each finding's headline to this file")


def configure_sink_file(args):
    """Off without its option; a file in a directory that does not exist is refused before anything is sent."""
    raw = getattr(args, "throwaway_sink_file", None)
    if raw is None:
        return None
    path = Path(raw)
    if not path.parent.is_dir():
        raise ConfigError("--throwaway-sink-file", raw, "a file in an existing directory", f"no directory {path.parent}")

    def send(finding: Finding) -> Outcome:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(finding.headline() + "\n")
        return Outcome(True, f"throwaway sink: appended to {path}")

    return send


THROWAWAY_SINK = AlertSink("throwaway-sink", add_sink_file, configure_sink_file)


def register_throwaways() -> None:
    """The only extension code: one registry call each."""
    metrics.register(THROWAWAY_METRIC)
    backends.register(THROWAWAY_BACKEND)
    quant.register(THROWAWAY_QUANT)
    models.register(THROWAWAY_SOURCE)
    alerts.register(THROWAWAY_SINK)


def unregister_throwaways() -> None:
    metrics.unregister(THROWAWAY_METRIC.name)
    backends.unregister(THROWAWAY_BACKEND.name)
    quant.unregister(THROWAWAY_QUANT.name)
    models.unregister(THROWAWAY_SOURCE.name)
    alerts.unregister(THROWAWAY_SINK.name)


PLUGIN = "from test_registries import register_throwaways\nregister_throwaways()\n"
NEEDY_PLUGIN = PLUGIN + "from test_registries import NEEDY_METRIC\nfrom fbcache import metrics\nmetrics.register(NEEDY_METRIC)\n"


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


# ------------------------------------------------------------------- image metrics, alert sinks


def test_an_image_metric_whose_package_is_missing_is_refused_in_preflight(tmp_path):
    metrics.register(NEEDY_METRIC)
    try:
        config = configure.build_config({"output_dir": str(tmp_path)}, cuda=NO_CUDA, environ={})
        with pytest.raises(ConfigError) as refused:
            configure.check_environment(config)
    finally:
        metrics.unregister(NEEDY_METRIC.name)
    # lpips is listed too where this process can import torchvision (the LPIPS tests may have put it on the path)
    assert str(refused.value).removesuffix(", lpips") == (
        "--fbcache-metrics: invalid value 'needy' (fbcache_throwaway_absent is not installed: "
        "pip install throwaway-absent); accepted: names from ssim, psnr")


def test_a_sweep_with_a_metric_whose_package_is_missing_stops_before_any_model_is_built(sweep, tmp_path):
    (tmp_path / "needy_plugin.py").write_text(NEEDY_PLUGIN)
    loaded = tmp_path / "loaded"
    run = sweep("--fbcache-model", "throwaway-tiny", "--fbcache-steps", "2", "--fbcache-rounds", "1",
                "--fbcache-thresholds", "0.5", "--benchmark-autosave",
                env={"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}:{tmp_path}", "THROWAWAY_LOADED": str(loaded)},
                plugins=("needy_plugin",))
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.output
    assert ("fbcache: --fbcache-metrics: invalid value 'needy' (fbcache_throwaway_absent is not installed: "
            "pip install throwaway-absent); accepted: names from ssim, psnr") in run.output
    assert not loaded.exists(), "the model source was asked to build a model"
    assert run.saved_runs() == []


def test_the_trade_off_plot_takes_its_quality_axis_from_the_primary_attribute(throwaways):
    from fbcache.history import BenchRecord
    from fbcache.render import plots

    pytest.importorskip("matplotlib")
    records = [BenchRecord(threshold, "tiny", "none", "diffusers", 4, "64x64", 0, speedup=speedup, metrics=values)
               for threshold, speedup, values in ((None, 1.0, {"mad": 0.0}), (0.5, 2.0, {"mad": 3.0}))]
    first = metrics.all_metrics()[0]
    metrics.register(replace(first, primary=False))
    metrics.register(replace(THROWAWAY_METRIC, primary=True))
    try:
        figure = plots.tradeoff_figure(records, "title")
    finally:
        metrics.register(first)
    assert figure is not None and figure.axes[0].get_ylabel() == "MAD against uncached"


def regression_result(path: Path) -> Path:
    rows = [ThresholdResult("0.5", [Verdict("mad", "regression", 4.0, 1.0, "1.000 -> 4.000, beyond the tolerance 0.5")])]
    path.write_text(CompareResult("0002_new", "segment", {"model": "tiny"}, CompareSettings(), rows).to_json())
    return path


def test_the_alert_verbs_help_names_a_registered_sink_and_its_option(throwaways):
    from fbcache.cli import build_parser

    verbs = next(a for a in build_parser()._actions if a.dest == "verb")
    text = " ".join(verbs.choices["alert"].format_help().split())
    assert "throwaway-sink)" in text and "--throwaway-sink-file" in text


def test_an_alert_sinks_own_option_is_checked_before_anything_is_sent(throwaways, tmp_path, monkeypatch, capsys):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code = fbcache_main(["alert", str(regression_result(tmp_path / "r.json")),
                         "--throwaway-sink-file", str(tmp_path / "absent" / "alerts.txt")])
    assert code == EXIT_USAGE
    assert capsys.readouterr().err.splitlines() == [
        f"fbcache alert: error: --throwaway-sink-file: invalid value '{tmp_path / 'absent' / 'alerts.txt'}' "
        f"(no directory {tmp_path / 'absent'}); accepted: a file in an existing directory"]
    assert not summary.exists(), "no sink sent anything"


@pytest.mark.integration
def test_a_registered_metric_is_tabled_judged_calibrated_reported_and_alerted(sweep, tmp_path: Path, throwaways,
                                                                              capsys):
    """The tiny model with the throwaway metric (MAD, lower is better): two sweeps, the second reading MAD
    four times worse; compare judges it by its tolerance, calibrate and the sweep write its bound with the
    margin given, the report draws its trend, and a throwaway sink receives the regression."""
    pytest.importorskip("matplotlib")
    (tmp_path / "throwaway_plugin.py").write_text(PLUGIN)
    env = {"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}:{tmp_path}"}
    args = ("--fbcache-steps", "4", "--fbcache-rounds", "1", "--fbcache-warmup-rounds", "0",
            "--fbcache-thresholds", "0.5", "--fbcache-bounds", "none", "--benchmark-autosave")
    first = sweep(*args, "--fbcache-calibrate", str(tmp_path / "swept.toml"), "--fbcache-calibrate-margin",
                  "mad=0.25", "--fbcache-calibrate-margin", "ssim=0.05", env=env, plugins=("throwaway_plugin",))
    assert first.returncode == 0, first.output
    second = sweep(*args, env={**env, "THROWAWAY_MAD_SCALE": "4"}, plugins=("throwaway_plugin",))
    assert second.returncode == 0, second.output
    first_run = json.loads(second.saved_runs()[0].read_text())  # the two sweeps share one history
    measured = {b["extra_info"]["threshold"]: b["extra_info"] for b in first_run["benchmarks"]}
    mad, ssim = measured[0.5]["mad"], measured[0.5]["ssim"]
    assert mad > 0.25, "the cached image differs: four times its MAD is beyond the tolerance 0.5"
    assert "| SSIM | PSNR | MAD |" in first.output

    # the sweep's own calibration took the margins given per metric
    swept = (tmp_path / "swept.toml").read_text()
    assert f"max_mad = {round(mad + 0.25, 3)}  # measured {mad:.3f}" in swept
    assert f"min_ssim = {round(ssim - 0.05, 4)}  # measured {ssim:.4f}" in swept

    # compare judges the metric by its tolerance: 3 x MAD is a regression at 0.5, within 4 x MAD it is not
    storage, result = str(second.storage), tmp_path / "r.json"
    capsys.readouterr()
    assert fbcache_main(["compare", "--storage", storage, "--tolerance", "mad=0.5", "--json", str(result)]) == 1
    assert "MAD" in capsys.readouterr().out
    verdicts = {v["metric"]: v["status"] for row in json.loads(result.read_text())["rows"] if row["label"] == "0.5"
                for v in row["verdicts"]}
    assert (verdicts["mad"], verdicts["ssim"], verdicts["hits"]) == ("regression", "ok", "ok")
    assert fbcache_main(["compare", "--storage", storage, "--mad-tolerance", str(round(4 * mad, 3))]) == 0

    # calibrate writes its bound with the margin given
    profile = tmp_path / "mine.toml"
    assert fbcache_main(["calibrate", "--storage", storage, "--out", str(profile), "--margin", "mad=0.25"]) == 0
    assert f"max_mad = {round(4 * mad + 0.25, 3)}" in profile.read_text()
    assert load_profile(profile).bound_for(0.5).image["mad"] == round(4 * mad + 0.25, 3)

    # the report draws its trend, the regression ringed
    report = tmp_path / "report"
    assert fbcache_main(["report", "--storage", storage, "--out", str(report), "--images", str(second.output_dir)]) == 0
    assert (report / "trend-mad.png").is_file()
    text = (report / "report.md").read_text()
    assert "![MAD against uncached](trend-mad.png)" in text and "0.5 mad: **regression**" in text

    # and the sink receives the regression from fbcache alert
    received = tmp_path / "alerts.txt"
    assert fbcache_main(["alert", str(result), "--throwaway-sink-file", str(received)]) == EXIT_REGRESSION
    [headline] = received.read_text().splitlines()
    assert headline.startswith("fbcache REGRESSION") and "0.5 mad regression" in headline
