"""STAND-IN for nunchaku 1.1.0's ``nunchaku/caching/utils_v2.py`` (tests only, not the real engine).

``cached_forward_v2`` replaces a V2 transformer's whole ``forward``: embed, run the first double
block, let ``fbcache.check_and_apply_cache`` decide, then the output head. With
``use_double_fb_cache`` that decision covers the double-stream blocks only, and the first single-stream
block's residual gets a second decision (``mode="single"``, ``residual_diff_threshold_single``). A
negative ``residual_diff_threshold_multi`` calls the original forward instead (no decision). Rotary
embeddings are diffusers' ``(cos, sin)`` of the joint sequence, passed as ``rotary_emb_single``; the
engine's packed image/text embeddings have no diffusers counterpart. Names, signatures and return
kinds: tests/data/nunchaku-api-v1.1.0.json.
"""

from __future__ import annotations

import torch
from diffusers.models.modeling_outputs import Transformer2DModelOutput

from .fbcache import check_and_apply_cache


def cached_forward_v2(self, hidden_states, encoder_hidden_states=None, pooled_projections=None, timestep=None,
                      img_ids=None, txt_ids=None, guidance=None, joint_attention_kwargs=None,
                      controlnet_block_samples=None, controlnet_single_block_samples=None, return_dict=True,
                      controlnet_blocks_repeat=False):
    if self.residual_diff_threshold_multi < 0.0:
        return self._original_forward(
            hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states,
            pooled_projections=pooled_projections, timestep=timestep, img_ids=img_ids, txt_ids=txt_ids,
            guidance=guidance, joint_attention_kwargs=joint_attention_kwargs,
            controlnet_block_samples=controlnet_block_samples,
            controlnet_single_block_samples=controlnet_single_block_samples, return_dict=return_dict,
            controlnet_blocks_repeat=controlnet_blocks_repeat)
    if controlnet_block_samples or controlnet_single_block_samples:
        raise NotImplementedError("the stand-in mirrors the first-block caches without ControlNet")

    hidden = self.x_embedder(hidden_states)
    timestep = timestep.to(hidden.dtype) * 1000
    temb = (self.time_text_embed(timestep, pooled_projections) if guidance is None
            else self.time_text_embed(timestep, guidance.to(hidden.dtype) * 1000, pooled_projections))
    encoder = self.context_embedder(encoder_hidden_states)
    ids = torch.cat((txt_ids[0] if txt_ids.ndim == 3 else txt_ids, img_ids[0] if img_ids.ndim == 3 else img_ids))
    rotary = self.pos_embed(ids)
    txt_tokens = encoder.shape[1]

    first_encoder, first_hidden = self.transformer_blocks[0](
        hidden_states=hidden, encoder_hidden_states=encoder, temb=temb, image_rotary_emb=rotary,
        joint_attention_kwargs=joint_attention_kwargs)
    remaining_kwargs = {"temb": temb, "rotary_emb_img": None, "rotary_emb_txt": None, "rotary_emb_single": rotary,
                        "joint_attention_kwargs": joint_attention_kwargs, "txt_tokens": txt_tokens}
    if self.use_double_fb_cache:
        call_remaining_fn = run_remaining_multi_blocks_v2
    else:
        call_remaining_fn = run_remaining_blocks_v2
    hidden, encoder, _ = check_and_apply_cache(
        first_residual=first_hidden - hidden, hidden_states=first_hidden, encoder_hidden_states=first_encoder,
        threshold=self.residual_diff_threshold_multi, parallelized=False, mode="multi",
        verbose=getattr(self, "verbose", False),
        call_remaining_fn=lambda hidden_states, encoder_hidden_states, **kw: call_remaining_fn(
            self, hidden_states, encoder_hidden_states, **remaining_kwargs),
        remaining_kwargs={})
    if self.use_double_fb_cache:
        # second stage: the first single-stream block always runs on the joint sequence, then a second decision
        original_cat = torch.cat([encoder, hidden], dim=1)
        first_cat = _single_blocks(self.single_transformer_blocks[:1], original_cat, temb, rotary,
                                   joint_attention_kwargs, txt_tokens)
        single_fn = run_remaining_single_blocks_v2
        cat, _, _ = check_and_apply_cache(
            first_residual=first_cat - original_cat, hidden_states=first_cat, encoder_hidden_states=None,
            threshold=self.residual_diff_threshold_single, parallelized=False, mode="single", verbose=self.verbose,
            call_remaining_fn=lambda hidden_states, encoder_hidden_states, **kw: single_fn(
                self, hidden_states, encoder_hidden_states, **remaining_kwargs),
            remaining_kwargs=remaining_kwargs)
        hidden = cat[:, txt_tokens:, ...]
    output = self.proj_out(self.norm_out(hidden, temb))
    if not return_dict:
        return (output,)
    return Transformer2DModelOutput(sample=output)


