"""tools/cpu_noise_floor.py: the arithmetic behind "how many paired rounds would 3% need"."""

from __future__ import annotations

import math

import pytest

from tools.cpu_noise_floor import has_instruction_counter, lag1_autocorrelation, neighbour_ratio_sd, rounds_needed


def test_steady_times_need_one_round_and_noisy_ones_hundreds() -> None:
    assert rounds_needed(0.0) == 0
    # 10.9% neighbour spread (this VM, 2026-11-28): 2 x pi/2 x (0.109 / (0.03 / 3.3))^2
    assert rounds_needed(0.109) == math.ceil(math.pi * (0.109 * 3.3 / 0.03) ** 2) == 452
    assert rounds_needed(0.01) < 5


def test_drift_is_autocorrelated_and_alternation_is_not() -> None:
    assert lag1_autocorrelation([1.0, 1.1, 1.2, 1.3, 1.4, 1.5]) > 0.4
    assert lag1_autocorrelation([1.0, 2.0, 1.0, 2.0, 1.0, 2.0]) < -0.8


def test_neighbour_ratio_spread_ignores_a_constant_level() -> None:
    assert neighbour_ratio_sd([0.5, 0.5, 0.5, 0.5]) == 0.0
    assert neighbour_ratio_sd([1.0, 2.0, 4.0, 8.0]) == 0.0  # a steady trend is a constant ratio
    assert neighbour_ratio_sd([1.0, 1.1, 1.0, 1.1]) == pytest.approx(0.1102, abs=1e-3)


def test_instruction_counter_is_the_cpu_pmu(tmp_path) -> None:
    assert not has_instruction_counter(tmp_path)
    (tmp_path / "cpu").mkdir()
    assert has_instruction_counter(tmp_path)
