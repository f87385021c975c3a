"""--fbcache-compile and the quantization modes on CPU: refusals before any model is built, the
recompile guard, and FBCache under regional compilation deciding and skipping exactly as eager.

torch.compile runs here with the ``aot_eager`` backend (tests/plugins/aot_eager.py): the same dynamo
capture, guards and recompiles as inductor, without generating C++ (see that file for why).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from conftest import run_sweep
from fbcache import models
from fbcache.backends import DecisionLog
from fbcache.backends.diffusers import DiffusersFBCache
from fbcache.config import HarnessConfig
from fbcache.configure import build_config, check_compile_selection, check_environment
from fbcache.errors import BrokenRunError, ConfigError
from fbcache.history import BenchRecord
from fbcache.history.fingerprint import fingerprint_id, match_facts
from fbcache.models import load_model
from fbcache.plugin import schedule
from fbcache.plugin.machine import fbcache_machine_info
from fbcache.plugin.records import record_warmup
from fbcache.verdicts.bounds import parse_profile

NO_CUDA = (lambda: False, lambda: 0)
ONE_GPU = (lambda: True, lambda: 1)
HAS_TORCHAO = importlib.util.find_spec("torchao") is not None


def config(tmp_path: Path, cuda=NO_CUDA, **raw) -> HarnessConfig:
    raw.setdefault("model", "tiny-random")
    raw.setdefault("output_dir", str(tmp_path / "out"))
    return build_config(raw, cuda=cuda)


def refusal(tmp_path: Path, cuda=NO_CUDA, **raw) -> str:
    with pytest.raises(ConfigError) as excinfo:
        config(tmp_path, cuda, **raw)
    message = str(excinfo.value)
    assert "\n" not in message, "a refusal is one line"
    return message


# ---------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("quant, why", [
    ("torchao-int4wo", "int4 tile_packed_to_4d (tinygemm) kernels need a CUDA GPU of sm_80 or newer; the device is cpu"),
    ("torchao-fp8", "float8 needs a CUDA GPU of sm_89 or newer; the device is cpu"),
    ("torchao-fp8-tensor", "float8 needs a CUDA GPU of sm_89 or newer"),
])
def test_gpu_only_quantizations_are_refused_on_cpu(tmp_path, quant, why):
    message = refusal(tmp_path, quant=quant)
    assert message.startswith(f"--fbcache-quant: invalid value '{quant}'") and why in message
    assert message.endswith("accepted: none, torchao-int8wo")


def test_int8_weight_only_is_accepted_on_cpu(tmp_path):
    assert config(tmp_path, quant="torchao-int8wo").quant == "torchao-int8wo"


@pytest.mark.parametrize("quant, capability, refused", [
    ("torchao-int4wo", (7, 5), True), ("torchao-int4wo", (8, 0), False), ("torchao-int4wo", (9, 0), False),
    ("torchao-fp8", (8, 6), True), ("torchao-fp8", (8, 9), False), ("torchao-fp8-tensor", (8, 0), True),
])
def test_quantization_needs_its_compute_capability_before_weights_load(quant, capability, refused):
    config = HarnessConfig(model="org/flux", quant=quant, device="cuda")

    def check() -> None:
        check_environment(config, capability=lambda d: capability, has_module=lambda name: True)

    if not refused:
        check()
        return
    with pytest.raises(ConfigError) as excinfo:
        check()
    assert f"this GPU is sm_{capability[0]}{capability[1]}" in str(excinfo.value)
    assert quant not in str(excinfo.value).split("accepted:")[1]


def test_nunchaku_backend_cannot_run_compiled(tmp_path):
    message = refusal(tmp_path, cache_backend="nunchaku", compile="regional")
    assert message.startswith("--fbcache-compile: invalid value 'regional'")
    assert "nunchaku cache backend cannot run under torch.compile" in message and message.endswith("accepted: none")
    assert config(tmp_path, cache_backend="nunchaku").compile == "none"


def test_nunchaku_quantization_cannot_run_compiled(tmp_path):
    message = refusal(tmp_path, ONE_GPU, model="org/flux", quant="nunchaku", nunchaku_transformer="svdq.safetensors",
                      compile="regional")
    assert "--fbcache-compile" in message and "its own CUDA kernels" in message


def test_compiled_int8_weight_only_is_refused_on_a_gpu_only(tmp_path):
    message = refusal(tmp_path, ONE_GPU, device="cuda", quant="torchao-int8wo", compile="regional")
    assert message.startswith("--fbcache-compile: invalid value 'regional'") and message.endswith("accepted: none")
    assert "with --fbcache-quant torchao-int8wo" in message and "never finished a generation" in message
    assert config(tmp_path, ONE_GPU, device="cuda", quant="torchao-int8wo").compile == "none"
    assert config(tmp_path, quant="torchao-int8wo", compile="regional").compile == "regional"  # CPU: compiles and runs


def test_full_compile_is_refused_once_cached_benchmarks_are_selected(tmp_path):
    full = config(tmp_path, compile="full")
    check_compile_selection(full, 0)  # uncached only (-k uncached): allowed
    with pytest.raises(ConfigError) as excinfo:
        check_compile_selection(full, 2)
    message = str(excinfo.value)
    assert "\n" not in message and message.startswith("--fbcache-compile: invalid value 'full'")
    assert "2 cached benchmark(s) selected" in message and "use regional" in message
    check_compile_selection(config(tmp_path, compile="regional"), 2)


def test_full_compile_with_thresholds_stops_before_any_model_is_built(sweep):
    result = sweep("--fbcache-model", "tiny", "--fbcache-compile", "full", "--fbcache-thresholds", "0 0.5",
                   env={"FBCACHE_TEST_FAULT": "no-model"}, plugins=("plugins.faults",))
    assert result.returncode == 4, result.output
    assert "fbcache: --fbcache-compile: invalid value 'full' (2 cached benchmark(s) selected" in result.output
    assert "MODEL WAS BUILT" not in result.output


# ------------------------------------------------------------------------------- history identity
@pytest.mark.skipif(not HAS_TORCHAO, reason="torchao is an optional extra")
def test_fingerprint_names_the_torchao_config_and_the_compile_mode():
    eager = fbcache_machine_info(HarnessConfig(model="tiny-random", device="cpu"))
    assert eager["quant_config"] is None and eager["compile"]["mode"] == "none"
    assert "quant_config" not in eager["fingerprint"] and "compile" not in eager["fingerprint"], \
        "bf16 eager fingerprints must stay what they were before these fields existed"
    int8 = fbcache_machine_info(HarnessConfig(model="tiny-random", quant="torchao-int8wo", device="cpu"))
    assert int8["fingerprint"]["quant_config"].startswith("Int8WeightOnlyConfig(")
    assert "granularity=PerRow" in int8["quant_config"] and "set_inductor_config=False" in int8["quant_config"]
    compiled = fbcache_machine_info(HarnessConfig(model="tiny-random", compile="regional", device="cpu"))
    assert compiled["fingerprint"]["compile"].startswith("regional (")
    assert "before any enable_cache" in compiled["compile"]["recipe"]
    ids = {fingerprint_id(info["fingerprint"]) for info in (eager, int8, compiled)}
    assert len(ids) == 3
    assert match_facts(compiled)["compile"] == "regional" and match_facts(eager)["compile"] == "none"


def test_an_eager_bounds_profile_never_judges_a_compiled_run():
    floor = {"0.5": {"min_ssim": 0.5}}  # a profile must check something
    profile = parse_profile({"profile": {"name": "eager"}, "match": {"model": "tiny"}, "thresholds": floor}, "test")
    assert profile.matches({"model": "tiny", "compile": "none"})
    assert profile.matches({"model": "tiny"}), "a run saved before the compile fact existed was eager"
    assert not profile.matches({"model": "tiny", "compile": "regional"})
    compiled = parse_profile({"profile": {"name": "c"}, "match": {"model": "tiny", "compile": "regional"},
                              "thresholds": floor}, "test")
    assert compiled.matches({"model": "tiny", "compile": "regional"}) and not compiled.matches({"model": "tiny"})


# ------------------------------------------------------------------------------ recompile guard
@pytest.fixture
def compiled_square():
    torch._dynamo.reset()

    def square(x: torch.Tensor) -> torch.Tensor:
        return x * x + 1

    fn = torch.compile(square, backend="aot_eager", dynamic=False)
    fn(torch.ones(4))  # the warm-up compiles this shape
    yield fn
    torch._dynamo.reset()


def test_guard_lets_warm_calls_through(compiled_square):
    with schedule.no_recompile("regional", "threshold 0.5"):
        compiled_square(torch.ones(4))


def test_guard_fails_a_benchmark_whose_timed_rounds_recompile(compiled_square):
    with pytest.raises(BrokenRunError, match=r"recompiled during the timed rounds of threshold 0.5.*not recorded"), \
            schedule.no_recompile("regional", "threshold 0.5"):
        compiled_square(torch.ones(5))  # a new shape: the guard on the input fails


def test_guard_counts_graphs_where_set_stance_is_unavailable(compiled_square, monkeypatch):
    monkeypatch.delattr(torch.compiler, "set_stance")  # an older torch
    with pytest.raises(BrokenRunError, match=r"compiled 1 new graph\(s\).*during the timed rounds of uncached"), \
            schedule.no_recompile("regional", "uncached"):
        compiled_square(torch.ones(6))


def test_guard_is_off_for_eager_sessions(compiled_square):
    with schedule.no_recompile("none", "uncached"):
        compiled_square(torch.ones(7))  # compiles, and an eager session does not care


def test_compile_time_is_the_first_call_minus_the_timed_median():
    record = BenchRecord(threshold=None, model="tiny", quantization="none", cache_backend="diffusers", steps=8,
                         resolution="64x64", seed=0, rounds_s=[1.0, 3.0, 2.0])
    record_warmup(record, "regional", schedule.WarmUp(12.5, schedule.CompileCounters(3, 0)))
    assert (record.compile_s, record.compile_graphs, record.compile_mode) == (10.5, 3, "regional")
    record_warmup(record, "regional", schedule.WarmUp(1.5, schedule.CompileCounters(0, 0)))
    assert record.compile_s == 0.0, "a warm call faster than the median compiled nothing"
    again = BenchRecord.from_extra_info(record.to_extra_info())
    assert (again.compile_s, again.compile_warmup_s, again.compile_mode) == (0.0, 1.5, "regional")


# --------------------------------------------------------------------- FBCache under regional compile
def test_regional_compile_skips_the_compiled_blocks_on_every_hit(monkeypatch):
    """The hooks wrap the compiled forwards: a hit must not call the compiled tail block at all."""
    monkeypatch.setattr(models, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    config = HarnessConfig(model="tiny", steps=8, compile="regional", device="cpu")
    loaded = load_model(config)
    last = loaded.pipe.transformer.single_transformer_blocks[-1]
    compiled_forward = last.forward
    assert "forward" in last.__dict__, "the block's forward is the compiled wrapper"
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return compiled_forward(*args, **kwargs)

    last.forward = counted
    backend, log = DiffusersFBCache(loaded.pipe), DecisionLog()
    backend.enable(0.5, log)
    try:
        before = schedule.counters()
        log.start_generation()
        loaded.pipe(height=64, width=64, num_inference_steps=8, generator=torch.Generator().manual_seed(0),
                    output_type="pt", **loaded.call_kwargs)
        decisions = log.finish_generation()
    finally:
        backend.disable()
        torch._dynamo.reset()
    hits = sum(d.hit for d in decisions)
    assert len(decisions) == 8 and hits > 0
    assert len(calls) == 8 - hits, "every computed step ran the compiled block, no hit did"
    assert (schedule.counters() - before).graphs > 0, "the blocks really were compiled"
    assert last.forward is counted, "disable_cache() restored the compiled forward"


def _hits_by_threshold(run: dict) -> dict:
    return {b["extra_info"]["threshold"]: b["extra_info"]["hit_trace"] for b in run["benchmarks"]
            if b["extra_info"]["threshold"] is not None}


@pytest.mark.integration
def test_compiled_sweep_records_the_same_hits_as_eager(sweep, tmp_path):
    args = ("--fbcache-model", "tiny", "--fbcache-steps", "8", "--fbcache-rounds", "2", "--fbcache-warmup-rounds", "0",
            "--fbcache-thresholds", "0 0.5", "--fbcache-bounds", "none", "--benchmark-autosave")
    eager = sweep(*args)
    assert eager.returncode == 0, eager.output
    (tmp_path / "compiled").mkdir()
    compiled = run_sweep(tmp_path / "compiled", *args, "--fbcache-compile", "regional", plugins=("plugins.aot_eager",))
    assert compiled.returncode == 0, compiled.output
    eager_hits, compiled_hits = _hits_by_threshold(eager.last_run()), _hits_by_threshold(compiled.last_run())
    assert compiled_hits == eager_hits and sum(compiled_hits[0.5]) > 0 and not any(compiled_hits[0.0])

    run = compiled.last_run()
    assert run["machine_info"]["fbcache"]["compile"]["mode"] == "regional"
    assert run["machine_info"]["fbcache"]["fingerprint"]["compile"] == "regional (aot_eager)"
    info = {b["extra_info"]["threshold"]: b["extra_info"] for b in run["benchmarks"]}
    assert info[None]["compile_graphs"] > 0 and info[None]["compile_s"] >= 0
    assert info[0.0]["compile_graphs"] == 0 and info[0.5]["compile_graphs"] == 0, \
        "switching the cache on compiles nothing: the hooks stay outside the compiled blocks"
    assert all(i["compile_mode"] == "regional" for i in info.values())
    assert "| compile (s) |" in compiled.output and "| compile (s) |" not in eager.output
    assert "no compilation during the timed rounds of 3 benchmark(s)" in compiled.output


@pytest.mark.integration
def test_recompiling_timed_rounds_fail_and_stay_out_of_history(sweep):
    result = sweep("--fbcache-model", "tiny", "--fbcache-steps", "4", "--fbcache-rounds", "1",
                   "--fbcache-warmup-rounds", "0", "--fbcache-thresholds", "0.5", "--fbcache-compile", "regional",
                   "--benchmark-autosave", env={"FBCACHE_TEST_FAULT": "recompile"},
                   plugins=("plugins.aot_eager", "plugins.faults"))
    assert result.returncode == 1, result.output
    assert "torch.compile recompiled during the timed rounds of uncached" in result.output
    assert "NOT saved to the history" in result.output and result.saved_runs() == []
