"""nunchaku's first-block cache, on whichever supported release is installed (0.3.2, 1.x).

What changes between releases, and how this adapter follows it (read from nunchaku's source):

- **where the decision is made**: ``get_can_use_cache`` is called through the globals of the module
  that *defines* ``check_and_apply_cache`` - ``caching/utils.py`` on 0.3.2, ``caching/fbcache.py``
  from 1.0 on, where ``utils`` only re-imports it. We find that module from
  ``check_and_apply_cache.__module__`` and wrap the decision, and read the "nothing cached yet"
  buffer, there. 0.3.2 returns ``(bool, float)``, 1.x two 0-dim tensors: converted once each.
- **V1 or V2 transformer**: ``diffusers_adapters.apply_cache_on_pipe`` always picks the V1 adapter;
  a ``NunchakuFluxTransformer2DModelV2`` (1.x) needs ``diffusers_adapters.flux_v2``.
- **re-applying** only updates the threshold. A V1 transformer counts as cached only after its
  first generation; a second apply before that would keep the first threshold, so we refuse it
  (the harness always generates between two applies) and check the threshold after every apply.
- **the off switch** is a negative threshold. V2 then calls the transformer's original forward: the
  uncached computation, so a V2 pipeline can run the uncached baseline again. V1 keeps the patched
  forward, which runs every block without deciding: all blocks computed, but through nunchaku's
  cached-blocks module, so it is not "no cache hooks at all" and the baseline must come first.
- Applying patches the pipeline *class* (``__call__``) for good, on every release.

Unsupported releases (0.2.x, 0.3.0-0.3.1) are refused before any model is built.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from fbcache.backends.base import BackendSpec
from fbcache.backends.nunchaku_engine import INSTALL_HINT, detect, precision_for_capability, unsupported_release
from fbcache.errors import BrokenRunError, ConfigError
from fbcache.plugin.decisions import DecisionLog

if TYPE_CHECKING:
    from fbcache.config.harness import HarnessConfig

#: nunchaku's own off switch: any negative threshold (0 still decides every step, and never hits)
OFF = -1.0
#: the buffer that holds the last computed step's first-block residual; None until step 0 computed
FIRST_RESIDUAL = "first_multi_hidden_states_residual"


def decision_module() -> ModuleType:
    """The module that defines ``check_and_apply_cache``: it calls ``get_can_use_cache`` through its
    own globals and owns the buffers (``caching.utils`` on 0.3.2, ``caching.fbcache`` on 1.x)."""
    utils = importlib.import_module("nunchaku.caching.utils")
    module = importlib.import_module(utils.check_and_apply_cache.__module__)
    missing = [name for name in ("get_can_use_cache", "get_buffer") if not callable(getattr(module, name, None))]
    if missing:
        raise BrokenRunError(f"{module.__name__} (nunchaku {detect().version}) has no {', '.join(missing)}; "
                             "this nunchaku layout is not supported")
    return module


def is_v2(transformer: Any) -> bool:
    """True for nunchaku 1.x's ``NunchakuFluxTransformer2DModelV2`` (which 0.3.2 does not have)."""
    try:
        from nunchaku import NunchakuFluxTransformer2DModelV2
    except ImportError:
        return False
    return isinstance(transformer, NunchakuFluxTransformer2DModelV2)


class _Recorder:
    """Where the wrapped decision writes: the log of the threshold being measured, if any."""

    log: DecisionLog | None = None


_RECORDER = _Recorder()


def install_decision_wrapper(module: ModuleType) -> None:
    """Wrap ``module.get_can_use_cache`` once per process; every call is noted in the current log."""
    decide = module.get_can_use_cache
    if getattr(decide, "__fbcache_wrapped__", False):
        return

    @functools.wraps(decide)
    def recorded(first_hidden_states_residual: Any, threshold: float, parallelized: bool = False,
                 mode: str = "multi") -> Any:
        nothing_cached = module.get_buffer(FIRST_RESIDUAL) is None
        can_use_cache, diff = decide(first_hidden_states_residual, threshold=threshold, parallelized=parallelized,
                                     mode=mode)
        log = _RECORDER.log
        if log is not None and mode == "multi":  # "single" only with use_double_fb_cache, which we never set
            # 1.x returns 0-dim tensors: one host sync each, as the engine's own `if can_use_cache` does
            log.note_decision(hit=bool(can_use_cache), diff=None if nothing_cached else float(diff))
        return can_use_cache, diff

    recorded.__fbcache_wrapped__ = True  # type: ignore[attr-defined]
    setattr(module, "get_can_use_cache", recorded)  # noqa: B010 - a module of nunchaku's, found at run time


