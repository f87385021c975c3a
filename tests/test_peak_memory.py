"""Peak GPU memory: judged per benchmark against its segment, within max(2%, 3 x run-to-run spread)."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomllib

from fbcache.errors import ConfigError
from fbcache.history.storage import load_runs
from fbcache.verdicts.bounds import calibrate, check, parse_profile
from fbcache.verdicts.judge import PEAK_MEMORY, judge_series
from tools.verdict_rates import REGIMES, simulate

H100 = Path(__file__).parent / "data" / "h100-2026-11-25" / "history"
GPU = REGIMES[0]


def _h100_series():
    runs, _ = load_runs(H100)
    latest = runs[-1]
    return [r for r in runs if r.fingerprint_id == latest.fingerprint_id]


def test_recorded_h100_history_plus_ten_percent_peak_is_a_regression():
    runs = _h100_series()
    assert len(runs) >= 2 and all(r.peak_memory_bytes for r in runs[-1].records.values())
    label = sorted(runs[-1].records)[0]
    record = runs[-1].records[label]
    record.peak_memory_bytes = int(record.peak_memory_bytes * 1.10)
    result = judge_series(runs)[-1]
    verdict = result.row(label).verdict(PEAK_MEMORY)
    assert verdict.status == "regression" and result.regression


def test_recorded_h100_history_unedited_has_no_peak_memory_finding():
    result = judge_series(_h100_series())[-1]
    flagged = [row.label for row in result.rows
               if (v := row.verdict(PEAK_MEMORY)) is not None and v.status in ("regression", "improvement")]
    assert flagged == []


def _with_peaks(rng: random.Random, runs: int, spread: float, change=lambda label, i: 1.0):
    history = simulate(GPU, rng, runs)
    base = {label: rng.uniform(20, 30) * (1 << 30) for label in history[0].records}
    for index, run in enumerate(history):
        for label, record in run.records.items():
            record.peak_memory_bytes = int(base[label] * (1 + rng.uniform(-spread, spread)) * change(label, index))
    return history


def test_no_peak_memory_finding_in_100_aa_histories():
    findings = 0
    for seed in range(100):
        history = _with_peaks(random.Random(seed), 8, 0.002)
        for result in judge_series(history):
            findings += sum(1 for row in result.rows for v in row.verdicts
                            if v.metric == PEAK_MEMORY and v.status in ("regression", "improvement"))
    assert findings == 0


def test_ten_percent_more_peak_in_a_synthetic_history_is_flagged_on_that_run():
    history = _with_peaks(random.Random(7), 8, 0.002, lambda label, i: 1.10 if label == "0.1" and i == 7 else 1.0)
    verdict = judge_series(history)[-1].row("0.1").verdict(PEAK_MEMORY)
    assert verdict.status == "regression"


def test_peak_memory_waits_for_a_second_run_like_the_other_exact_values():
    history = _with_peaks(random.Random(3), 1, 0.002)
    verdict = judge_series(history)[-1].row("0.1").verdict(PEAK_MEMORY)
    assert verdict.status == "not judged" and verdict.runs_needed == 1


def test_cpu_runs_have_no_peak_memory_verdict():
    history = simulate(GPU, random.Random(1), 4)
    assert all(row.verdict(PEAK_MEMORY) is None for row in judge_series(history)[-1].rows)


class _Allocator:
    """A stand-in for CUDA's peak counter: each benchmark's generation allocates its own amount."""

    def __init__(self, sizes, sequence=None):
        self.sizes, self.current, self.peak, self.resets = sizes, None, 0, 0
        self.sequence = None if sequence is None else iter(sequence)

    def reset(self, device):
        self.peak, self.resets = 0, self.resets + 1

    def read(self, device):
        return self.peak

    def generate(self, **kwargs):
        import torch

        size = self.sizes[self.current] if self.sequence is None else next(self.sequence)
        self.peak = max(self.peak, size)
        return SimpleNamespace(images=torch.zeros(1, 3, 2, 2))


def test_each_interleaved_benchmark_gets_the_peak_of_its_own_generations(monkeypatch):
    from fbcache.plugin import schedule

    allocator = _Allocator({None: 300, 0.1: 100})
    monkeypatch.setattr(schedule, "reset_peak_memory", allocator.reset)
    monkeypatch.setattr(schedule, "peak_memory_bytes", allocator.read)
    backend = SimpleNamespace(enable=lambda threshold, log: setattr(allocator, "current", threshold),
                              disable=lambda: setattr(allocator, "current", None))
    progress = SimpleNamespace(start=lambda *a: None, generation=lambda *a: None)
    config = SimpleNamespace(device="cpu", clock="wall", warmup_rounds=1, rounds=3, steps=2, height=2, width=2,
                             resolution="2x2", case=lambda index: SimpleNamespace(seed=0, text=None),
                             breakdown=False, flops=False)
    session = SimpleNamespace(config=config, backend=backend, planned_prompts=[], planned_thresholds=[0.1], cold_start_s=None,
                              progress=lambda n: progress,
                              model=SimpleNamespace(pipe=allocator.generate, kwargs_for=lambda prompt: {}))
    results = schedule.run_interleaved(session)
    assert {key[0]: result.rounds.peak_memory_bytes for key, result in results.items()} == {None: 300, 0.1: 100}
    assert allocator.resets == 2 * (1 + 3), "a reset before every generation, warm-ups included"


def test_an_interleaved_benchmark_keeps_the_highest_peak_of_its_own_generations():
    from fbcache.plugin.schedule import Interleaved

    mine = Interleaved()
    for peak in (5, 9, None, 7):
        mine.rounds.add_peak(peak)
    assert mine.rounds.peak_memory_bytes == 9


# ---------------------------------------------------------------------------------- bounds

def _bench(threshold, peak_gib=None, prompt_index=None):
    from fbcache.history import BenchRecord

    return BenchRecord(threshold=threshold, model="flux-random", quantization="none", cache_backend="diffusers",
                       steps=28, resolution="1024x1024", seed=0, speedup=1.5, metrics={"ssim": 0.95},
                       prompt_index=prompt_index,
                       peak_memory_bytes=None if peak_gib is None else int(peak_gib * (1 << 30)))


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), "lots", True])
def test_a_peak_memory_ceiling_out_of_range_is_refused(value):
    with pytest.raises(ConfigError, match=r"max_peak_memory_gib.*> 0"):
        parse_profile({"thresholds": {"0.1": {"max_peak_memory_gib": value}}}, "bad.toml")


def test_a_peak_above_its_ceiling_is_a_violation_and_one_below_is_not():
    profile = parse_profile({"profile": {"name": "gpu"}, "thresholds": {"0.1": {"max_peak_memory_gib": 25.0}}},
                            "gpu.toml")
    [violation] = check(profile, _bench(0.1, 26.0))
    assert violation.enforced and violation.key == "max_peak_memory_gib"
    assert violation.message() == "threshold 0.1: peak memory GiB 26.0000 is above max_peak_memory_gib 25 (profile gpu)"
    assert check(profile, _bench(0.1, 24.9)) == []
    assert check(profile, _bench(0.1, None)) == [], "a CPU run has no peak to check"
    assert len(check(profile, _bench(0.1, 26.0, prompt_index=2))) == 1, "every prompt of a set alike"


def test_calibrate_writes_the_peak_ceiling_from_a_gpu_run():
    text = calibrate([_bench(None, 20.0), _bench(0.1, 24.0)], 0.15, {}, name="gpu", match={"model": "flux-random"},
                     enforce_speedup=True, measured_on="NVIDIA H100")
    assert tomllib.loads(text)["thresholds"]["0.1"]["max_peak_memory_gib"] == 26.4
    assert "x 1.1: allocator peaks barely move between runs" in text


def test_calibrate_writes_no_peak_ceiling_from_a_cpu_run():
    text = calibrate([_bench(None), _bench(0.1)], 0.15, {}, name="cpu", match={"model": "tiny"},
                     enforce_speedup=False, measured_on="cpu")
    assert "max_peak_memory_gib" not in tomllib.loads(text)["thresholds"]["0.1"]


# ---------------------------------------------------------------------------------- table and report

CPU = Path(__file__).parent / "data" / "tiny-cpu-2026-11-25" / "history"


def _latest(storage: Path):
    runs, _ = load_runs(storage)
    return runs, runs[-1]


def test_the_results_table_of_a_recorded_h100_run_shows_each_benchmarks_peak_in_gib():
    from fbcache.render import NO_PEAK_NOTE, markdown_table

    _, run = _latest(H100)
    text = markdown_table(run.records.values())
    header = text.splitlines()[0]
    assert header.endswith("| peak GiB |") and NO_PEAK_NOTE not in text
    line = next(x for x in text.splitlines() if x.startswith("| uncached "))
    assert line.endswith(f"| {run.records['uncached'].peak_memory_bytes / (1 << 30):.2f} |")


def test_the_results_table_of_a_cpu_run_omits_the_column_with_one_line_why():
    from fbcache.render import NO_PEAK_NOTE, markdown_table

    _, run = _latest(CPU)
    text = markdown_table(run.records.values())
    assert "peak GiB" not in text and text.count(NO_PEAK_NOTE) == 1


def test_the_report_of_a_gpu_run_has_the_peak_column_and_trend(tmp_path: Path):
    from fbcache.render.report import build_report

    runs, latest = _latest(H100)
    build_report(runs, latest, tmp_path / "report", None)
    text = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "| peak GiB |" in text and (tmp_path / "report" / "trend-peak-memory.png").is_file()


def test_the_report_of_a_cpu_run_says_why_it_has_no_peak(tmp_path: Path):
    from fbcache.render import NO_PEAK_NOTE
    from fbcache.render.report import build_report

    runs, latest = _latest(CPU)
    build_report(runs, latest, tmp_path / "report", None)
    out = tmp_path / "report"
    assert NO_PEAK_NOTE in (out / "report.md").read_text(encoding="utf-8")
    assert NO_PEAK_NOTE in (out / "report.html").read_text(encoding="utf-8")
    assert not (out / "trend-peak-memory.png").exists()


def test_the_compare_table_has_a_peak_column_on_gpu_runs_only():
    from fbcache.verdicts import markdown

    assert "| peak GiB (now / base) |" in markdown(judge_series(_h100_series())[-1])
    assert "peak GiB" not in markdown(judge_series(simulate(GPU, random.Random(1), 2))[-1])


class _Pedantic:
    """A stand-in for pytest-benchmark's fixture: setup, call, teardown per round; timed rounds recorded."""

    def __init__(self):
        self.stats = SimpleNamespace(stats=SimpleNamespace(data=[]))

    def pedantic(self, target, setup, teardown, rounds, warmup_rounds, iterations):
        for index in range(warmup_rounds + rounds):
            args, _ = setup()
            target(*args)
            if index >= warmup_rounds:
                self.stats.stats.data.append(0.01)
            teardown(*args)


