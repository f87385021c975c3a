"""Full-size FLUX: ``flux-random`` (random weights, timing only) and real weights (``pretrained``).

``flux-random``: the full-size FLUX.1-dev transformer and FLUX VAE with random weights. TIMING ONLY.

Its cost per step is FLUX.1-dev's, but its cache behaviour is not: with random weights the
first-block residual differences are large at every step (docs/gpus.md gives the measured range), so
low thresholds never hit. Use it to time the machinery, never to judge hits or image metrics.

Real FLUX weights: a local diffusers directory or a hub id, optionally around the transformer of a
load-time quantization mode.

``FluxPipeline.from_pretrained`` honours ``HF_HUB_OFFLINE=1``: with the files already in the
cache (``HF_HOME``), nothing touches the network.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fbcache.config import HarnessConfig
from fbcache.errors import ConfigError
from fbcache.models import LoadedModel, ModelSource
from fbcache.models.tiny import scheduler_config

if TYPE_CHECKING:  # torch loads on first use: listing the model sources stays cheap
    import torch
import re
from pathlib import Path

from fbcache import quant
from fbcache.models import named_sources

#: FLUX.1-dev transformer/config.json and vae/config.json (architecture only)
FLUX_DEV_TRANSFORMER = dict(
    patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
    num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)
FLUX_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    latent_channels=16, norm_num_groups=32, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159,
    use_quant_conv=False, use_post_quant_conv=False,
)
T5_SEQUENCE, T5_DIM, CLIP_POOLED_DIM = 512, 4096, 768
TIMING_ONLY_NOTE = ("flux-random: random weights, TIMING ONLY - per-step cost is FLUX.1-dev's, cache hits "
                    "and image metrics are not (random weights leave large first-block differences at every step)")


@contextlib.contextmanager
def _built_on(device: str, dtype: torch.dtype) -> Iterator[None]:
    """Create parameters directly on ``device`` in ``dtype``: no fp32 copy, no host round trip."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def load_flux_random(config: HarnessConfig) -> LoadedModel:
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    dtype = torch.bfloat16
    with torch.random.fork_rng(devices=[]), _built_on(config.device, dtype):
        torch.manual_seed(config.seed)
        transformer = FluxTransformer2DModel(**FLUX_DEV_TRANSFORMER).eval()
        vae = AutoencoderKL(**FLUX_VAE).eval()
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**scheduler_config()), vae=vae, transformer=transformer,
        text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
    )
    pipe.set_progress_bar_config(disable=True)
    prompt_embeds, pooled = _random_embeddings(config.device, dtype, config.seed)
    embedded: dict[str, dict[str, Any]] = {}

    def embed(prompt: str) -> dict[str, Any]:
        """A prompt of a set: its own random embeddings, seeded by its text (no text encoder here)."""
        if prompt not in embedded:
            seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")
            embeds, pooled_embeds = _random_embeddings(config.device, dtype, seed)
            embedded[prompt] = dict(prompt_embeds=embeds, pooled_prompt_embeds=pooled_embeds)
        return embedded[prompt]

    return LoadedModel(
        pipe=pipe,
        name="flux-random",
        call_kwargs=dict(prompt_embeds=prompt_embeds, pooled_prompt_embeds=pooled, guidance_scale=3.5),
        digest=f"random-seed{config.seed}",
        timing_only=True,
        notes=[TIMING_ONLY_NOTE],
        embed=embed,
    )


def _random_embeddings(device: str, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    generator = torch.Generator(device).manual_seed(seed)
    prompt_embeds = torch.randn((1, T5_SEQUENCE, T5_DIM), generator=generator, device=device, dtype=dtype)
    pooled = torch.randn((1, CLIP_POOLED_DIM), generator=generator, device=device, dtype=dtype)
    return prompt_embeds, pooled


def _needs_cuda(config: HarnessConfig) -> None:
    if not config.device.startswith("cuda"):
        raise ConfigError("--fbcache-device", config.device, "cuda, cuda:N",
                          "flux-random is the full-size FLUX.1 transformer (11.9B parameters); it needs a CUDA GPU")


_RANDOM = (
    ModelSource(name="flux-random", summary="full-size FLUX.1-dev architecture, random weights (timing only)",
                matches=lambda value: value == "flux-random", load=load_flux_random, timing_only=True,
                validate=_needs_cuda),
)


def _digest(config: HarnessConfig, pipe: Any) -> str:
    """Identity of the weights: the hub commit when known, else the source names and file sizes."""
    hasher = hashlib.sha256(config.model.encode())
    commit = getattr(pipe.config, "_commit_hash", None) or ""
    hasher.update(str(commit).encode())
    weights = quant.get(config.quant).weights(config)  # a load-time mode's transformer
    if weights:
        hasher.update(weights.encode())
        path = Path(weights)
        if path.is_file():
            hasher.update(str(path.stat().st_size).encode())
    return hasher.hexdigest()[:12]


def load_pretrained(config: HarnessConfig) -> LoadedModel:
    import torch
    from diffusers import FluxPipeline

    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if config.device.startswith("cuda") else torch.float32}
    transformer = quant.transformer_for(config)
    if transformer is not None:
        kwargs["transformer"] = transformer
    pipe = FluxPipeline.from_pretrained(config.model, **kwargs)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.to(config.device)
    pipe.set_progress_bar_config(disable=True)
    return LoadedModel(
        pipe=pipe,
        name=config.model,
        call_kwargs=dict(prompt=config.prompt, guidance_scale=3.5),
        digest=_digest(config, pipe),
    )


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def canonical_model(raw: str) -> str:
    """A local diffusers FLUX directory (resolved) or a hub id; anything else is refused."""
    accepted = f"{', '.join(named_sources())}, a local diffusers FLUX directory, or a hub id like org/name"
    value = str(raw).strip()
    path = Path(value).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ConfigError("--fbcache-model", raw, accepted, "directory has no model_index.json")
        return str(path.resolve())
    if value.startswith((".", "/", "~")):
        raise ConfigError("--fbcache-model", raw, accepted, "no such directory")
    if _HUB_ID.match(value):
        return value
    raise ConfigError("--fbcache-model", raw, accepted, "unknown model")


_PRETRAINED = (
    ModelSource(name="pretrained", summary="a local diffusers FLUX directory or a hub id (real weights)",
                matches=lambda value: True, canonical=canonical_model, load=load_pretrained, typed_by_name=False,
                takes_transformer=True),
)

#: flux-random before the catch-all real-weights source
SOURCES = _RANDOM + _PRETRAINED
