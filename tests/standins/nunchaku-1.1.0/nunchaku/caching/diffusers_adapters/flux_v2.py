"""Stand-in for nunchaku 1.1.0's ``caching/diffusers_adapters/flux_v2.py``: FBCache for
``NunchakuFluxTransformer2DModelV2``. Not reached from ``diffusers_adapters.apply_cache_on_pipe``:
import ``apply_cache_on_pipe`` from this module.

Unlike the V1 adapter it replaces the transformer's ``forward`` with ``utils_v2.cached_forward_v2``
at once (marked ``_is_cached`` right away), keeps the thresholds on the transformer itself, and
re-applying only updates them. ``cached_forward_v2`` needs a cache context: call the transformer
through the patched pipeline.
"""

import functools

from diffusers import DiffusionPipeline

from nunchaku.models.transformers.transformer_flux_v2 import NunchakuFluxTransformer2DModelV2

from ..fbcache import cache_context, create_cache_context
from ..utils_v2 import cached_forward_v2


def apply_cache_on_transformer(transformer: NunchakuFluxTransformer2DModelV2, *, use_double_fb_cache: bool = False,
                               residual_diff_threshold: float = 0.12, residual_diff_threshold_multi=None,
                               residual_diff_threshold_single=None):
    multi = residual_diff_threshold if residual_diff_threshold_multi is None else residual_diff_threshold_multi
    if getattr(transformer, "_is_cached", False):
        transformer.residual_diff_threshold_multi = multi
        transformer.residual_diff_threshold_single = residual_diff_threshold_single
        transformer.use_double_fb_cache = use_double_fb_cache
        return transformer
    transformer._original_forward = transformer.forward
    transformer.residual_diff_threshold_multi = multi
    transformer.residual_diff_threshold_single = (-1.0 if residual_diff_threshold_single is None
                                                  else residual_diff_threshold_single)
    transformer.use_double_fb_cache = use_double_fb_cache
    transformer.verbose = False
    transformer.forward = cached_forward_v2.__get__(transformer, type(transformer))
    transformer._is_cached = True
    return transformer


def apply_cache_on_pipe(pipe: DiffusionPipeline, **kwargs):
    if not getattr(pipe, "_is_cached", False):
        pipe_class = type(pipe)
        inner_call = pipe_class.__call__

        @functools.wraps(inner_call)
        def call_in_cache_context(self, *args, **call_kwargs):
            with cache_context(create_cache_context()):
                return inner_call(self, *args, **call_kwargs)

        pipe_class.__call__ = call_in_cache_context
        pipe_class._is_cached = True
    apply_cache_on_transformer(pipe.transformer, **kwargs)
    return pipe
