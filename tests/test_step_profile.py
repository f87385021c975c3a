"""tools/step_profile.py: the harness's profiled generation (fbcache/explain.py) called by hand, outside a sweep."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from fbcache.errors import NaNImageError
from fbcache.plugin import schedule
from tools.step_profile import main


def test_options_must_be_name_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", "unused", "--threshold", "0.8", "flux-random"])
    assert exit_info.value.code == 2
    assert "name=value" in capsys.readouterr().err


def test_profiles_an_uncached_and_a_cached_generation_of_the_tiny_model(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path), "--threshold", "0.5", "model=tiny", "steps=4", "device=cpu"]) == 0
    profiles = json.loads((tmp_path / "profile.json").read_text())["profiles"]
    assert sorted(profiles) == ["0.5", "uncached"]
    assert (profiles["uncached"]["steps"], profiles["uncached"]["hits"]) == (4, 0)
    cached = profiles["0.5"]
    assert cached["hits"] >= 1 and cached["rest_hit"] > 0
    assert "| 0.5 |" in (tmp_path / "profile.md").read_text()


def test_a_nan_image_in_the_untimed_generations_stops_it_before_any_profile(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The untimed generations are the harness's own (fbcache.plugin.schedule), with their NaN check."""
    monkeypatch.setattr(schedule, "generate_once", lambda *args, **kwargs: torch.full((1, 3, 8, 8), math.nan))
    with pytest.raises(NaNImageError, match="uncached reference image"):
        main(["--out", str(tmp_path), "--threshold", "0.5", "model=tiny", "steps=4", "device=cpu"])
    assert not (tmp_path / "profile.json").exists()
