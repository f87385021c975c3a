"""nunchaku's first-block cache (``apply_cache_on_pipe``), for its SVDQuant FLUX transformer.

Applying it patches the pipeline *class* and cannot be undone; applying it again only updates the
threshold. So the uncached baseline is measured before the first apply, and hits are counted by
wrapping nunchaku's own cache decision.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, Any

from fbcache.backends.base import BackendSpec
from fbcache.backends.nunchaku_engine import INSTALL_HINT, detect, precision_for_capability
from fbcache.errors import ConfigError
from fbcache.plugin.decisions import DecisionLog

if TYPE_CHECKING:
    from fbcache.config.harness import HarnessConfig

class NunchakuFBCache:
    """nunchaku's FBCache adapter. Applying it is one-way: it patches the pipeline class."""

    name = "nunchaku"

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.can_run_uncached = True
        self._log: DecisionLog | None = None
        self._install_decision_wrapper()

    def _install_decision_wrapper(self) -> None:
        utils = importlib.import_module("nunchaku.caching.utils")
        decide = utils.get_can_use_cache
        if getattr(decide, "__fbcache_wrapped__", False):
            decide = decide.__wrapped__
        backend = self

        @functools.wraps(decide)
        def recorded(first_hidden_states_residual: Any, threshold: float, parallelized: bool = False,
                     mode: str = "multi") -> tuple[bool, float]:
            buffer = "first_multi_hidden_states_residual" if mode == "multi" else "first_single_hidden_states_residual"
            nothing_cached = utils.get_buffer(buffer) is None
            can_use_cache, diff = decide(first_hidden_states_residual, threshold=threshold,
                                         parallelized=parallelized, mode=mode)
            if backend._log is not None and mode == "multi":
                backend._log.note_decision(hit=can_use_cache, diff=None if nothing_cached else float(diff))
            return can_use_cache, diff

        recorded.__fbcache_wrapped__ = True  # type: ignore[attr-defined]
        utils.get_can_use_cache = recorded

    def enable(self, threshold: float, log: DecisionLog) -> None:
        from nunchaku.caching.diffusers_adapters import apply_cache_on_pipe

        apply_cache_on_pipe(self.pipe, residual_diff_threshold=threshold)
        self.can_run_uncached = False
        self._log = log

    def disable(self) -> None:
        # nunchaku offers no removal; the next enable() updates the threshold in place.
        self._log = None



def _capability(device: str) -> tuple[int, int]:
    import torch

    index = int(device.split(":")[1]) if ":" in device else 0
    return torch.cuda.get_device_capability(index)


def check_engine(config: "HarnessConfig", option: str, value: str) -> None:
    """The installed ``nunchaku`` must be the real engine (or, for the cache alone, our stand-in)."""
    engine = detect()
    if engine.status == "absent":
        raise ConfigError(option, value, "the alternatives without nunchaku", f"nunchaku is not installed: {INSTALL_HINT}")
    if engine.status == "unrelated":
        raise ConfigError(option, value, "the alternatives without nunchaku",
                          f"the installed 'nunchaku' {engine.version} is an unrelated PyPI package; "
                          f"pip uninstall nunchaku, then {INSTALL_HINT}")
    if engine.status == "standin":
        if config.quant == "nunchaku":
            raise ConfigError(option, value, "none, torchao-int8wo, torchao-fp8",
                              "only fbcache's test stand-in for nunchaku is installed; it cannot quantize")
        return
    if config.quant != "nunchaku":
        raise ConfigError("--fbcache-cache-backend", config.cache_backend, "diffusers",
                          "nunchaku's cache adapter needs nunchaku's transformer: add --fbcache-quant nunchaku")
    try:
        precision_for_capability(_capability(config.device))
    except ValueError as exc:
        raise ConfigError(option, value, "none, torchao-int8wo, torchao-fp8", str(exc)) from None


SPEC = BackendSpec(
    name="nunchaku",
    summary="nunchaku's apply_cache_on_pipe (needs --fbcache-quant nunchaku; cannot be removed)",
    create=lambda pipe, config: NunchakuFBCache(pipe),
    removable=False,
    preflight=lambda config: check_engine(config, "--fbcache-cache-backend", config.cache_backend),
    versions=lambda: {"nunchaku": detect().label},
)
