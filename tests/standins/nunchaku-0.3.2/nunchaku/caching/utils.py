"""STAND-IN for nunchaku 0.3.2's ``nunchaku/caching/utils.py`` (tests only, not the real engine).

In 0.3.x this one module holds the whole first-block cache: the per-call cache context and its
named buffers (``get_buffer`` / ``set_buffer``), the decision ``get_can_use_cache`` - which returns
``(bool, float)``, and ``(False, threshold)`` while nothing is cached - ``check_and_apply_cache``,
and ``FluxCachedTransformerBlocks``. The blocks here are diffusers' Flux blocks, not the engine's
fused CUDA module. Names, signatures and return kinds: tests/data/nunchaku-api-v0.3.2.json.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import defaultdict

import torch
from torch import nn


@dataclasses.dataclass
class CacheContext:
    """Tensors kept for the length of one pipeline call, by name."""

    buffers: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    incremental_name_counters: defaultdict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))

    def get_incremental_name(self, name=None):
        base = "default" if name is None else name
        index = self.incremental_name_counters[base]
        self.incremental_name_counters[base] = index + 1
        return f"{base}_{index}"

    def reset_incremental_name(self):
        self.incremental_name_counters.clear()

    def get_buffer(self, name):
        return self.buffers.get(name)

    def set_buffer(self, name, buffer):
        self.buffers[name] = buffer

    def clear_buffers(self):
        self.buffers.clear()


_current_cache_context: CacheContext | None = None


def get_buffer(name):
    context = get_current_cache_context()
    assert context is not None, "cache_context must be set before"
    return context.get_buffer(name)


def set_buffer(name, buffer):
    context = get_current_cache_context()
    assert context is not None, "cache_context must be set before"
    context.set_buffer(name, buffer)


def create_cache_context():
    return CacheContext()


def get_current_cache_context():
    return _current_cache_context


@contextlib.contextmanager
def cache_context(cache_context):
    global _current_cache_context
    saved, _current_cache_context = _current_cache_context, cache_context
    try:
        yield
    finally:
        _current_cache_context = saved


def are_two_tensors_similar(t1, t2, *, threshold, parallelized=False):
    """mean|t1 - t2| / mean|t1| as a Python float, and whether it is below ``threshold``."""
    diff = ((t1 - t2).abs().mean() / t1.abs().mean()).item()
    return diff < threshold, diff


def apply_prev_hidden_states_residual(hidden_states, encoder_hidden_states=None, mode="multi"):
    """Add the cached residuals: ``(hidden, encoder)`` for "multi", the hidden states alone for "single"."""
    if mode not in ("multi", "single"):
        raise ValueError(f"Unknown mode {mode}; expected 'multi' or 'single'")
    residual = get_buffer(f"{mode}_hidden_states_residual")
    assert residual is not None, f"{mode}_hidden_states_residual must be set before"
    hidden_states = (hidden_states + residual).contiguous()
    if mode == "single":
        return hidden_states
    if encoder_hidden_states is not None:
        encoder_residual = get_buffer("multi_encoder_hidden_states_residual")
        assert encoder_residual is not None, "multi_encoder_hidden_states_residual must be set before"
        encoder_hidden_states = (encoder_hidden_states + encoder_residual).contiguous()
    return hidden_states, encoder_hidden_states


def get_can_use_cache(first_hidden_states_residual, threshold, parallelized=False, mode="multi"):
    """The first-block decision: is this step's first-block residual close to the cached one?"""
    if mode not in ("multi", "single"):
        raise ValueError(f"Unknown mode {mode}; expected 'multi' or 'single'")
    previous = get_buffer(f"first_{mode}_hidden_states_residual")
    if previous is None:
        return False, threshold
    return are_two_tensors_similar(previous, first_hidden_states_residual, threshold=threshold,
                                   parallelized=parallelized)


