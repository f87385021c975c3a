"""Stand-in for nunchaku 1.1.0's ``caching/diffusers_adapters/flux.py``.

Behaviour mirrored from the engine:

- ``apply_cache_on_pipe`` patches the pipeline *class*'s ``__call__`` (every instance, for good) so
  each call runs inside a fresh cache context, and marks the class ``_is_cached``;
- ``apply_cache_on_transformer`` wraps the transformer's ``forward``: inside a cache context its
  blocks are swapped for one ``FluxCachedTransformerBlocks``; outside, the original forward runs;
- the transformer only counts as cached (``_is_cached``, ``cached_transformer_blocks``) once it has
  run inside a context. Applying again after that updates the threshold in place; applying again
  before any generation wraps the forward a second time, and the *first* wrapper's threshold wins.

Unchanged from 0.3.2 except that the cache context now comes from ``caching/fbcache.py``. The blocks
(``caching.utils.FluxCachedTransformerBlocks``) refuse a NunchakuFluxTransformer2DModelV2.
"""

import functools

from diffusers import DiffusionPipeline, FluxTransformer2DModel
from torch import nn

from ...caching import utils
from ..fbcache import cache_context, create_cache_context, get_current_cache_context


def apply_cache_on_transformer(transformer: FluxTransformer2DModel, *, use_double_fb_cache: bool = False,
                               residual_diff_threshold: float = 0.12, residual_diff_threshold_multi=None,
                               residual_diff_threshold_single=None):
    multi = residual_diff_threshold if residual_diff_threshold_multi is None else residual_diff_threshold_multi
    if not hasattr(transformer, "_original_forward"):
        transformer._original_forward = transformer.forward
    if not hasattr(transformer, "_original_blocks"):
        transformer._original_blocks = transformer.transformer_blocks
    if getattr(transformer, "_is_cached", False):
        transformer.cached_transformer_blocks[0].update_residual_diff_threshold(
            use_double_fb_cache, multi, residual_diff_threshold_single)
        return transformer

    cached = nn.ModuleList([utils.FluxCachedTransformerBlocks(
        transformer=transformer, use_double_fb_cache=use_double_fb_cache, residual_diff_threshold_multi=multi,
        residual_diff_threshold_single=residual_diff_threshold_single, return_hidden_states_first=False)])
    no_single_blocks = nn.ModuleList()
    inner_forward = transformer.forward

    @functools.wraps(inner_forward)
    def forward(self, *args, **kwargs):
        if get_current_cache_context() is None:
            return inner_forward(*args, **kwargs)
        saved = self.transformer_blocks, self.single_transformer_blocks
        self.transformer_blocks, self.single_transformer_blocks = cached, no_single_blocks
        try:
            self._is_cached = True
            self.cached_transformer_blocks = cached
            return inner_forward(*args, **kwargs)
        finally:
            self.transformer_blocks, self.single_transformer_blocks = saved

    transformer.forward = forward.__get__(transformer)
    transformer.use_double_fb_cache = use_double_fb_cache
    transformer.residual_diff_threshold_multi = multi
    transformer.residual_diff_threshold_single = residual_diff_threshold_single
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
