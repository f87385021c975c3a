"""diffusers' built-in FirstBlockCache, enabled per threshold and removed afterwards.

``transformer.enable_cache(FirstBlockCacheConfig(threshold=t))`` / ``disable_cache()``. Hits are
read from the head-block hook's own decision, ``_should_compute_remaining_blocks``, and the
difference it compared from a :class:`~fbcache.backends.ThresholdProbe`.
"""

from __future__ import annotations

import functools
import importlib.metadata
from typing import Any

from fbcache.backends import BackendSpec, DecisionLog, ThresholdProbe, one_threshold
from fbcache.config import Threshold
from fbcache.errors import BrokenRunError


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
    import torch

    decide = hook._should_compute_remaining_blocks
    hook.threshold = ThresholdProbe(float(hook.threshold), log)

    # never traced: the decision is data-dependent, and under --fbcache-compile regional the hooks
    # (and so this wrapper) run eagerly around the compiled blocks anyway
    @torch.compiler.disable
    @functools.wraps(decide)
    def recorded(hidden_states_residual: Any) -> bool:
        should_compute = decide(hidden_states_residual)
        log.note_decision(hit=not should_compute)
        return should_compute

    hook._should_compute_remaining_blocks = recorded


class DiffusersFBCache:
    """One pipeline's transformer with diffusers' FirstBlockCache switched on and off."""

    name = "diffusers"
    can_run_uncached = True

    def __init__(self, pipe: Any) -> None:
        self.transformer = pipe.transformer

    def enable(self, threshold: Threshold, log: DecisionLog) -> None:
        from diffusers.hooks import FirstBlockCacheConfig

        # Enabling registers fresh hooks and invalidates the registry cache, so the pipeline's
        # next cache_context() reaches them (the diffusers #14037 trap is about hooks registered
        # after a context was set up; measure() also checks that every step was decided).
        self.transformer.enable_cache(FirstBlockCacheConfig(threshold=one_threshold(threshold, self.name)))
        apply_decision_log_to_fbc_hook(_fbc_head_hook(self.transformer), log)

    def disable(self) -> None:
        if getattr(self.transformer, "_cache_config", None) is not None:
            self.transformer.disable_cache()


SPEC = BackendSpec(
    name="diffusers",
    summary="diffusers' built-in FirstBlockCache (transformer.enable_cache)",
    create=lambda pipe, config: DiffusersFBCache(pipe),
    versions=lambda: {"diffusers": importlib.metadata.version("diffusers")},
    # regional, regional+io: blocks compiled before enable_cache, so the hooks wrap compiled forwards and stay eager;
    # full: only for uncached benchmarks (the harness refuses it when thresholds are selected)
    compile_modes=("none", "regional", "regional+io", "full"),
    compile_note="its hooks must wrap the compiled blocks (regional, regional+io); a whole-transformer graph "
                 "cannot hold the cache decision (full is for uncached benchmarks only)",
)
