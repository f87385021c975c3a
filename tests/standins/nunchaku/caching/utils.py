"""Stand-in for nunchaku.caching.utils: a global cache context holding named buffers, the similarity
test, and the first-block decision ``get_can_use_cache``, with the engine's signatures.

Here the "remaining blocks" are plain diffusers FluxTransformerBlock / FluxSingleTransformerBlock
modules instead of the engine's fused CUDA module.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn


@dataclass
class CacheContext:
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)


_current_cache_context: CacheContext | None = None


def create_cache_context() -> CacheContext:
    return CacheContext()


def get_current_cache_context() -> CacheContext | None:
    return _current_cache_context


@contextlib.contextmanager
def cache_context(context: CacheContext) -> Iterator[None]:
    global _current_cache_context
    previous, _current_cache_context = _current_cache_context, context
    try:
        yield
    finally:
        _current_cache_context = previous


def get_buffer(name: str) -> torch.Tensor | None:
    context = get_current_cache_context()
    assert context is not None, "cache_context must be set before"
    return context.buffers.get(name)


def set_buffer(name: str, buffer: torch.Tensor) -> None:
    context = get_current_cache_context()
    assert context is not None, "cache_context must be set before"
    context.buffers[name] = buffer


def are_two_tensors_similar(t1: torch.Tensor, t2: torch.Tensor, *, threshold: float, parallelized: bool = False):
    """Relative L1 distance mean|t1 - t2| / mean|t1| against the threshold; returns (similar, diff)."""
    diff = ((t1 - t2).abs().mean() / t1.abs().mean()).item()
    return diff < threshold, diff


def get_can_use_cache(first_hidden_states_residual: torch.Tensor, threshold: float, parallelized: bool = False,
                      mode: str = "multi"):
    previous = get_buffer(f"first_{mode}_hidden_states_residual")
    if previous is None:
        return False, threshold
    return are_two_tensors_similar(previous, first_hidden_states_residual, threshold=threshold,
                                   parallelized=parallelized)


class FluxCachedTransformerBlocks(nn.Module):
    """First double block always; the rest only when ``get_can_use_cache`` says the step differs."""

    def __init__(self, *, transformer: nn.Module, residual_diff_threshold_multi: float, **kwargs: Any) -> None:
        super().__init__()
        self.transformer_blocks = transformer.transformer_blocks
        self.single_transformer_blocks = transformer.single_transformer_blocks
        self.residual_diff_threshold_multi = residual_diff_threshold_multi

    def update_residual_diff_threshold(self, use_double_fb_cache=False, residual_diff_threshold_multi=0.12,
                                       residual_diff_threshold_single=None) -> None:
        self.residual_diff_threshold_multi = residual_diff_threshold_multi

    def forward(self, hidden_states, encoder_hidden_states, temb, image_rotary_emb=None,
                joint_attention_kwargs=None):
        kwargs = dict(temb=temb, image_rotary_emb=image_rotary_emb, joint_attention_kwargs=joint_attention_kwargs)
        first = self.transformer_blocks[0]
        encoder_out, hidden_out = first(hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states,
                                        **kwargs)
        first_residual = hidden_out - hidden_states
        can_use_cache, _ = get_can_use_cache(first_residual, threshold=self.residual_diff_threshold_multi,
                                             parallelized=False, mode="multi")
        if can_use_cache:
            return (encoder_out + get_buffer("multi_encoder_hidden_states_residual"),
                    hidden_out + get_buffer("multi_hidden_states_residual"))
        set_buffer("first_multi_hidden_states_residual", first_residual)
        encoder_start, hidden_start = encoder_out, hidden_out
        for block in list(self.transformer_blocks)[1:] + list(self.single_transformer_blocks):
            encoder_out, hidden_out = block(hidden_states=hidden_out, encoder_hidden_states=encoder_out, **kwargs)
        set_buffer("multi_hidden_states_residual", hidden_out - hidden_start)
        set_buffer("multi_encoder_hidden_states_residual", encoder_out - encoder_start)
        return encoder_out, hidden_out
