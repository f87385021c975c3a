"""tools/step_profile.py: which profiler ranges count as host time and which as GPU span, and how steps
are named by the cache's decisions. The first GPU run of the tool summed both copies of each range
(host-side and device-side) into one row and named the steps from the mixed list: this pins the split."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from torch.autograd import DeviceType

from fbcache.backends import StepDecision
from tools.step_profile import _summarize, main


@dataclass
class _Range:
    start: int
    end: int

    def elapsed_us(self) -> int:
        return self.end - self.start


@dataclass
class _Event:
    name: str
    device_type: DeviceType
    time_range: _Range


def _host(name: str, start: int, end: int) -> _Event:
    return _Event(name, DeviceType.CPU, _Range(start, end))


def _gpu(name: str, start: int, end: int) -> _Event:
    return _Event(name, DeviceType.CUDA, _Range(start, end))


def test_host_and_gpu_copies_of_a_range_are_kept_apart() -> None:
    # two steps, the first computed and the second a hit; each host range has a device copy that starts later
    events = [
        _host("generation", 0, 10_000), _gpu("generation", 100, 9_900),
        _host("step", 0, 4_000), _gpu("step", 500, 6_000),
        _host("first block", 10, 1_000), _gpu("first block", 600, 1_600),
        _host("step", 4_000, 5_000), _gpu("step", 6_000, 7_000),
        _host("first block", 4_010, 4_500), _gpu("first block", 6_000, 6_400),
        _host("other blocks", 4_600, 4_700),  # skipped on the hit: no kernels, no device copy
    ]
    decisions = [StepDecision(0, None, False), StepDecision(1, 0.01, True)]
    profile = _summarize("threshold 0.8", events, decisions, wall_ms=10.0)
    parts = {part.name: part for part in profile.parts}
    assert profile.hits == 1 and profile.steps == 2
    assert (parts["step (computed)"].calls, parts["step (computed)"].host_ms) == (1, 4.0)
    assert (parts["step (computed)"].gpu_calls, parts["step (computed)"].gpu_span_ms) == (1, 5.5)
    assert (parts["step (hit)"].calls, parts["step (hit)"].host_ms, parts["step (hit)"].gpu_span_ms) == (1, 1.0, 1.0)
    assert (parts["first block"].calls, parts["first block"].gpu_calls) == (2, 2)
    assert parts["first block"].gpu_span_ms == pytest.approx(1.4)
    assert (parts["other blocks"].calls, parts["other blocks"].gpu_calls) == (1, 0)
    assert parts["generation"].host_ms == 10.0 and parts["generation"].gpu_span_ms == 9.8


def test_options_must_be_name_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", "unused", "--threshold", "0.8", "flux-random"])
    assert exit_info.value.code == 2
    assert "name=value" in capsys.readouterr().err
