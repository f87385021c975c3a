"""tools/step_profile.py: the harness's profiled generation (fbcache/explain.py) called by hand, outside a sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
