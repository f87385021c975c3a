"""Cache backends: switch FBCache on and off on one pipeline, and wire up the decision log.

Each backend follows the diffusers hooks pattern: an ``apply_*`` function that installs the
real cache, and a matching removal where the backend allows one.

- ``diffusers``: ``transformer.enable_cache(FirstBlockCacheConfig(threshold=t))`` /
  ``disable_cache()``. We wrap the head-block hook's ``_should_compute_remaining_blocks``.
- ``nunchaku``: ``nunchaku.caching.diffusers_adapters.apply_cache_on_pipe(pipe,
  residual_diff_threshold=t)``. It patches the pipeline *class* and cannot be removed; applying it
  again only updates the threshold, so the uncached baseline must be measured before the first
  apply. We wrap ``nunchaku.caching.utils.get_can_use_cache``.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Protocol

from fbcache.plugin.decisions import DecisionLog, ThresholdProbe
from fbcache.errors import BrokenRunError


class CacheBackend(Protocol):
    name: str
    #: False once the pipeline carries a cache that cannot be removed
    can_run_uncached: bool

    def enable(self, threshold: float, log: DecisionLog) -> None: ...

    def disable(self) -> None: ...


# ------------------------------------------------------------------------------- diffusers


def _fbc_head_hook(transformer: Any) -> Any:
    """The FirstBlockCache head-block hook that enable_cache() registered on the transformer."""
    from diffusers.hooks.first_block_cache import _FBC_LEADER_BLOCK_HOOK

    for module in transformer.modules():
        registry = getattr(module, "_diffusers_hook", None)
        hook = registry.get_hook(_FBC_LEADER_BLOCK_HOOK) if registry is not None else None
        if hook is not None:
            return hook
    raise BrokenRunError("diffusers FirstBlockCache head hook not found after enable_cache()")


def apply_decision_log_to_fbc_hook(hook: Any, log: DecisionLog) -> None:
    """Record every decision of a diffusers FBCHeadBlockHook in ``log``."""
    decide = hook._should_compute_remaining_blocks
    hook.threshold = ThresholdProbe(float(hook.threshold), log)

    @functools.wraps(decide)
    def recorded(hidden_states_residual: Any) -> bool:
        should_compute = decide(hidden_states_residual)
        log.note_decision(hit=not should_compute)
        return should_compute

    hook._should_compute_remaining_blocks = recorded


class DiffusersFBCache:
    """diffusers' built-in FirstBlockCache, enabled per threshold and removed afterwards."""

    name = "diffusers"
    can_run_uncached = True

    def __init__(self, pipe: Any) -> None:
        self.transformer = pipe.transformer

    def enable(self, threshold: float, log: DecisionLog) -> None:
        from diffusers.hooks import FirstBlockCacheConfig

        # Enabling registers fresh hooks and invalidates the registry cache, so the pipeline's
        # next cache_context() reaches them (the diffusers #14037 trap is about hooks registered
        # after a context was set up; measure() also checks that every step was decided).
        self.transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
        apply_decision_log_to_fbc_hook(_fbc_head_hook(self.transformer), log)

    def disable(self) -> None:
        if getattr(self.transformer, "_cache_config", None) is not None:
            self.transformer.disable_cache()


# -------------------------------------------------------------------------------- nunchaku


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


def make_backend(name: str, pipe: Any) -> CacheBackend:
    if name == "diffusers":
        return DiffusersFBCache(pipe)
    if name == "nunchaku":
        return NunchakuFBCache(pipe)
    raise ValueError(f"unknown cache backend {name!r}")