def run_remaining_blocks_v2(self, hidden_states, encoder_hidden_states, temb, rotary_emb_img, rotary_emb_txt,
                            rotary_emb_single, joint_attention_kwargs, txt_tokens, **kwargs):
    """Every block after the first double block; returns the states and their residuals."""
    hidden, encoder = hidden_states, encoder_hidden_states
    for block in [*self.transformer_blocks[1:], *self.single_transformer_blocks]:
        encoder, hidden = block(hidden_states=hidden, encoder_hidden_states=encoder, temb=temb,
                                image_rotary_emb=rotary_emb_single, joint_attention_kwargs=joint_attention_kwargs)
    return hidden, encoder, hidden - hidden_states, encoder - encoder_hidden_states


def run_remaining_multi_blocks_v2(self, hidden_states, encoder_hidden_states, temb, rotary_emb_img, rotary_emb_txt,
                                  rotary_emb_single, joint_attention_kwargs, txt_tokens, **kwargs):
    """The double cache's first stage: the double-stream blocks after the first, and their residuals."""
    original_h = hidden_states
    original_enc = encoder_hidden_states
    for block in self.transformer_blocks[1:]:
        encoder_hidden_states, hidden_states = block(
            hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states, temb=temb,
            image_rotary_emb=rotary_emb_single, joint_attention_kwargs=joint_attention_kwargs)
    hidden_states = hidden_states.contiguous()
    encoder_hidden_states = encoder_hidden_states.contiguous()
    hs_residual = hidden_states - original_h
    enc_residual = encoder_hidden_states - original_enc
    return hidden_states, encoder_hidden_states, hs_residual, enc_residual


def run_remaining_single_blocks_v2(self, hidden_states, encoder_hidden_states, temb, rotary_emb_img, rotary_emb_txt,
                                   rotary_emb_single, joint_attention_kwargs, txt_tokens, **kwargs):
    """The double cache's second stage: the single-stream blocks after the first, on the joint (text, image)
    sequence, and its residual."""
    original_hidden_states = hidden_states.clone()
    hidden_states = _single_blocks(self.single_transformer_blocks[1:], hidden_states, temb, rotary_emb_single,
                                   joint_attention_kwargs, txt_tokens)
    hidden_states = hidden_states.contiguous()
    hs_residual = hidden_states - original_hidden_states
    return hidden_states, hs_residual


def _single_blocks(blocks, cat, temb, rotary, joint_attention_kwargs, txt_tokens):
    """Single-stream blocks on the joint sequence, as the engine's V2 blocks take it: diffusers' blocks take the
    text and image parts apart and join them again themselves (text first, as here)."""
    encoder, hidden = cat[:, :txt_tokens, ...], cat[:, txt_tokens:, ...]
    for block in blocks:
        encoder, hidden = block(hidden_states=hidden, encoder_hidden_states=encoder, temb=temb,
                                image_rotary_emb=rotary, joint_attention_kwargs=joint_attention_kwargs)
    return torch.cat([encoder, hidden], dim=1)
