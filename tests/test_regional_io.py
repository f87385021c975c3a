"""--fbcache-compile regional+io on CPU: the modules outside the blocks compiled too, FBCache still deciding
eagerly and skipping the compiled blocks, nothing new compiled when the cache is switched on, its own
fingerprint, and regional left exactly as it was.

torch.compile runs with the ``aot_eager`` backend here (tests/plugins/aot_eager.py explains why).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from fbcache import models
from fbcache.backends import DecisionLog
from fbcache.backends.diffusers import DiffusersFBCache
from fbcache.config import HarnessConfig
from fbcache.configure import build_config, check_compile_selection
from fbcache.errors import BrokenRunError, ConfigError
from fbcache.history.fingerprint import fingerprint_id, match_facts
from fbcache.models import IO_MODULES, io_modules, load_model
from fbcache.plugin import schedule
from fbcache.plugin.machine import fbcache_machine_info

STEPS = 8
NO_CUDA = (lambda: False, lambda: 0)


@pytest.fixture(scope="module")
def loaded() -> Iterator[models.LoadedModel]:
    """The tiny model under regional+io, compiled with aot_eager (the backend is read when forwards are wrapped)."""
    backend = models.COMPILE_BACKEND
    models.COMPILE_BACKEND = "aot_eager"
    torch._dynamo.reset()
    try:
        yield load_model(HarnessConfig(model="tiny", steps=STEPS, compile="regional+io", device="cpu"))
    finally:
        models.COMPILE_BACKEND = backend
        torch._dynamo.reset()


def generate(model: models.LoadedModel, log: DecisionLog) -> list[bool]:
    """One generation; the hit of each step (empty without the cache)."""
    log.start_generation()
    try:
        model.pipe(height=64, width=64, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0),
                   output_type="pt", **model.call_kwargs)
    finally:
        decisions = log.finish_generation()
    return [d.hit for d in decisions]


def counted(module: Any, calls: list[str], name: str) -> Any:
    """Count calls of ``module.forward`` (the compiled wrapper); returns the wrapper to restore."""
    compiled = module.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return compiled(*args, **kwargs)

    module.forward = forward
    return compiled


def test_every_module_outside_the_blocks_is_compiled(loaded):
    transformer = loaded.pipe.transformer
    wrapped = [name for name, module in io_modules(transformer) if "forward" in module.__dict__]
    assert wrapped == list(IO_MODULES), "each module's forward was replaced by its compiled wrapper"


def test_hits_skip_the_compiled_blocks_while_the_compiled_io_modules_run_every_step(loaded):
    transformer = loaded.pipe.transformer
    calls: list[str] = []
    last = transformer.single_transformer_blocks[-1]
    restore = {"block": counted(last, calls, "block"), "norm_out": counted(transformer.norm_out, calls, "norm_out")}
    backend, log = DiffusersFBCache(loaded.pipe), DecisionLog()
    backend.enable(0.5, log)
    try:
        hits = generate(loaded, log)
    finally:
        backend.disable()
        last.forward, transformer.norm_out.forward = restore["block"], restore["norm_out"]
    assert 0 < sum(hits) < STEPS
    assert (calls.count("block"), calls.count("norm_out")) == (STEPS - sum(hits), STEPS), \
        "a hit skips the compiled tail blocks; the compiled output norm runs every step, hit or not"


def test_switching_the_cache_on_compiles_nothing_new(loaded):
    """On a hit the hooks hand norm_out a tensor laid out unlike a computed step's; it must not recompile."""
    torch._dynamo.reset()
    log = DecisionLog()
    generate(loaded, log)  # uncached: compiles every graph
    backend = DiffusersFBCache(loaded.pipe)
    backend.enable(0.5, log)
    before = schedule.counters()
    try:
        hits = generate(loaded, log)
    finally:
        backend.disable()
    assert sum(hits) > 0 and (schedule.counters() - before).graphs == 0


def test_the_hits_are_eager_s(loaded):
    """Compiling the modules outside the blocks changes no decision (aot_eager keeps eager numerics)."""
    log = DecisionLog()
    backend = DiffusersFBCache(loaded.pipe)
    backend.enable(0.5, log)
    try:
        hits = generate(loaded, log)
    finally:
        backend.disable()
    regional = load_model(HarnessConfig(model="tiny", steps=STEPS, device="cpu"))  # eager: the hits regional keeps
    reference, eager_log = DiffusersFBCache(regional.pipe), DecisionLog()
    reference.enable(0.5, eager_log)
    try:
        eager_hits = generate(regional, eager_log)
    finally:
        reference.disable()
    assert hits == eager_hits and any(hits)


# ------------------------------------------------------------------------------ history identity
def test_regional_io_has_its_own_fingerprint_and_regional_keeps_its_own():
    info = {mode: fbcache_machine_info(HarnessConfig(model="tiny-random", compile=mode, device="cpu"))
            for mode in ("regional", "regional+io")}
    assert info["regional+io"]["fingerprint"]["compile"] == f"regional+io ({models.COMPILE_BACKEND})"
    assert info["regional"]["fingerprint"]["compile"] == f"regional ({models.COMPILE_BACKEND})"
    assert fingerprint_id(info["regional"]["fingerprint"]) != fingerprint_id(info["regional+io"]["fingerprint"])
    assert match_facts(info["regional+io"])["compile"] == "regional+io"


def test_regional_s_recipe_is_unchanged():
    assert models.compile_recipe("regional") == (
        f"torch.compile(block.forward, fullgraph=True, backend={models.COMPILE_BACKEND!r}) on every block of "
        "transformer_blocks and single_transformer_blocks, before any enable_cache")


# ---------------------------------------------------------------------------------------- refusals
def config(tmp_path: Path, **raw: str) -> HarnessConfig:
    raw.setdefault("model", "tiny-random")
    raw.setdefault("output_dir", str(tmp_path / "out"))
    return build_config(raw, cuda=NO_CUDA)


def test_regional_io_is_accepted_with_the_diffusers_cache(tmp_path):
    assert config(tmp_path, compile="regional+io").compile == "regional+io"
    check_compile_selection(config(tmp_path, compile="regional+io"), 2)


@pytest.mark.parametrize("backend", ["nunchaku", "cache-dit"])
def test_regional_io_is_refused_with_caches_not_run_compiled(tmp_path, backend):
    with pytest.raises(ConfigError) as excinfo:
        config(tmp_path, cache_backend=backend, compile="regional+io")
    message = str(excinfo.value)
    assert message.startswith("--fbcache-compile: invalid value 'regional+io'") and message.endswith("accepted: none")


# ------------------------------------------------------------------------------- recompile guard
def test_a_regional_io_benchmark_whose_timed_rounds_recompile_fails():
    torch._dynamo.reset()
    square = torch.compile(lambda x: x * x + 1, backend="aot_eager", dynamic=False)
    square(torch.ones(4))
    try:
        with pytest.raises(BrokenRunError, match=r"recompiled during the timed rounds of threshold 0.8"), \
                schedule.no_recompile("regional+io", "threshold 0.8"):
            square(torch.ones(5))
    finally:
        torch._dynamo.reset()
