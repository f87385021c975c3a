"""A pytest plugin that injects a real slowdown into every transformer forward: ``-p tools.slowdown_plugin``.

For the GPU noise experiment (tools/gpu_noise_experiment.py), never for real runs. Set
``FBCACHE_SLOWDOWN=MODE:MS``: MODE ``all`` slows every forward of every benchmark; ``cached`` only
forwards while a cache is enabled (the threshold rows, never the uncached baseline). On CUDA the
delay is ``torch.cuda._sleep`` (the GPU spins, the host does not wait), calibrated to milliseconds
once; on a CPU it is a busy loop of that much CPU time (for testing the plumbing; a sleep would not
show in a CPU-clock run).
"""

from __future__ import annotations

import os
import time
from typing import Any

_state: dict[str, Any] = {"cached": False, "cycles_per_ms": None}


def parse(spec: str) -> tuple[str, float]:
    """'all:12.5' -> ('all', 12.5); a clear error otherwise."""
    mode, _, ms = spec.partition(":")
    if mode not in ("all", "cached"):
        raise ValueError(f"FBCACHE_SLOWDOWN mode must be all or cached, got {mode!r}")
    value = float(ms)
    if not value >= 0:
        raise ValueError(f"FBCACHE_SLOWDOWN milliseconds must be >= 0, got {ms!r}")
    return mode, value


def cycles_for(ms: float, cycles_per_ms: float) -> int:
    return max(0, round(ms * cycles_per_ms))


def _calibrate_cuda() -> float:
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    cycles = 50_000_000
    torch.cuda._sleep(1_000_000)
    start.record()
    torch.cuda._sleep(cycles)
    end.record()
    torch.cuda.synchronize()
    return cycles / start.elapsed_time(end)


def _delay(ms: float, on_cuda: bool) -> None:
    if ms <= 0:
        return
    if on_cuda:
        import torch

        cycles_per_ms = _state["cycles_per_ms"]
        if cycles_per_ms is None:
            cycles_per_ms = _state["cycles_per_ms"] = _calibrate_cuda()
        torch.cuda._sleep(cycles_for(ms, float(cycles_per_ms)))
    else:  # CPU work, not a sleep: CPU runs may be timed with the process's CPU time (--fbcache-clock)
        end = time.process_time() + ms / 1000
        while time.process_time() < end:
            pass


def install(mode: str, ms: float) -> None:
    """Wrap FluxTransformer2DModel.forward, and the session's live cache backend's enable/disable."""
    from diffusers import FluxTransformer2DModel

    from fbcache.plugin.session import FBCacheSession

    original = FluxTransformer2DModel.forward

    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        if mode == "all" or _state["cached"]:
            _delay(ms, next(self.parameters()).is_cuda)
        return original(self, *args, **kwargs)

    FluxTransformer2DModel.forward = forward
    live_backend: Any = FBCacheSession.backend

    def backend(self: Any) -> Any:
        live = live_backend.fget(self)
        if not getattr(live, "_fbcache_slowdown", False):
            enable, disable = live.enable, live.disable

            def wrapped_enable(*args: Any, **kwargs: Any) -> Any:
                _state["cached"] = True
                return enable(*args, **kwargs)

            def wrapped_disable(*args: Any, **kwargs: Any) -> Any:
                _state["cached"] = False
                return disable(*args, **kwargs)

            live.enable, live.disable, live._fbcache_slowdown = wrapped_enable, wrapped_disable, True
        return live

    setattr(FBCacheSession, "backend", property(backend))  # noqa: B010 - patching a property on purpose


def pytest_configure(config: Any) -> None:
    spec = os.environ.get("FBCACHE_SLOWDOWN")
    if spec:
        install(*parse(spec))
