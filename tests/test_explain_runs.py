"""Issue 24 measured on the tiny model, on a CPU: FLOPs are exact and deterministic, the profiled generation
sees the blocks a hit skips, and the sweep shows and judges both (a change of work is "work changed").

In-process tests share one eager session (the model loads once); the sweeps run as a user runs them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from conftest import ROOT, STEPS, run_sweep
from fbcache import explain, models
from fbcache.backends import DecisionLog, StepDecision, summarize
from fbcache.configure import build_config
from fbcache.errors import ConfigError
from fbcache.history import BenchRecord
from fbcache.history.storage import run_files
from fbcache.plugin import schedule
from fbcache.plugin.session import FBCacheSession

#: the sweeps share one history: one xdist worker builds it once
pytestmark = pytest.mark.xdist_group("explained-history")
#: 0.5 hits on the tiny model in 4 steps; 0 never does
THRESHOLD = 0.5


def _session(**options: str) -> FBCacheSession:
    return FBCacheSession(build_config({"model": "tiny", "steps": str(STEPS), "device": "cpu", **options}), None)


def _generate(session: FBCacheSession, prompt_index: int | None = None):
    seed = session.config.case(prompt_index).seed
    return lambda: schedule.generate_once(session, torch.Generator("cpu").manual_seed(seed), prompt_index)


@pytest.fixture(scope="module")
def eager() -> FBCacheSession:
    return _session()


def flops(session: FBCacheSession, threshold: float | None, prompt_index: int | None = None) -> explain.FlopsCount:
    return explain.count_flops(session.backend, threshold, _generate(session, prompt_index), session.config.compile)


def test_flops_are_identical_across_runs_and_uncached_equals_threshold_zero(eager):
    first, again, zero = flops(eager, None), flops(eager, None), flops(eager, 0.0)
    assert first == again
    assert (zero.flops, zero.hits) == (first.flops, 0)


def test_prompts_of_a_set_with_the_same_hits_count_the_same_flops():
    """What lets a run count each kind of work once: prompts of different lengths do the same arithmetic."""
    session = _session(prompts="default")
    texts = [session.config.case(index).text for index in range(2)]
    assert len(texts[0].split()) != len(texts[1].split())
    counts = [flops(session, 0.0, index) for index in range(2)]
    assert counts[0].work == counts[1].work and counts[0].flops == counts[1].flops


def test_a_run_counts_each_kind_of_work_once_and_shares_the_count(eager):
    memo, calls = explain.FlopsMemo(), []
    generate = _generate(eager)

    def counted() -> Any:
        calls.append(1)
        return generate()

    def explained(threshold: float | None, work: explain.Work, label: str) -> explain.Explained:
        return explain.explain_benchmark(eager.model.pipe, eager.backend, threshold, counted, "cpu", time.perf_counter,
                                         "none", False, True, memo, work, label)

    no_hits = explain.work_of(0.0, [StepDecision(step, 1.0, False) for step in range(STEPS)])
    first = explained(0.0, no_hits, "0")
    shared = explained(1e-9, no_hits, "1e-09")
    uncached = explained(None, explain.work_of(None, []), "uncached")
    assert len(calls) == 2  # threshold 0 and the uncached baseline; 1e-09 took 0's count
    assert (shared.flops, shared.flops_hits, shared.flops_from, shared.generations) == (first.flops, 0, "0", 0)
    assert "as counted for 0" in shared.line("1e-09")
    assert uncached.flops_from is None and flops(eager, 1e-9).flops == first.flops


def _remaining_blocks_flops_per_step(session: FBCacheSession) -> float:
    """Counted on their own: each remaining block's call under its own counter, in an uncached generation."""
    def sdpa(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None, **kw: Any) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    attention = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: sdpa}
    counted: list[int] = []
    blocks = models.repeated_blocks(session.model.pipe.transformer)[1:]
    before = [block.__dict__.get("forward") for block in blocks]
    for block in blocks:
        def forward(*args: Any, _original=block.forward, **kwargs: Any) -> Any:
            with FlopCounterMode(display=False, custom_mapping=attention) as counter:
                output = _original(*args, **kwargs)
            counted.append(counter.get_total_flops())
            return output
        block.forward = forward
    try:
        _generate(session)()
    finally:
        for block, original in zip(blocks, before):
            if original is None:
                del block.forward
            else:
                block.forward = original
    return sum(counted) / session.config.steps


def test_each_hit_saves_exactly_one_steps_remaining_blocks_flops(eager):
    uncached, cached = flops(eager, None), flops(eager, THRESHOLD)
    per_step = _remaining_blocks_flops_per_step(eager)
    assert cached.hits is not None and cached.hits >= 1
    assert cached.flops == uncached.flops - cached.hits * per_step


def test_the_profile_follows_the_caches_decisions_and_its_parts_add_up(eager):
    log = DecisionLog()
    eager.backend.enable(THRESHOLD, log)
    try:
        log.start_generation()
        _generate(eager)()
        hits = summarize(log.finish_generation())[0]
    finally:
        eager.backend.disable()
    found = explain.breakdown(eager.model.pipe, eager.backend, THRESHOLD, _generate(eager), "cpu", time.perf_counter)
    assert (found["steps"], found["hits"]) == (STEPS, hits)
    profile = explain.Profile.of(BenchRecord(THRESHOLD, "tiny", "none", "diffusers", STEPS, "64x64", 0, profile=found))
    assert profile is not None
    # a hit never calls the remaining blocks: their time is the computed steps' alone
    assert profile.remaining_blocks > 0 and profile.rest_hit > 0
    assert sum(profile.parts().values()) == pytest.approx(profile.generation)


