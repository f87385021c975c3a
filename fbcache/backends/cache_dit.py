"""cache-dit's DBCache configured as plain first-block caching (F1B0), enabled per threshold.

``cache_dit.enable_cache(pipe, cache_config=DBCacheConfig(Fn_compute_blocks=1, Bn_compute_blocks=0,
residual_diff_threshold=t, ...))`` with its warm-up steps and cached-step limits switched off, so it
caches exactly as FBCache does: the first block always runs, the rest are skipped while the first
block's residual stays within ``t`` of the last computed step's.

Hits come from cache-dit's own per-step decision, ``CachedContextManager.can_cache`` (wrapped on the
pipeline's context manager, so nothing is decided here), and the difference from what cache-dit
itself recorded for the step. At the end of each threshold they are checked against cache-dit's own
statistics (``cache_dit.summary``). ``cache_dit.disable_cache`` restores the pipeline call and the
blocks, but leaves cache-dit's re-implemented FLUX ``forward`` on the transformer: the cache is
gone, its patch is not, so the uncached baseline runs first (``removable=False``).
"""

from __future__ import annotations

import importlib.metadata
import os
from enum import Enum
from typing import Any

from fbcache import backends
from fbcache.backends import BackendSpec, DecisionLog, one_threshold
from fbcache.config import HarnessConfig, Threshold
from fbcache.errors import BrokenRunError, ConfigError

#: cache-dit reads these at import; each changes how it caches FLUX, so the fingerprint records them
ENVIRONMENT = {"CACHE_DIT_FLUX_ENABLE_DUMMY_BLOCKS": "1"}

#: F1B0 as plain FBCache: no warm-up, no limit on (continuous or accumulated) cached steps
F1B0 = dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=0, warmup_interval=1, max_cached_steps=-1,
            max_continuous_cached_steps=-1, max_accumulated_residual_diff_threshold=None, enable_separate_cfg=False)


def dbcache_config(threshold: float) -> Any:
    from cache_dit import DBCacheConfig

    return DBCacheConfig(residual_diff_threshold=threshold, **F1B0)


def settings(config: HarnessConfig) -> dict[str, Any]:
    """Every DBCacheConfig field (cache-dit's defaults included) but the threshold, and its environment."""
    fields = dbcache_config(0.0).as_dict()
    fields.pop("residual_diff_threshold")
    recorded = {key: (value.name if isinstance(value, Enum) else value) for key, value in sorted(fields.items())}
    recorded["calibrator"] = None
    recorded.update({name: os.environ.get(name, default) for name, default in ENVIRONMENT.items()})
    return recorded


class CacheDitFBCache:
    """cache-dit F1B0 on one pipeline, enabled for each threshold and disabled after it."""

    name = "cache-dit"

    def __init__(self, pipe: Any, steps: int) -> None:
        self.pipe = pipe
        self.steps = steps
        self.can_run_uncached = True
        #: (step, hit) of the generation in progress, in cache-dit's own step numbering
        self.trace: list[tuple[int, bool]] = []

    def enable(self, threshold: Threshold, log: DecisionLog) -> None:
        import cache_dit

        cache_dit.enable_cache(self.pipe, cache_config=dbcache_config(one_threshold(threshold, self.name)))
        self.can_run_uncached = False
        self.trace = []
        manager = self.pipe._context_manager
        decide = manager.can_cache

        def recorded(*args: Any, **kwargs: Any) -> bool:
            can_cache = bool(decide(*args, **kwargs))
            step = manager.get_current_step()
            if step == 0:
                self.trace = []
            # cache-dit records the diff it compared; negative codes mean "not compared" (>= 1, shape)
            diff = manager.get_residual_diffs().get(str(step))
            log.note_decision(hit=can_cache, diff=float(diff) if diff is not None and diff >= 0 else None)
            self.trace.append((step, can_cache))
            return can_cache

        manager.can_cache = recorded  # this pipeline's manager only; it goes with disable_cache()

    def own_statistics(self) -> list[int] | None:
        """cache-dit's cached steps of the last generation (``cache_dit.summary``), or None."""
        import cache_dit

        for stats in cache_dit.summary(self.pipe, logging=False):
            if stats.cache_options:
                return sorted(stats.cached_steps)
        return None

    def disable(self) -> None:
        import cache_dit

        complete = len(self.trace) == self.steps  # a whole generation decided (not a broken one)
        theirs = self.own_statistics() if complete else None
        cache_dit.disable_cache(self.pipe)
        if complete:
            ours = [step for step, hit in self.trace if hit]
            if theirs != ours:
                raise BrokenRunError(f"cache-dit's own statistics cached steps {theirs}, its decisions said {ours}")


def preflight(config: HarnessConfig) -> None:
    for name, expected in ENVIRONMENT.items():
        if os.environ.get(name, expected) != expected:
            others = ", ".join(name for name in backends.names() if name != "cache-dit")
            raise ConfigError("--fbcache-cache-backend", config.cache_backend, others,
                              f"{name}={os.environ[name]} makes cache-dit decide twice per FLUX step; "
                              f"unset it (fbcache compares F1B0 over all blocks)")


SPEC = BackendSpec(
    name="cache-dit",
    summary="cache-dit 1.5 DBCache as F1B0 (cache_dit.enable_cache), no warm-up, no cached-step limits",
    create=lambda pipe, config: CacheDitFBCache(pipe, config.steps),
    requires={"cache_dit": "pip install 'fbcache[cache-dit]'"},
    removable=False,
    preflight=preflight,
    versions=lambda: {"cache-dit": importlib.metadata.version("cache-dit")},
    settings=settings,
    # at a threshold of 1 or more cache-dit reuses every step after the first without comparing
    reuses_every_step_from=1.0,
)
