"""The tiny FLUX: a real diffusers FluxPipeline small enough to sweep on a laptop CPU.

Same classes as FLUX.1 (FluxTransformer2DModel, AutoencoderKL, CLIPTextModel, T5EncoderModel,
FlowMatchEulerDiscreteScheduler), with small configs. ``tiny`` loads the trained weights shipped in
``fbcache/weights``; ``tiny-random`` keeps the seeded random initialisation.

Its CLIP and T5 tokenizers are built in memory from a word list: no hub, no files. T5 gets one
unigram piece per vocabulary word, CLIP works on characters; anything outside the vocabulary falls
back to characters, so every prompt still tokenizes.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbcache.config import HarnessConfig
from fbcache.errors import ConfigError
from fbcache.models import LoadedModel, ModelSource

if TYPE_CHECKING:  # torch and transformers load on first use: listing the model sources stays cheap
    import torch
    from transformers import CLIPTokenizer, T5Tokenizer

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
TINY_WEIGHTS = WEIGHTS_DIR / "tiny-flux.safetensors"
INIT_SEED = 0


@dataclass(frozen=True)
class TinySpec:
    """Architecture of the tiny FLUX. Shared by the harness and the training script."""

    double_blocks: int = 2
    single_blocks: int = 4
    heads: int = 4
    head_dim: int = 32
    rope_axes: tuple[int, int, int] = (8, 12, 12)
    text_dim: int = 64
    text_layers: int = 2
    text_heads: int = 4
    max_sequence_length: int = 32
    vae_channels: tuple[int, ...] = (32, 64, 128)
    latent_channels: int = 4
    vae_shift: float = 0.0
    vae_scale: float = 1.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


#: the caption vocabulary of the tiny model, plus the seed's prompt
WORDS: tuple[str, ...] = tuple(sorted(set(
    "a an the cute panda holding sign that says hello world and with on of in at"
    " red green blue yellow white black orange purple cyan magenta"
    " circle square triangle ring cross bar dot star"
    " small big large top bottom left right center middle upper lower corner"
    " background scene picture image photo".split()
)))

CLIP_MAX_LENGTH = 77


def _clip_byte_vocab() -> dict[str, int]:
    """Byte-level symbols, alone and word-final: CLIP becomes a character-level tokenizer.

    Characters keep the vocabulary tiny and deterministic; the words themselves reach the
    transformer through T5, as in FLUX, where CLIP only contributes a pooled vector.
    """
    from tokenizers import pre_tokenizers

    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    for suffix in ("", "</w>"):
        for char in alphabet:
            vocab[char + suffix] = len(vocab)
    return vocab


def build_clip_tokenizer() -> CLIPTokenizer:
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=_clip_byte_vocab(), merges=[], model_max_length=CLIP_MAX_LENGTH)


def build_t5_tokenizer(words: tuple[str, ...] = WORDS, max_length: int = 512) -> T5Tokenizer:
    from tokenizers import normalizers
    from transformers import T5Tokenizer

    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -4.0)]
    pieces += [("\u2581" + word, -1.0) for word in words]
    pieces += [(char, -6.0) for char in string.ascii_lowercase + string.digits + string.punctuation]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0)
    tokenizer.backend_tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.model_max_length = max_length
    return tokenizer


def scheduler_config() -> dict[str, Any]:
    """FLUX.1-dev's scheduler settings (dynamic shifting by image sequence length)."""
    return dict(base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15,
                num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True)