def test_the_marks_leave_the_blocks_as_they_were(eager):
    blocks = models.repeated_blocks(eager.model.pipe.transformer)
    before = [block.__dict__.get("forward") for block in blocks]
    explain.breakdown(eager.model.pipe, eager.backend, THRESHOLD, _generate(eager), "cpu", time.perf_counter)
    assert [block.__dict__.get("forward") for block in blocks] == before


def test_regional_compile_profiles_and_counts_without_compiling_and_counts_the_same_flops(eager, monkeypatch):
    monkeypatch.setattr(models, "COMPILE_BACKEND", "aot_eager")  # dynamo's guards without a C++ build
    compiled = _session(compile="regional")
    generate = _generate(compiled)
    for threshold in (None, THRESHOLD):  # the warm-up of each cache state compiles what it needs
        with schedule.no_recompile("none", "warm-up"):
            if threshold is not None:
                compiled.backend.enable(threshold, DecisionLog())
            generate()
            if threshold is not None:
                compiled.backend.disable()
    before = schedule.counters()
    found = explain.explain_benchmark(compiled.model.pipe, compiled.backend, THRESHOLD, generate, "cpu",
                                      time.perf_counter, "regional", True, True)
    assert not (schedule.counters() - before).any
    assert found.profile["first_block"] > 0 and found.profile["hits"] >= 1
    counted = flops(eager, THRESHOLD)
    assert (found.flops, found.flops_hits) == (counted.flops, counted.hits)


def test_breakdown_and_flops_are_on_on_a_gpu_and_off_on_a_cpu_by_default():
    gpu = build_config({"model": "tiny"}, cuda=(lambda: True, lambda: 1))
    cpu = build_config({"model": "tiny", "device": "cpu"})
    assert (gpu.breakdown, gpu.flops, cpu.breakdown, cpu.flops) == (True, True, False, False)


def test_a_bad_breakdown_value_names_the_option_and_the_values():
    with pytest.raises(ConfigError) as caught:
        build_config({"model": "tiny", "breakdown": "sometimes"})
    assert "--fbcache-breakdown" in str(caught.value) and "auto, on, off" in str(caught.value)


# ------------------------------------------------------------------------------------ sweeps

EXPLAINED = ["--fbcache-steps", str(STEPS), "--fbcache-rounds", "2", "--fbcache-warmup-rounds", "0",
             "--fbcache-thresholds", f"0 {THRESHOLD}", "--fbcache-breakdown", "on", "--fbcache-flops", "on",
             "--benchmark-autosave"]


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> tuple[Path, list[str]]:
    """Two sweeps of unchanged code, then one whose every transformer forward does more work."""
    base = tmp_path_factory.mktemp("explained")
    outputs = []
    for extra in ({}, {}, {"FBCACHE_TEST_EXTRA_WORK": "64"}):
        sweep = run_sweep(base, *EXPLAINED, env=extra, plugins=("plugins.extra_work",))
        assert sweep.returncode == 0, sweep.output
        outputs.append(sweep.output)
    return base / "history", outputs


def _compare(storage: Path, *runs: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fbcache", "compare", "--storage", str(storage), *runs], cwd=ROOT,
                          capture_output=True, text=True)


@pytest.mark.integration
def test_a_sweep_records_shows_and_prices_its_profiles_and_flops(history):
    storage, outputs = history
    benchmarks = json.loads(run_files(storage)[0].read_text())["benchmarks"]
    records = {r.label: r for r in (BenchRecord.from_extra_info(b["extra_info"]) for b in benchmarks)}
    assert records["uncached"].flops == records["0"].flops and records["0"].flops_hits == 0
    assert records[f"{THRESHOLD:g}"].profile["hits"] == records[f"{THRESHOLD:g}"].hits
    assert "Why this speedup:" in outputs[0] and "predicted vs measured" in outputs[0]
    assert "| ideal × | efficiency | FLOPs × |" in outputs[0]
    assert "untimed after each benchmark's rounds: a profiled generation and a FLOPs count; 6 generations" in outputs[0]


@pytest.mark.integration
def test_aa_sweeps_compare_clean(history):
    storage, _ = history
    runs = [path.stem for path in run_files(storage)]
    done = _compare(storage, "--latest", runs[1])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "work changed" not in done.stdout


@pytest.mark.integration
def test_more_work_in_every_forward_is_work_changed_on_a_cpu(history):
    storage, _ = history
    done = _compare(storage)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "flops: **changed**: work changed: +" in done.stdout


@pytest.mark.integration
def test_the_sequential_schedule_records_them_too(tmp_path):
    sweep = run_sweep(tmp_path, *EXPLAINED, "--fbcache-interleave", "false")
    assert sweep.returncode == 0, sweep.output
    benchmarks = json.loads(sweep.saved_runs()[0].read_text())["benchmarks"]
    records = [BenchRecord.from_extra_info(b["extra_info"]) for b in benchmarks]
    assert all(r.profile and r.flops for r in records)