def test_a_sequential_benchmark_gets_the_peak_of_its_timed_rounds_not_its_warm_up(monkeypatch):
    from fbcache.plugin import schedule

    allocator = _Allocator({}, sequence=[500, 100, 120, 110])  # the warm-up allocates most
    monkeypatch.setattr(schedule, "reset_peak_memory", allocator.reset)
    monkeypatch.setattr(schedule, "peak_memory_bytes", allocator.read)
    progress = SimpleNamespace(start=lambda *a: None, generation=lambda *a: None)
    config = SimpleNamespace(device="cpu", clock="wall", warmup_rounds=1, rounds=3, steps=2, height=2, width=2,
                             compile="none", resolution="2x2", case=lambda index: SimpleNamespace(seed=0, text=None),
                             breakdown=False, flops=False)
    session = SimpleNamespace(config=config, backend=SimpleNamespace(), health=SimpleNamespace(expected=[1]), cold_start_s=None,
                              progress=lambda n: progress,
                              model=SimpleNamespace(pipe=allocator.generate, kwargs_for=lambda prompt: {}))
    rounds, _ = schedule.run_sequential(_Pedantic(), session, None, None)
    assert rounds.peak_memory_bytes == 120


def test_a_benchmark_keeps_only_its_first_two_timed_images_on_the_host_and_names_a_nan_generation():
    """Images held on the GPU would count in every later generation's peak; a NaN image stops the benchmark."""
    import torch

    from fbcache.errors import NaNImageError
    from fbcache.plugin.schedule import Rounds

    rounds = Rounds()
    rounds.keep(torch.full((1, 3, 2, 2), 0.9), "0.5: generation 1", timed=False)  # a warm-up
    for value in (0.1, 0.2, 0.3):
        rounds.keep(torch.full((1, 3, 2, 2), value), "0.5: generation 2", timed=True)
    assert [float(images.max()) for images in rounds.images] == pytest.approx([0.1, 0.2])
    assert all(images.device.type == "cpu" for images in rounds.images)
    with pytest.raises(NaNImageError, match="0.5: generation 5 produced NaN/Inf pixels"):
        rounds.keep(torch.full((1, 3, 2, 2), float("nan")), "0.5: generation 5", timed=True)


def test_out_of_gpu_memory_is_a_broken_run_naming_where_and_the_workload_and_other_errors_pass_through():
    from fbcache.errors import BrokenRunError
    from fbcache.plugin.schedule import out_of_memory

    broken = out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore"), "at threshold 0.5",
                           "1024x1024", 28)
    assert isinstance(broken, BrokenRunError)
    assert str(broken) == "out of GPU memory at threshold 0.5 (1024x1024, 28 steps): CUDA out of memory. Tried to allocate 2.00 GiB"
    assert out_of_memory(ValueError("a bad shape"), "at threshold 0.5", "1024x1024", 28) is None
