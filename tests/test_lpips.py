"""LPIPS as an image metric (fbcache/metrics/lpips.py), on what can be had without pretrained weights.

No pretrained backbone can be fetched here: the tests generate one (seeded random AlexNet of torchvision's
shapes and file name, :mod:`lpips_support`); the LPIPS linear layers are torchmetrics' own, shipped in its
wheel. Such weights show what the computation is (zero on identical images, torchmetrics and the ``lpips``
package agreeing, more degradation scoring higher, values identical run to run) and that the harness
resolves them offline, refuses their absence before any model is built and never downloads; not what a
pretrained backbone would score.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from lpips_support import refuse_network, use_torchvision, write_backbone

from conftest import run_sweep
from fbcache import configure, metrics
from fbcache.cli import main as fbcache_main
from fbcache.errors import BrokenRunError, ConfigError
from fbcache.history import BenchRecord
from fbcache.history.storage import run_files
from fbcache.metrics.lpips import BACKBONE, FETCH, METRIC, Scorer
from fbcache.verdicts.bounds import calibrate, check, check_measured, load_profile, parse_profile

NO_CUDA = (lambda: False, lambda: 0)
WITH_LPIPS = "ssim,psnr,lpips"


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    """A torch hub directory whose checkpoints/ holds a generated backbone (torchvision importable)."""
    problem = use_torchvision()
    if problem is not None:
        pytest.skip(problem)
    folder = tmp_path_factory.mktemp("hub")
    write_backbone(folder / "checkpoints")
    return folder


@pytest.fixture(scope="module")
def backbone(hub) -> Path:
    return hub / "checkpoints"


@pytest.fixture(scope="module")
def scorer(backbone) -> Scorer:
    return Scorer(backbone)


def pattern(size: int = 64) -> np.ndarray:
    """A smooth RGB image with edges: stripes, rings and a checkerboard."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    channels = (np.sin(x / 5.0), np.cos(np.hypot(x - size / 2, y - size / 2) / 4.0), ((x // 8 + y // 8) % 2) * 2 - 1)
    return ((np.stack(channels, -1) * 0.5 + 0.5) * 255).round().astype(np.uint8)


def degraded(image: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    """``image`` with seeded Gaussian noise of ``sigma`` grey levels, clipped to uint8."""
    noise = np.random.default_rng(seed).standard_normal(image.shape)
    return np.clip(image + sigma * noise, 0, 255).round().astype(np.uint8)


# ------------------------------------------------------------------- the computation


def test_the_backbone_file_is_the_one_torchvision_looks_for(hub):
    import torchvision

    assert torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1] == BACKBONE


def test_an_image_against_itself_scores_zero(scorer):
    assert scorer(pattern(), pattern()) == 0.0


