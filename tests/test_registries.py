"""Extending fbcache through its registries alone: a throwaway image metric and a throwaway cache backend.

The metric and the backend are defined here and registered with one call each; nothing else in the
package is edited. A plugin file (written by the test) registers them in the sweep's process too.
The metric must then reach extra_info, the results table, ``fbcache compare`` and a calibrated
profile, and the backend must run a sweep.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fbcache import backends, metrics
from fbcache.backends.base import BackendSpec
from fbcache.backends.diffusers import DiffusersFBCache
from fbcache.cli.main import main as fbcache_main
from fbcache.metrics.base import ImageMetric
from fbcache.verdicts.bounds import load_profile

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent


def mean_abs_difference(image: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean(np.abs(image.astype(np.float64) - reference.astype(np.float64))))


THROWAWAY_METRIC = ImageMetric(name="mad", title="MAD", compute=mean_abs_difference, tolerance=0.5,
                               calibrate_margin=1.0, higher_is_better=False, decimals=3)


class RenamedFBCache(DiffusersFBCache):
    """diffusers' FirstBlockCache under another name: a backend defined outside the package."""

    name = "throwaway"


THROWAWAY_BACKEND = BackendSpec(name="throwaway", summary="test-only backend",
                                create=lambda pipe, config: RenamedFBCache(pipe),
                                versions=lambda: {"throwaway": "0.0"},
                                settings=lambda config: {"flavour": "renamed diffusers FBCache"})


def register_throwaways() -> None:
    """The only extension code: one registry call each."""
    metrics.register(THROWAWAY_METRIC)
    backends.register(THROWAWAY_BACKEND)


def unregister_throwaways() -> None:
    metrics.unregister(THROWAWAY_METRIC.name)
    backends.unregister(THROWAWAY_BACKEND.name)


PLUGIN = "from test_registries import register_throwaways\nregister_throwaways()\n"


@pytest.fixture
def throwaways():
    register_throwaways()
    yield
    unregister_throwaways()


def test_a_registered_metric_and_backend_flow_everywhere(sweep, tmp_path: Path, throwaways, capsys):
    (tmp_path / "throwaway_plugin.py").write_text(PLUGIN)
    env = {"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}:{tmp_path}"}
    args = ("--fbcache-steps", "4", "--fbcache-rounds", "1", "--fbcache-warmup-rounds", "0",
            "--fbcache-thresholds", "0 0.5", "--fbcache-cache-backend", "throwaway", "--fbcache-bounds", "none",
            "--benchmark-autosave")
    runs = [sweep(*args, env=env, plugins=("throwaway_plugin",)) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.output
    saved = runs[-1].last_run()

    # the backend ran a sweep and made its decisions; its settings and version reached machine_info
    info = saved["machine_info"]["fbcache"]
    assert info["cache_backend"] == "throwaway" and info["versions"]["throwaway"] == "0.0"
    assert "renamed diffusers FBCache" in info["fingerprint"]["cache_settings"]
    cached = next(b for b in saved["benchmarks"] if b["extra_info"]["threshold"] == 0.5)
    assert len(cached["extra_info"]["hit_trace"]) == 4 and cached["extra_info"]["hits"] > 0

    # the metric: extra_info, the results table
    assert all("mad" in b["extra_info"] for b in saved["benchmarks"])
    uncached = next(b for b in saved["benchmarks"] if b["extra_info"]["threshold"] is None)
    assert uncached["extra_info"]["mad"] == 0.0
    assert "| SSIM | PSNR | MAD |" in runs[-1].output

    # ... fbcache compare (in this process, where the test registered it)
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