def check_and_apply_cache(*, first_residual, hidden_states, encoder_hidden_states=None, threshold, parallelized,
                          mode, verbose, call_remaining_fn, remaining_kwargs):
    """Decide, then either add the cached residuals or run the remaining blocks and cache theirs."""
    can_use_cache, diff = get_can_use_cache(first_residual, threshold=threshold, parallelized=parallelized,
                                            mode=mode)
    if verbose:
        print(f"[{mode.upper()}] cache {'hit' if can_use_cache else 'miss'}, diff={float(diff):.4f}")
    if can_use_cache:
        applied = apply_prev_hidden_states_residual(hidden_states, encoder_hidden_states, mode=mode)
        if mode == "single":
            return applied, None, threshold
        hidden, encoder = applied
        return hidden, encoder, threshold
    set_buffer(f"first_{mode}_hidden_states_residual", first_residual)
    result = call_remaining_fn(hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states,
                               **remaining_kwargs)
    if mode == "multi":
        hidden, encoder, hidden_residual, encoder_residual = result
        set_buffer("multi_hidden_states_residual", hidden_residual)
        set_buffer("multi_encoder_hidden_states_residual", encoder_residual)
        return hidden, encoder, threshold
    hidden, residual = result
    set_buffer("single_hidden_states_residual", residual)
    return hidden, None, threshold