def test_torchmetrics_and_the_lpips_package_agree_on_the_same_weights(hub, scorer) -> None:
    """The ``lpips`` package (the reference implementation) reads the same backbone from the same hub and its own
    copy of the linear layers; torchmetrics' LPIPS is fbcache's scorer."""
    import lpips
    import torch

    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))
    try:
        reference = lpips.LPIPS(net="alex", verbose=False).eval()
    finally:
        torch.hub.set_dir(previous)

    def tensor(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0

    image = pattern()
    pairs = [(degraded(image, sigma), image) for sigma in (2, 16, 64)] + [(pattern()[::-1].copy(), image)]
    with torch.no_grad():
        differences = [abs(scorer(a, b) - float(reference(tensor(a), tensor(b), normalize=True))) for a, b in pairs]
    assert max(differences) < 1e-5


def test_more_degradation_scores_higher(scorer):
    image = pattern()
    values = [scorer(degraded(image, sigma), image) for sigma in (0, 2, 4, 8, 16, 32, 64)]
    assert all(a < b for a, b in zip(values, values[1:])), values


def test_a_backbone_that_is_not_on_disk_is_an_error_never_a_download(tmp_path, monkeypatch, hub):
    """Past preflight (which refuses it), a missing backbone still downloads nothing: torch.hub's download is
    refused while the metric is built, and so is any connection."""
    import socket

    monkeypatch.setattr(socket.socket, "connect", socket.socket.connect)  # undone after the test
    refuse_network()
    with pytest.raises(BrokenRunError, match="LPIPS tried to download .*alexnet-owt-7be5be79.pth: its weights must be "
                                             "on disk"):
        Scorer(tmp_path)


# ------------------------------------------------------------------- opt-in, preflight


def test_the_default_run_computes_ssim_and_psnr_only():
    config = configure.build_config({}, cuda=NO_CUDA, environ={})
    assert [m.name for m in metrics.selected(config.metrics)] == ["ssim", "psnr"]


def test_an_unknown_metric_is_refused_naming_the_registered_ones():
    with pytest.raises(ConfigError) as refused:
        configure.build_config({"metrics": "ssim,lpipz"}, cuda=NO_CUDA, environ={})
    assert str(refused.value) == ("--fbcache-metrics: invalid value 'lpipz' (not a registered image metric); "
                                  "accepted: names from ssim, psnr, lpips, separated by commas")


def test_lpips_without_torchmetrics_is_refused_naming_the_extra(tmp_path):
    config = configure.build_config({"metrics": WITH_LPIPS}, cuda=NO_CUDA, environ={})
    with pytest.raises(ConfigError) as refused:
        configure.check_environment(config, has_module=lambda name: name != "torchmetrics")
    assert str(refused.value) == ("--fbcache-metrics: invalid value 'lpips' (torchmetrics is not installed: "
                                  "pip install 'fbcache[lpips]'); accepted: names from ssim, psnr")


def test_a_missing_backbone_is_refused_in_one_line_naming_the_file_and_the_command_that_fetches_it(tmp_path, hub):
    empty = tmp_path / "empty"
    config = configure.build_config({"metrics": WITH_LPIPS, "lpips_weights": str(empty)}, cuda=NO_CUDA, environ={})
    with pytest.raises(ConfigError) as refused:
        configure.check_environment(config)
    fetch = FETCH.format(dir=empty)
    assert str(refused.value) == (
        f"--fbcache-lpips-weights: invalid value '{empty}' (LPIPS needs its AlexNet backbone {BACKBONE} there and "
        f"nothing is downloaded during a run; on a machine with internet: {fetch}); accepted: a directory holding "
        f"{BACKBONE}")


def test_a_backbone_file_that_is_no_alexnet_is_refused_in_preflight(tmp_path, hub):
    (tmp_path / BACKBONE).write_bytes(b"not a state dict")
    config = configure.build_config({"metrics": WITH_LPIPS, "lpips_weights": str(tmp_path)}, cuda=NO_CUDA, environ={})
    with pytest.raises(ConfigError) as refused:
        configure.check_environment(config)
    assert str(refused.value).startswith(f"--fbcache-lpips-weights: invalid value '{tmp_path}' ({BACKBONE} there does "
                                         "not load as torchvision's AlexNet: ")


def test_the_backbone_is_found_in_the_torch_hub_cache_without_the_option(hub, monkeypatch):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    config = configure.build_config({"metrics": WITH_LPIPS}, cuda=NO_CUDA, environ={})
    configure.check_environment(config)  # no error: the hub cache holds the backbone


def profile_with(bound: object) -> dict:
    return {"profile": {"name": "lpips"}, "thresholds": {"0.5": {"max_lpips": bound}}}


def test_a_negative_max_lpips_is_refused():
    with pytest.raises(ConfigError) as refused:
        parse_profile(profile_with(-0.1), "lpips.toml")
    assert str(refused.value) == ("--fbcache-bounds: invalid value -0.1 (lpips.toml: thresholds.\"0.5\".max_lpips: "
                                  "negative); accepted: a finite number >= 0 (LPIPS) or 'calibrate on the first run'")


def test_a_max_lpips_that_is_not_a_number_is_refused():
    with pytest.raises(ConfigError, match=r"max_lpips: not a number"):
        parse_profile(profile_with("0.2"), "lpips.toml")


def test_a_profile_that_bounds_lpips_is_refused_for_a_run_that_does_not_compute_it():
    with pytest.raises(ConfigError) as refused:
        check_measured(parse_profile(profile_with(0.2), "lpips.toml"), ())
    assert str(refused.value) == ("--fbcache-metrics: invalid value 'ssim,psnr' (profile lpips bounds lpips "
                                  "(max_lpips), which this run would not compute); accepted: ssim,psnr,lpips, or "
                                  "another profile (--fbcache-bounds)")


# ------------------------------------------------------------------- bounds and calibrate


def record(threshold: float | None, lpips: float | None, prompt: int | None = None) -> BenchRecord:
    values = {} if lpips is None else {"lpips": lpips}
    return BenchRecord(threshold, "tiny", "none", "diffusers", 4, "64x64", 0, metrics=values, prompt_index=prompt)


def test_an_lpips_above_max_lpips_breaks_the_bound():
    profile = parse_profile(profile_with(0.2), "lpips.toml")
    [violation] = check(profile, record(0.5, 0.25))
    assert (violation.key, violation.measured, violation.bound) == ("max_lpips", 0.25, 0.2)


def test_a_run_without_lpips_is_not_held_to_max_lpips():
    assert check(parse_profile(profile_with(0.2), "lpips.toml"), record(0.5, None)) == []


def test_calibrate_writes_the_measured_lpips_times_1_15():
    text = calibrate([record(None, 0.0), record(0.5, 0.2)], 0.15, {}, "p", {}, False, "cpu")
    assert "max_lpips = 0.23  # measured 0.2000 x 1.15" in text.splitlines()


def test_calibrate_bounds_a_prompt_sets_worst_lpips_times_1_15():
    records = [record(None, 0.0, 0), record(None, 0.0, 1), record(0.5, 0.1, 0), record(0.5, 0.3, 1)]
    lines = calibrate(records, 0.15, {}, "p", {}, False, "cpu").splitlines()
    assert [line for line in lines if line.startswith("max_lpips")] == [
        "max_lpips = 0.23  # measured mean 0.2000 x 1.15", "max_lpips_worst = 0.345  # measured worst 0.3000 x 1.15"]


def test_calibrate_leaves_an_lpips_of_zero_unbounded():
    """Identical to uncached (threshold 0 on a deterministic device): x 1.15 of 0 would leave no room at all."""
    text = calibrate([record(None, 0.0), record(0.0, 0.0), record(0.5, 0.2)], 0.15, {}, "p", {}, False, "cpu")
    assert [line for line in text.splitlines() if line.startswith("max_lpips")] == [
        "max_lpips = 0.23  # measured 0.2000 x 1.15"]


def test_a_relative_margin_given_by_the_user_replaces_1_15():
    text = calibrate([record(0.5, 0.2)], 0.15, {"lpips": 0.5}, "p", {}, False, "cpu")
    assert "max_lpips = 0.3  # measured 0.2000 x 1.5" in text.splitlines()


def test_a_calibrated_max_lpips_loads_back_as_a_bound(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(calibrate([record(None, 0.0), record(0.5, 0.2)], 0.15, {}, "p", {}, False, "cpu"))
    assert load_profile(path).bound_for(0.5).image == {"lpips": 0.23}


def test_the_metric_is_lower_is_better_with_max_lpips():
    assert (METRIC.higher_is_better, METRIC.bound_key, METRIC.default) == (False, "max_lpips", False)


def test_a_run_without_lpips_stores_no_lpips_value():
    assert "lpips" not in record(0.5, None).to_extra_info()


# ------------------------------------------------------------------- a tiny sweep with LPIPS


SWEEP = ("--fbcache-steps", "4", "--fbcache-rounds", "1", "--fbcache-warmup-rounds", "0", "--fbcache-thresholds",
         "0 0.5", "--fbcache-bounds", "none", "--benchmark-autosave", "--fbcache-metrics", WITH_LPIPS)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, backbone) -> Iterator[tuple[Path, list]]:
    """Two tiny sweeps with LPIPS into one history, every connection to another host refused; the first
    also calibrates a profile."""
    base = tmp_path_factory.mktemp("lpips-sweeps")
    done = [run_sweep(base, *SWEEP, "--fbcache-lpips-weights", str(backbone), "--fbcache-calibrate",
                      str(base / "calibrated.toml"), plugins=("plugins.offline_lpips",)),
            run_sweep(base, *SWEEP, "--fbcache-lpips-weights", str(backbone), plugins=("plugins.offline_lpips",))]
    for sweep in done:
        assert sweep.returncode == 0, sweep.output
    yield base, done


def lpips_of(run: Path) -> dict:
    return {b["extra_info"]["threshold"]: b["extra_info"]["lpips"] for b in json.loads(run.read_text())["benchmarks"]}


@pytest.mark.integration
@pytest.mark.xdist_group("lpips-sweeps")
def test_a_tiny_sweep_with_lpips_gives_the_same_values_run_to_run(sweeps):
    base, _ = sweeps
    first, second = (lpips_of(run) for run in run_files(base / "history"))
    assert first == second and first[None] == 0.0 and first[0.5] > 0, (first, second)


@pytest.mark.integration
@pytest.mark.xdist_group("lpips-sweeps")
def test_the_sweep_tables_lpips(sweeps):
    _, done = sweeps
    assert "| SSIM | PSNR | LPIPS |" in done[0].output


@pytest.mark.integration
@pytest.mark.xdist_group("lpips-sweeps")
def test_the_sweeps_calibration_writes_max_lpips_as_the_measured_value_times_1_15(sweeps):
    base, _ = sweeps
    measured = lpips_of(run_files(base / "history")[0])[0.5]
    text = (base / "calibrated.toml").read_text()
    assert f"max_lpips = {round(measured * 1.15, 4)}  # measured {measured:.4f} x 1.15" in text.splitlines()


@pytest.mark.integration
@pytest.mark.xdist_group("lpips-sweeps")
def test_compare_flags_a_run_edited_to_a_higher_lpips(sweeps, tmp_path, capsys):
    import shutil

    base, _ = sweeps
    history = tmp_path / "history"
    shutil.copytree(base / "history", history)
    newest = run_files(history)[-1]
    data = json.loads(newest.read_text())
    for bench in data["benchmarks"]:
        if bench["extra_info"]["threshold"] == 0.5:
            bench["extra_info"]["lpips"] += 0.05  # beyond the tolerance 0.02
    newest.with_name("0003_injected.json").write_text(json.dumps(data))
    result = tmp_path / "r.json"
    assert fbcache_main(["compare", "--storage", str(history), "--json", str(result)]) == 1
    alerts = [(row["label"], v["metric"]) for row in json.loads(result.read_text())["rows"] for v in row["verdicts"]
              if v["status"] == "regression"]
    assert alerts == [("0.5", "lpips")]


@pytest.mark.integration
def test_a_sweep_without_the_backbone_stops_before_any_model_is_built(tmp_path, hub):
    run = run_sweep(tmp_path, *SWEEP, "--fbcache-lpips-weights", str(tmp_path / "empty"),
                    env={"FBCACHE_TEST_FAULT": "no-model"}, plugins=("plugins.faults", "plugins.offline_lpips"))
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.output
    assert f"(LPIPS needs its AlexNet backbone {BACKBONE} there and nothing is downloaded during a run;" in run.output
    assert "MODEL WAS BUILT" not in run.output and run.saved_runs() == []


@pytest.mark.integration
def test_the_default_sweep_has_no_lpips_column(sweep):
    run = sweep("--fbcache-steps", "2", "--fbcache-rounds", "1", "--fbcache-warmup-rounds", "0",
                "--fbcache-thresholds", "0.5", "--fbcache-bounds", "none")
    assert run.returncode == 0 and "| SSIM | PSNR |" in run.output and "LPIPS" not in run.output, run.output


@pytest.mark.integration
@pytest.mark.xdist_group("lpips-sweeps")
def test_the_report_draws_an_lpips_trend(sweeps, tmp_path):
    pytest.importorskip("matplotlib")
    base, done = sweeps
    report = tmp_path / "report"
    assert fbcache_main(["report", "--storage", str(base / "history"), "--out", str(report),
                         "--images", str(done[-1].output_dir)]) == 0
    assert "![LPIPS against uncached](trend-lpips.png)" in (report / "report.md").read_text()
