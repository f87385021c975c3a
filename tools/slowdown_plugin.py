"""A pytest plugin that injects a real slowdown into every transformer forward: ``-p tools.slowdown_plugin``.

For the GPU noise experiment (tools/gpu_noise_experiment.py), never for real runs. Set
``FBCACHE_SLOWDOWN=MODE:MS``: MODE ``all`` slows every forward of every benchmark; ``cached`` only
forwards while a cache is enabled (the threshold rows, never the uncached baseline). On CUDA the
delay is ``torch.cuda._sleep`` (the GPU spins, the host does not wait), calibrated to milliseconds
once; on a CPU it is ``time.sleep`` (for testing the plumbing).
"""

from __future__ import annotations

import os
import time
from typing import Any

_state = {"cached": False, "cycles_per_ms": None}


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

        if _state["cycles_per_ms"] is None:
            _state["cycles_per_ms"] = _calibrate_cuda()
        torch.cuda._sleep(cycles_for(ms, _state["cycles_per_ms"]))
    else:
        time.sleep(ms / 1000)


def install(mode: str, ms: float) -> None:
    """Wrap FluxTransformer2DModel.forward and the cache backends' enable/disable."""
    from diffusers import FluxTransformer2DModel

    from fbcache.backends import base

    original = FluxTransformer2DModel.forward

    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        if mode == "all" or _state["cached"]:
            _delay(ms, next(self.parameters()).is_cuda)
        return original(self, *args, **kwargs)

    FluxTransformer2DModel.forward = forward
    concrete = {c for c in vars(base).values() if isinstance(c, type) and hasattr(c, "enable") and c is not base.CacheBackend}
    for cls in concrete:
        enable, disable = cls.enable, cls.disable

        def wrapped_enable(self: Any, *args: Any, _enable: Any = enable, **kwargs: Any) -> Any:
            _state["cached"] = True
            return _enable(self, *args, **kwargs)

        def wrapped_disable(self: Any, *args: Any, _disable: Any = disable, **kwargs: Any) -> Any:
            _state["cached"] = False
            return _disable(self, *args, **kwargs)

        cls.enable, cls.disable = wrapped_enable, wrapped_disable


def pytest_configure(config: Any) -> None:
    spec = os.environ.get("FBCACHE_SLOWDOWN")
    if spec:
        install(*parse(spec))
