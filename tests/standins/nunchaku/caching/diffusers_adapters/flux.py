"""Stand-in for nunchaku.caching.diffusers_adapters.flux, with the engine's behaviour:

- ``apply_cache_on_pipe`` patches the pipeline *class* ``__call__`` to open a cache context per
  call; there is no way to remove it;
- applying again only updates the threshold.
"""

from __future__ import annotations

import functools

from torch import nn

from .. import utils


def apply_cache_on_transformer(transformer, *, use_double_fb_cache: bool = False,
                               residual_diff_threshold: float = 0.12, residual_diff_threshold_multi=None,
                               residual_diff_threshold_single=None):
    threshold = residual_diff_threshold if residual_diff_threshold_multi is None else residual_diff_threshold_multi
    if getattr(transformer, "_is_cached", False):
        transformer.cached_transformer_blocks[0].update_residual_diff_threshold(
            use_double_fb_cache, threshold, residual_diff_threshold_single)
        return transformer
    cached = nn.ModuleList([utils.FluxCachedTransformerBlocks(transformer=transformer,
                                                              residual_diff_threshold_multi=threshold)])
    original_blocks, original_single = transformer.transformer_blocks, transformer.single_transformer_blocks
    original_forward = transformer.forward

    @functools.wraps(original_forward)
    def forward(*args, **kwargs):
        if utils.get_current_cache_context() is None:
            return original_forward(*args, **kwargs)
        transformer.transformer_blocks, transformer.single_transformer_blocks = cached, nn.ModuleList()
        try:
            return original_forward(*args, **kwargs)
        finally:
            transformer.transformer_blocks, transformer.single_transformer_blocks = original_blocks, original_single

    transformer.forward = forward
    transformer.cached_transformer_blocks = cached
    transformer._is_cached = True
    return transformer


def apply_cache_on_pipe(pipe, **kwargs):
    if not getattr(pipe, "_is_cached", False):
        original_call = type(pipe).__call__

        @functools.wraps(original_call)
        def call(self, *args, **call_kwargs):
            with utils.cache_context(utils.create_cache_context()):
                return original_call(self, *args, **call_kwargs)

        type(pipe).__call__ = call
        type(pipe)._is_cached = True
    apply_cache_on_transformer(pipe.transformer, **kwargs)
    return pipe