class NunchakuFBCache:
    """nunchaku's FBCache on one pipeline: applied per threshold, switched off with a negative one."""

    name = "nunchaku"

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.v2 = is_v2(pipe.transformer)
        self.can_run_uncached = True
        self._applied = False
        install_decision_wrapper(decision_module())

    def _apply(self, threshold: float) -> None:
        if self.v2:
            from nunchaku.caching.diffusers_adapters.flux_v2 import apply_cache_on_pipe
        else:
            from nunchaku.caching.diffusers_adapters import apply_cache_on_pipe
        apply_cache_on_pipe(self.pipe, residual_diff_threshold=threshold)
        self._applied = True

    def _pending_first_apply(self) -> bool:
        """V1 applied, but never run in a generation: a re-apply now would not take effect."""
        return self._applied and not self.v2 and not getattr(self.pipe.transformer, "_is_cached", False)

    def effective_threshold(self) -> float | None:
        """The threshold nunchaku will use; None for a V1 transformer that has not generated yet."""
        transformer = self.pipe.transformer
        if self.v2:
            return float(transformer.residual_diff_threshold_multi)
        blocks = getattr(transformer, "cached_transformer_blocks", None)
        return float(blocks[0].residual_diff_threshold_multi) if blocks is not None else None

    def enable(self, threshold: float, log: DecisionLog) -> None:
        if self._pending_first_apply():
            raise BrokenRunError("nunchaku's cache was applied but no generation ran since; applying it again now "
                                 "would keep the first threshold (a V1 transformer is cached only once it ran)")
        self._apply(threshold)
        effective = self.effective_threshold()
        if effective is not None and effective != threshold:
            raise BrokenRunError(f"nunchaku kept threshold {effective:g} after applying {threshold:g}")
        self.can_run_uncached = False
        _RECORDER.log = log

    def disable(self) -> None:
        _RECORDER.log = None
        if self._pending_first_apply():
            return  # nothing generated (the run broke); a re-apply would not take effect anyway
        self._apply(OFF)
        # V2 now calls the original forward; V1 keeps its patched forward (all blocks, no decision)
        self.can_run_uncached = self.v2


def check_engine(config: HarnessConfig, option: str, value: str) -> None:
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


def _capability(device: str) -> tuple[int, int]:
    import torch

    index = int(device.split(":")[1]) if ":" in device else 0
    return torch.cuda.get_device_capability(index)


def preflight(config: HarnessConfig) -> None:
    """The engine (or a stand-in) is installed, and its release can sweep thresholds on one pipeline."""
    check_engine(config, "--fbcache-cache-backend", config.cache_backend)
    engine = detect()
    why = unsupported_release(engine.version)
    if why is not None:
        from fbcache import backends

        others = ", ".join(name for name in backends.names() if name != "nunchaku")
        raise ConfigError("--fbcache-cache-backend", config.cache_backend, f"{others}, or nunchaku >= 0.3.2", why)


SPEC = BackendSpec(
    name="nunchaku",
    summary="nunchaku's apply_cache_on_pipe, 0.3.2 or 1.x (needs --fbcache-quant nunchaku; patches the pipeline class)",
    create=lambda pipe, config: NunchakuFBCache(pipe),
    removable=False,
    preflight=preflight,
    versions=lambda: {"nunchaku": detect().label},
    settings=lambda config: {"use_double_fb_cache": False},
    compile_note="nunchaku's engine runs its own CUDA kernels and its cache patches the pipeline class; "
                 "it is not run under torch.compile",
)