class FluxCachedTransformerBlocks(nn.Module):
    """Stands in for all of a Flux transformer's blocks: the first double block always runs, the rest
    only when ``get_can_use_cache`` says the step differs. With ``use_double_fb_cache`` the decision
    covers the double-stream blocks only; the first single-stream block then always runs and a second
    decision (``mode="single"``, its own threshold) covers the rest. 0.3.2 skips every decision (runs
    everything) when the double-stream threshold is negative or the batch holds more than one image."""

    def __init__(self, *, transformer=None, use_double_fb_cache=True, residual_diff_threshold_multi,
                 residual_diff_threshold_single, return_hidden_states_first=True, return_hidden_states_only=False,
                 verbose=False):
        super().__init__()
        self.transformer_blocks = transformer.transformer_blocks
        self.single_transformer_blocks = transformer.single_transformer_blocks
        self.update_residual_diff_threshold(use_double_fb_cache, residual_diff_threshold_multi,
                                            residual_diff_threshold_single)
        self.return_hidden_states_first = return_hidden_states_first
        self.return_hidden_states_only = return_hidden_states_only
        self.verbose = verbose

    def update_residual_diff_threshold(self, use_double_fb_cache=True, residual_diff_threshold_multi=0.12,
                                       residual_diff_threshold_single=0.09):
        self.use_double_fb_cache = use_double_fb_cache
        self.residual_diff_threshold_multi = residual_diff_threshold_multi
        self.residual_diff_threshold_single = residual_diff_threshold_single

    def forward(self, hidden_states, temb, encoder_hidden_states, image_rotary_emb, joint_attention_kwargs=None,
                controlnet_block_samples=None, controlnet_single_block_samples=None, skip_first_layer=False):
        if controlnet_block_samples or controlnet_single_block_samples:
            raise NotImplementedError("the stand-in mirrors the first-block caches without ControlNet")
        txt_tokens = encoder_hidden_states.shape[1]
        if self.residual_diff_threshold_multi < 0.0 or hidden_states.shape[0] > 1:
            everything = [*self.transformer_blocks, *self.single_transformer_blocks]
            hidden, encoder = self._run(everything, hidden_states, encoder_hidden_states, temb, image_rotary_emb)
            return self._ordered(hidden, encoder)
        remaining_kwargs = {"temb": temb, "rotary_emb_img": None, "rotary_emb_txt": None,
                            "rotary_emb_single": image_rotary_emb, "txt_tokens": txt_tokens}
        first_encoder, first_hidden = self.transformer_blocks[0](
            hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states, temb=temb,
            image_rotary_emb=image_rotary_emb)
        if self.use_double_fb_cache:
            call_remaining_fn = self.call_remaining_multi_transformer_blocks
        else:
            call_remaining_fn = self.call_remaining_FBCache_transformer_blocks
        updated_h, updated_enc, threshold = check_and_apply_cache(
            first_residual=first_hidden - hidden_states, hidden_states=first_hidden,
            encoder_hidden_states=first_encoder, threshold=self.residual_diff_threshold_multi, parallelized=False,
            mode="multi", verbose=self.verbose, call_remaining_fn=call_remaining_fn, remaining_kwargs=remaining_kwargs)
        self.residual_diff_threshold_multi = threshold
        if not self.use_double_fb_cache:
            return self._ordered(updated_h, updated_enc)

        # the double first-block cache: the first single-stream block always runs, then a second decision
        original_cat = torch.cat([updated_enc, updated_h], dim=1)
        cat_hidden_states = self._single(self.single_transformer_blocks[:1], original_cat, temb, image_rotary_emb,
                                         txt_tokens)
        updated_cat, _, threshold = check_and_apply_cache(
            first_residual=cat_hidden_states - original_cat, hidden_states=cat_hidden_states,
            encoder_hidden_states=None, threshold=self.residual_diff_threshold_single, parallelized=False,
            mode="single", verbose=self.verbose, call_remaining_fn=self.call_remaining_single_transformer_blocks,
            remaining_kwargs=remaining_kwargs)
        self.residual_diff_threshold_single = threshold
        return self._ordered(updated_cat[:, txt_tokens:, ...], updated_cat[:, :txt_tokens, ...])

    def call_remaining_FBCache_transformer_blocks(self, hidden_states, temb, encoder_hidden_states, rotary_emb_img,
                                                  rotary_emb_txt, rotary_emb_single, controlnet_block_samples=None,
                                                  controlnet_single_block_samples=None, skip_first_layer=True,
                                                  txt_tokens=None):
        """Every block after the first; ``rotary_emb_single`` carries diffusers' rotary embedding of the
        joint sequence (the engine's packed image/text embeddings have no diffusers counterpart)."""
        remaining = [*self.transformer_blocks[1 if skip_first_layer else 0:], *self.single_transformer_blocks]
        hidden, encoder = self._run(remaining, hidden_states, encoder_hidden_states, temb, rotary_emb_single)
        return hidden, encoder, hidden - hidden_states, encoder - encoder_hidden_states

    def call_remaining_multi_transformer_blocks(self, hidden_states, temb, encoder_hidden_states, rotary_emb_img,
                                                rotary_emb_txt, rotary_emb_single, controlnet_block_samples=None,
                                                controlnet_single_block_samples=None, skip_first_layer=False,
                                                txt_tokens=None, start_idx=1):
        """The double cache's first stage: the double-stream blocks after ``start_idx`` and their residuals."""
        original_hidden_states = hidden_states.clone()
        original_encoder_hidden_states = encoder_hidden_states.clone()
        for block in self.transformer_blocks[start_idx:]:
            encoder_hidden_states, hidden_states = block(hidden_states=hidden_states,
                                                         encoder_hidden_states=encoder_hidden_states, temb=temb,
                                                         image_rotary_emb=rotary_emb_single)
        hidden_states = hidden_states.contiguous()
        encoder_hidden_states = encoder_hidden_states.contiguous()
        hs_res = hidden_states - original_hidden_states
        enc_res = encoder_hidden_states - original_encoder_hidden_states
        return hidden_states, encoder_hidden_states, hs_res, enc_res

    def call_remaining_single_transformer_blocks(self, hidden_states, temb, encoder_hidden_states, rotary_emb_img,
                                                 rotary_emb_txt, rotary_emb_single, controlnet_block_samples=None,
                                                 controlnet_single_block_samples=None, skip_first_layer=False,
                                                 txt_tokens=None, start_idx=1):
        """The double cache's second stage: the single-stream blocks after ``start_idx`` on the joint
        (text, image) sequence, and its residual."""
        original_hidden_states = hidden_states.clone()
        hidden_states = self._single(self.single_transformer_blocks[start_idx:], hidden_states, temb,
                                     rotary_emb_single, txt_tokens)
        hidden_states = hidden_states.contiguous()
        hs_res = hidden_states - original_hidden_states
        return hidden_states, hs_res

    @staticmethod
    def _run(blocks, hidden, encoder, temb, image_rotary_emb):
        for block in blocks:
            encoder, hidden = block(hidden_states=hidden, encoder_hidden_states=encoder, temb=temb,
                                    image_rotary_emb=image_rotary_emb)
        return hidden, encoder

    @staticmethod
    def _single(blocks, cat, temb, image_rotary_emb, txt_tokens):
        """Single-stream blocks on the joint sequence, as the engine's take it: diffusers' blocks take the
        text and image parts apart and join them again themselves (text first, as here)."""
        encoder, hidden = cat[:, :txt_tokens, ...], cat[:, txt_tokens:, ...]
        for block in blocks:
            encoder, hidden = block(hidden_states=hidden, encoder_hidden_states=encoder, temb=temb,
                                    image_rotary_emb=image_rotary_emb)
        return torch.cat([encoder, hidden], dim=1)

    def _ordered(self, hidden, encoder):
        if self.return_hidden_states_only:
            return hidden
        return (hidden, encoder) if self.return_hidden_states_first else (encoder, hidden)