def build_components(spec: TinySpec) -> dict[str, Any]:
    """Construct every pipeline component with the *current* torch RNG (callers seed it)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    clip_tokenizer = build_clip_tokenizer()
    t5_tokenizer = build_t5_tokenizer()
    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(clip_tokenizer), hidden_size=spec.text_dim, intermediate_size=2 * spec.text_dim,
        num_hidden_layers=spec.text_layers, num_attention_heads=spec.text_heads, max_position_embeddings=77,
        projection_dim=spec.text_dim, bos_token_id=clip_tokenizer.bos_token_id,
        eos_token_id=clip_tokenizer.eos_token_id, pad_token_id=clip_tokenizer.pad_token_id,
    ))
    t5 = T5EncoderModel(T5Config(
        vocab_size=len(t5_tokenizer), d_model=spec.text_dim, d_kv=spec.text_dim // spec.text_heads,
        d_ff=2 * spec.text_dim, num_layers=spec.text_layers, num_heads=spec.text_heads,
        pad_token_id=t5_tokenizer.pad_token_id, eos_token_id=t5_tokenizer.eos_token_id, decoder_start_token_id=0,
    ))
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4 * spec.latent_channels, num_layers=spec.double_blocks,
        num_single_layers=spec.single_blocks, attention_head_dim=spec.head_dim,
        num_attention_heads=spec.heads, joint_attention_dim=spec.text_dim,
        pooled_projection_dim=spec.text_dim, guidance_embeds=False, axes_dims_rope=spec.rope_axes,
    )
    levels = len(spec.vae_channels)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=spec.vae_channels,
        layers_per_block=1, latent_channels=spec.latent_channels, norm_num_groups=8,
        use_quant_conv=False, use_post_quant_conv=False,
        shift_factor=spec.vae_shift, scaling_factor=spec.vae_scale,
    )
    return dict(
        scheduler=FlowMatchEulerDiscreteScheduler(**scheduler_config()),
        vae=vae, text_encoder=clip, tokenizer=clip_tokenizer,
        text_encoder_2=t5, tokenizer_2=t5_tokenizer, transformer=transformer,
    )


def trainable_modules(components: dict[str, Any]) -> dict[str, torch.nn.Module]:
    import torch

    return {name: module for name, module in components.items() if isinstance(module, torch.nn.Module)}


def state_digest(modules: dict[str, torch.nn.Module]) -> str:
    """A short, stable hash of every weight: it changes exactly when the model changes."""
    import torch

    hasher = hashlib.sha256()
    for name in sorted(modules):
        for key, tensor in sorted(modules[name].state_dict().items()):
            hasher.update(f"{name}.{key}".encode())
            hasher.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return hasher.hexdigest()[:12]


def read_weights(path: Path) -> tuple[TinySpec, dict[str, torch.Tensor], dict[str, str]]:
    """The spec stored in the safetensors metadata, the tensors, and the rest of the metadata."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        state = {key: handle.get_tensor(key) for key in handle.keys()}
    fields = json.loads(metadata.get("spec", "{}"))
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    return TinySpec(**fields), state, metadata


def save_weights(path: Path, spec: TinySpec, modules: dict[str, torch.nn.Module], metadata: dict[str, str],
                 dtype: torch.dtype | None = None) -> None:
    """Write all trainable components, prefixed by component name, with the spec in the metadata.

    Floating tensors are stored as ``dtype`` (default float32; float16 halves the shipped size, loading
    casts back). Each tensor is cloned, which also unties T5's shared embeddings: safetensors refuses aliases.
    """
    import torch
    from safetensors.torch import save_file

    dtype = dtype or torch.float32

    def stored(tensor: torch.Tensor) -> torch.Tensor:
        target = dtype if tensor.is_floating_point() else tensor.dtype
        return tensor.detach().to("cpu", target).clone().contiguous()

    state = {f"{name}.{key}": stored(tensor)
             for name, module in modules.items() for key, tensor in module.state_dict().items()}
    save_file(state, str(path), metadata={**metadata, "spec": spec.to_json()})


def build_tiny_pipeline(spec: TinySpec | None = None, weights: Path | None = None, device: str = "cpu"):
    """A FluxPipeline in eval mode: seeded random weights, or the given safetensors (whose spec wins)."""
    import torch
    from diffusers import FluxPipeline

    state = None
    if weights is not None:
        spec, state, _ = read_weights(weights)
    spec = spec or TinySpec()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        components = build_components(spec)
    if state is not None:
        for name, module in trainable_modules(components).items():
            prefix = name + "."
            module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
                                   strict=True)
    for module in trainable_modules(components).values():
        module.eval()  # configs build in training mode; T5 dropout would make every run differ
        module.requires_grad_(False)
    pipe = FluxPipeline(**components).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, spec


def load_tiny(config: HarnessConfig, trained: bool) -> LoadedModel:
    weights = TINY_WEIGHTS if trained else None
    if trained and not TINY_WEIGHTS.is_file():
        raise ConfigError("--fbcache-model", config.model, "tiny-random, flux-random, a directory or hub id",
                          f"the trained tiny weights are missing from the package ({TINY_WEIGHTS.name})")
    pipe, spec = build_tiny_pipeline(None, weights, config.device)
    digest = state_digest(trainable_modules(dict(pipe.components)))
    return LoadedModel(
        pipe=pipe,
        name=config.model,
        call_kwargs=dict(prompt=config.prompt, guidance_scale=3.5, max_sequence_length=spec.max_sequence_length),
        digest=digest,
        notes=[] if trained else ["tiny-random: random weights, cache behaviour is not realistic"],
    )


def _weights_present(config: HarnessConfig) -> None:
    if not TINY_WEIGHTS.is_file():
        raise ConfigError("--fbcache-model", "tiny", "tiny-random, flux-random, a directory or hub id",
                          "the trained tiny weights are missing from this installation")


SOURCES = (
    ModelSource(name="tiny", summary="the shipped trained tiny FLUX (CPU-friendly, realistic cache behaviour)",
                matches=lambda value: value == "tiny", load=lambda config: load_tiny(config, trained=True),
                default_resolution=(64, 64), preflight=_weights_present),
    ModelSource(name="tiny-random", summary="the tiny FLUX with random weights",
                matches=lambda value: value == "tiny-random", load=lambda config: load_tiny(config, trained=False),
                default_resolution=(64, 64)),
)
