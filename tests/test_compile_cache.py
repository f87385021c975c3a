"""--fbcache-compile-cache: torch's caches pointed into a directory that outlives the job, each benchmark's
first call recorded cold or warm, and a stack the directory already held that compiles cold again reported.

The unit tests feed :class:`~fbcache.plugin.compile_cache.CompileCache` the counts a first call would give;
the one integration test runs real inductor compilations in separate processes sharing the directory.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from conftest import run_sweep
from fbcache.config import BY_NAME
from fbcache.configure import build_config, options
from fbcache.errors import ConfigError
from fbcache.history import BenchRecord
from fbcache.plugin import display
from fbcache.plugin.compile_cache import MANIFEST, CompileCache, activate, read_manifest, stack_key, state
from fbcache.plugin.records import record_warmup
from fbcache.plugin.schedule import CompileCounters, WarmUp
from fbcache.render import row
from fbcache.verdicts.judge import judge_series
from tools.verdict_rates import REGIMES, simulate

NO_CUDA = (lambda: False, lambda: 0)


def info(torch_version: str = "2.13.0", mode: str = "regional+io", thresholds: str = "0 0.5") -> dict:
    """The parts of ``machine_info["fbcache"]`` a stack key reads, plus one it must not (the procedure)."""
    return {"accelerator": {"name": "NVIDIA H200", "capability": "9.0"}, "versions": {"torch": torch_version},
            "model": "flux-random", "quantization": "torchao-fp8", "quant_config": "Float8(...)",
            "compile": {"mode": mode, "backend": "inductor"}, "workload": {"resolution": "1024x1024", "steps": 28},
            "procedure": {"thresholds": thresholds}}


# ------------------------------------------------------------------------------------ the option
def test_the_option_has_its_environment_variable_and_reaches_the_nightly():
    spec = next(s for s in options() if s.name == "compile_cache")
    assert (spec.cli, spec.env, spec.nightly) == ("--fbcache-compile-cache", "FBCACHE_COMPILE_CACHE", True)


def test_the_directory_is_resolved_and_left_uncreated(tmp_path):
    harness = build_config({"compile_cache": str(tmp_path / "cc"), "output_dir": str(tmp_path / "out")}, cuda=NO_CUDA)
    assert harness.compile_cache == tmp_path / "cc" and not (tmp_path / "cc").exists()
    assert build_config({"output_dir": str(tmp_path / "out")}, cuda=NO_CUDA).compile_cache is None


def test_a_file_is_refused_in_one_line_naming_the_option(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError) as excinfo:
        build_config({"compile_cache": str(tmp_path / "file"), "output_dir": str(tmp_path / "out")}, cuda=NO_CUDA)
    message = str(excinfo.value)
    assert message.startswith(f"{BY_NAME['compile_cache'].cli}: invalid value") and "is a file" in message
    assert "\n" not in message


def test_activate_points_inductor_and_triton_into_the_directory(tmp_path):
    environ: dict[str, str] = {}
    activate(tmp_path / "cc", environ)
    assert environ == {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cc"),
                       "TRITON_CACHE_DIR": str(tmp_path / "cc" / "triton")}
    assert (tmp_path / "cc").is_dir()


# ------------------------------------------------------------------------------------ cold or warm
@pytest.mark.parametrize("graphs, hits, misses, bypasses, expected", [
    (3, 3, 0, 0, "warm"), (3, 0, 3, 0, "cold"), (3, 1, 2, 0, "partial"), (3, 0, 0, 3, "bypassed"),
    (3, 0, 0, 0, "uncached"), (0, 0, 0, 0, None),
])
def test_state_of_a_first_call(graphs, hits, misses, bypasses, expected):
    assert state(graphs, hits, misses, bypasses) == expected


def test_the_stack_key_ignores_the_procedure_and_follows_the_libraries_and_the_mode():
    assert stack_key(info()) == stack_key(info(thresholds="0.8"))
    assert stack_key(info()) != stack_key(info(torch_version="2.14.0"))
    assert stack_key(info()) != stack_key(info(mode="regional"))


def test_a_first_compilation_into_the_directory_lists_its_stack_and_is_no_finding(tmp_path):
    cache = CompileCache.open(tmp_path, info())
    entry = cache.outcome("uncached", 9, 0, 9, 0)
    assert (entry["state"], entry.get("finding"), cache.expected) == ("cold", None, None)
    assert list(read_manifest(tmp_path)) == [stack_key(info())]


def test_a_listed_stack_that_hits_is_warm_and_no_finding(tmp_path):
    CompileCache.open(tmp_path, info()).outcome("uncached", 9, 0, 9, 0)
    again = CompileCache.open(tmp_path, info())
    entry = again.outcome("uncached", 9, 9, 0, 0)
    assert (entry["state"], entry.get("finding")) == ("warm", None)


def test_a_listed_stack_that_misses_again_is_a_finding(tmp_path):
    CompileCache.open(tmp_path, info()).outcome("uncached", 9, 0, 9, 0)
    again = CompileCache.open(tmp_path, info())
    entry = again.outcome("uncached", 9, 0, 9, 0)
    assert entry["finding"].startswith(f"uncached: compiled 9 graph(s) cold (0 cache hit(s)) although {tmp_path} "
                                       "held this stack's graphs")


def test_another_stack_in_the_same_directory_starts_cold_without_a_finding(tmp_path):
    CompileCache.open(tmp_path, info(mode="regional")).outcome("uncached", 3, 0, 3, 0)
    other = CompileCache.open(tmp_path, info())
    entry = other.outcome("uncached", 9, 3, 6, 0)
    assert entry["state"] == "partial" and "finding" not in entry


def test_an_unreadable_manifest_expects_nothing(tmp_path):
    (tmp_path / MANIFEST).write_text("{not json")
    cache = CompileCache.open(tmp_path, info())
    assert cache.expected is None and "finding" not in cache.outcome("uncached", 9, 0, 9, 0)


# ------------------------------------------------------------------------------------ shown and judged
def finding_record(tmp_path: Path) -> BenchRecord:
    CompileCache.open(tmp_path, info()).outcome("uncached", 9, 0, 9, 0)
    record = BenchRecord(threshold=None, model="tiny", quantization="none", cache_backend="diffusers", steps=8,
                         resolution="64x64", seed=0, rounds_s=[1.0, 1.0])
    record_warmup(record, "regional+io", WarmUp(13.0, CompileCounters(9, 9, 0, 9, 0)),
                  CompileCache.open(tmp_path, info()))
    return record


def test_the_compile_column_says_cold_or_warm_and_marks_a_finding(tmp_path):
    record = finding_record(tmp_path)
    assert row(record, compiled=True)[-1] == "12.0 cold !"
    record.compile_cache = {"state": "warm", "hits": 9, "misses": 0, "bypasses": 0, "dir": None}
    assert row(record, compiled=True)[-1] == "12.0 warm"


def test_the_results_name_the_finding(tmp_path):
    record = finding_record(tmp_path)
    lines = display.compile_cache_lines([record])
    assert lines[0] == f"compile cache: {tmp_path}: uncached cold (0 hits, 9 misses)"
    assert lines[1].startswith("compile cache FINDING: uncached: compiled 9 graph(s) cold")


def test_a_saved_run_with_a_finding_carries_it_into_compare_s_notes(tmp_path):
    history = simulate(REGIMES[0], random.Random(2), 3)
    finding = finding_record(tmp_path).compile_cache
    history[-1].records["uncached"].compile_cache = json.loads(json.dumps(finding))
    notes = judge_series(history)[-1].notes
    assert f"compile cache: {finding['finding']}" in notes


# ------------------------------------------------------------------------------------ two real processes
@pytest.mark.integration
def test_the_second_process_compiles_warm_with_eager_s_hits(tmp_path):
    """Eager, then regional+io with inductor twice on one compile cache: cold, then warm, the same hits."""
    args = ("--fbcache-model", "tiny", "--fbcache-steps", "8", "--fbcache-rounds", "1", "--fbcache-warmup-rounds", "0",
            "--fbcache-thresholds", "0 0.5", "--fbcache-bounds", "none", "--benchmark-autosave")
    compiled = (*args, "--fbcache-compile", "regional+io", "--fbcache-compile-cache", str(tmp_path / "cc"))
    runs = {}
    for name, arguments in (("eager", args), ("cold", compiled), ("warm", compiled)):
        (tmp_path / name).mkdir()
        result = run_sweep(tmp_path / name, *arguments)
        assert result.returncode == 0, result.output
        runs[name] = (result, {b["extra_info"]["threshold"]: b["extra_info"] for b in result.last_run()["benchmarks"]})
    hits = {name: {t: i.get("hit_trace") for t, i in infos.items() if t is not None} for name, (_, infos) in runs.items()}
    assert hits["cold"] == hits["eager"] == hits["warm"] and any(hits["eager"][0.5])
    cold, warm = runs["cold"][1][None]["compile_cache"], runs["warm"][1][None]["compile_cache"]
    assert (cold["state"], cold["hits"], warm["state"], warm["misses"]) == ("cold", 0, "warm", 0)
    assert cold["misses"] == warm["hits"] > 0
    for name in ("cold", "warm"):
        output = runs[name][0].output
        assert "no compilation during the timed rounds of 3 benchmark(s)" in output
        assert "compile cache FINDING" not in output
    assert runs["warm"][0].last_run()["machine_info"]["fbcache"]["fingerprint"]["compile"] == "regional+io (inductor)"
