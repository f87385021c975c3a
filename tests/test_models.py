"""Model sources on CPU: flux-random's construction path (scaled down), a local diffusers directory
loaded offline, and torchao weight-only quantization."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from fbcache import models
from fbcache.config import HarnessConfig
from fbcache.models import flux as flux_random
from fbcache.models import load_model
from fbcache.models.tiny import build_tiny_pipeline


def generate(loaded, config: HarnessConfig) -> torch.Tensor:
    return loaded.pipe(height=config.height, width=config.width, num_inference_steps=config.steps,
                       generator=torch.Generator().manual_seed(0), output_type="pt", **loaded.call_kwargs).images


def test_flux_random_builds_in_place_and_generates_from_random_embeddings(monkeypatch):
    small = dict(flux_random.FLUX_DEV_TRANSFORMER, num_layers=2, num_single_layers=2, attention_head_dim=16,
                 num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=16, axes_dims_rope=(4, 6, 6))
    vae = dict(flux_random.FLUX_VAE, block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4)
    monkeypatch.setattr(flux_random, "FLUX_DEV_TRANSFORMER", small)
    monkeypatch.setattr(flux_random, "FLUX_VAE", vae)
    monkeypatch.setattr(flux_random, "T5_SEQUENCE", 16)
    monkeypatch.setattr(flux_random, "T5_DIM", 32)
    monkeypatch.setattr(flux_random, "CLIP_POOLED_DIM", 16)
    config = HarnessConfig(model="flux-random", steps=2, width=32, height=32, device="cpu")
    loaded = flux_random.load_flux_random(config)
    assert loaded.timing_only and "TIMING ONLY" in loaded.notes[0]
    assert next(loaded.pipe.transformer.parameters()).dtype == torch.bfloat16, "built in bf16, no fp32 copy"
    assert loaded.call_kwargs["prompt_embeds"].shape == (1, 16, 32)
    assert loaded.pipe.text_encoder is None and loaded.pipe.text_encoder_2 is None
    images = generate(loaded, config)
    assert images.shape == (1, 3, 32, 32) and torch.isfinite(images).all()


def test_local_directory_loads_offline_and_matches_the_source(tmp_path, monkeypatch):
    pipe, _ = build_tiny_pipeline()
    pipe.save_pretrained(tmp_path / "tiny-flux")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = HarnessConfig(model=str(tmp_path / "tiny-flux"), steps=3, device="cpu", prompt="a red circle")
    loaded = load_model(config)
    assert models.source_for(config.model).name == "pretrained" and not loaded.timing_only
    assert all(not m.training for m in loaded.pipe.components.values() if isinstance(m, torch.nn.Module))
    expected = pipe("a red circle", height=64, width=64, num_inference_steps=3, output_type="pt",
                    generator=torch.Generator().manual_seed(0), guidance_scale=3.5).images
    assert torch.equal(generate(loaded, config), expected)


@pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="torchao is an optional extra")
def test_torchao_int8_weight_only_quantizes_the_transformer():
    config = HarnessConfig(model="tiny-random", quant="torchao-int8wo", steps=2, device="cpu")
    loaded = load_model(config)
    weight = loaded.pipe.transformer.transformer_blocks[0].attn.to_q.weight
    assert type(weight).__name__ == "Int8Tensor"
    assert torch.isfinite(generate(loaded, config)).all()
