"""STAND-IN for nunchaku 1.1.0's ``nunchaku/caching/utils.py`` (tests only, not the real engine).

Since 1.0.0 this module keeps only the model-specific cached blocks; the cache context, buffers and
the decision moved to ``caching/fbcache.py``. It re-imports four names from there (so
``caching.utils.get_can_use_cache`` exists but is not what the Flux path calls, and there is no
``caching.utils.get_buffer``). The blocks here are diffusers' Flux blocks, not the engine's fused
CUDA module. Names, signatures and return kinds: tests/data/nunchaku-api-v1.1.0.json.
"""

from __future__ import annotations

import torch
from torch import nn

# re-exported exactly as the engine does; only check_and_apply_cache is used here
from .fbcache import (  # noqa: F401
    apply_prev_hidden_states_residual,
    check_and_apply_cache,
    get_can_use_cache,
    set_buffer,
)


class FluxCachedTransformerBlocks(nn.Module):
    """Stands in for all of a Flux transformer's blocks: the first double block always runs, the rest
    only when ``get_can_use_cache`` says the step differs. With ``use_double_fb_cache`` the decision
    covers the double-stream blocks only; the first single-stream block then always runs and a second
    decision (``mode="single"``, its own threshold) covers the rest. A negative double-stream threshold
    skips every decision and runs everything (1.x dropped 0.3.x's "batch of more than one image" condition)."""

    def __init__(self, *, transformer=None, use_double_fb_cache=True, residual_diff_threshold_multi,
                 residual_diff_threshold_single, return_hidden_states_first=True, return_hidden_states_only=False,
                 verbose=False):
        super().__init__()
        from ..models.transformers.transformer_flux_v2 import NunchakuFluxTransformer2DModelV2

        if isinstance(transformer, NunchakuFluxTransformer2DModelV2):
            # the engine reads the V1 fused module here (transformer_blocks[0].m), which V2 lacks
            raise AttributeError("'NunchakuFluxTransformerBlock' object has no attribute 'm' (stand-in: V2 "
                                 "transformers need nunchaku.caching.diffusers_adapters.flux_v2)")
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
        if self.residual_diff_threshold_multi < 0.0:
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
