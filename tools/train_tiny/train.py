"""Train the tiny FLUX, so First-Block Cache sees the residuals of a real model.

With random weights the first block's residual changes a lot between denoising steps, and the cache
goes from never hitting to always hitting at one threshold (docs/tiny-model.md). A short rectified-flow training on
procedural scenes (:mod:`fbcache.procedural`) makes the residual drift slowly, as in FLUX.1.

Stage 1 trains the AutoencoderKL (reconstruction + small KL). Stage 2 freezes it and trains the
transformer together with both text encoders, with FluxPipeline's own conventions: latents
normalised as ``(z - shift) * scale`` and packed 2x2, ``x_t = (1 - sigma) x0 + sigma noise``, the
transformer called with ``timestep = sigma`` and regressed onto the velocity ``noise - x0``.
The text encoders train too because, unlike FLUX's, they start from random weights: there is
nothing pretrained to protect, and trained embeddings separate colour, shape and place words.

Run ``python -m tools.train_tiny --out tiny-flux.safetensors``; ``--smoke`` is a seconds-long check.
The defaults are the settings of the shipped ``fbcache/weights/tiny-flux.safetensors`` (docs/tiny-model.md
has where and how long it trained; the JSON next to the weights the per-stage times). The model is so
small that a flow step costs about the same in Python and kernel launches at any large batch, so the
batch is large and the step count moderate. On a CPU the same defaults run far longer; use
``--flow-steps``/``--batch-size`` to shorten.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fbcache.models.tiny import TinySpec, build_components, build_tiny_pipeline, save_weights, trainable_modules
from tools.train_tiny import procedural

#: held-out loss is measured at these noise levels, so the number is deterministic and comparable
HELDOUT_SIGMAS: tuple[float, ...] = tuple((k + 0.5) / 8 for k in range(8))
#: held-out samples are always drawn with this seed: runs with different training seeds stay comparable
HELDOUT_SEED = 0
DEFAULT_SIDE = 64
#: share of training sigmas drawn uniformly; the rest are logit-normal (dense mid-range, as in SD3/FLUX)
UNIFORM_SIGMA_SHARE = 0.25
RENDER_CHUNK = 1024


@dataclass(frozen=True)
class Settings:
    """Every training setting (workers and logging only change speed and output); recorded in the JSON."""

    seed: int = 0
    device: str = "cpu"
    resolution: int = DEFAULT_SIDE
    pool_size: int = 65536
    vae_steps: int = 1000
    vae_batch_size: int = 64
    vae_lr: float = 5e-4
    kl_weight: float = 1e-4
    flow_steps: int = 2500
    batch_size: int = 512
    lr: float = 5e-4
    warmup_steps: int = 300
    heldout_samples: int = 128
    workers: int = 16
    log_every: int = 250


SMOKE = dict(resolution=32, pool_size=8, vae_steps=2, vae_batch_size=4, flow_steps=2, batch_size=4,
             warmup_steps=1, heldout_samples=4, workers=0, log_every=1)


@dataclass
class Pool:
    """A procedural pool on the training device: images, normalised packed latents, token ids."""

    images: torch.Tensor
    clip_ids: torch.Tensor
    t5_ids: torch.Tensor
    latents: torch.Tensor | None = None


# --- data --------------------------------------------------------------------------------------


def _render_chunk(split: str, seed: int, side: int,
                  start_count: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    return procedural.batch(split, seed, start_count[0], start_count[1], side)


def render_pool(split: str, seed: int, count: int, side: int, workers: int) -> tuple[np.ndarray, list[str]]:
    """Samples 0..count-1 of a split; worker processes only change the speed, never the result."""
    chunks = [(start, min(RENDER_CHUNK, count - start)) for start in range(0, count, RENDER_CHUNK)]
    render = partial(_render_chunk, split, seed, side)
    if workers <= 1 or len(chunks) == 1:
        parts = list(map(render, chunks))
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as executor:
            parts = list(executor.map(render, chunks))
    return np.concatenate([images for images, _ in parts]), [c for _, captions in parts for c in captions]


def images_to_tensor(images: np.ndarray | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1], the range the VAE decodes to and the pipeline expects."""
    tensor = torch.as_tensor(images).to(device)
    return tensor.permute(0, 3, 1, 2).float() / 127.5 - 1


def tokenize(components: dict[str, Any], captions: list[str],
             max_sequence_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids exactly as FluxPipeline.encode_prompt makes them (CLIP at 77, T5 padded to max length)."""
    clip = components["tokenizer"]
    clip_ids = clip(captions, padding="max_length", max_length=clip.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    t5_ids = components["tokenizer_2"](captions, padding="max_length", max_length=max_sequence_length,
                                       truncation=True, return_tensors="pt").input_ids
    return clip_ids, t5_ids


def encode_text(components: dict[str, Any], clip_ids: torch.Tensor,
                t5_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(T5 sequence embeddings, CLIP pooled vector), as the pipeline computes them (no attention mask)."""
    pooled = components["text_encoder"](clip_ids, output_hidden_states=False).pooler_output
    prompt_embeds = components["text_encoder_2"](t5_ids, output_hidden_states=False)[0]
    return prompt_embeds, pooled


def vae_scale_factor(vae: torch.nn.Module) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


@torch.no_grad()
def raw_latents(vae: torch.nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Posterior means (N, C, H, W): deterministic targets, which the decoder was trained around."""
    parts = [vae.encode(images_to_tensor(images[i:i + batch_size], vae.device).to(vae.dtype)).latent_dist.mode()
             for i in range(0, len(images), batch_size)]
    return torch.cat(parts).float()


def encode_latents(vae: torch.nn.Module, images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Normalised, packed latents (N, tokens, 4 * channels): what the transformer sees at sigma = 0."""
    from diffusers import FluxPipeline

    latents = (raw_latents(vae, images) - vae.config.shift_factor) * vae.config.scaling_factor
    n, c, h, w = latents.shape
    return FluxPipeline._pack_latents(latents, n, c, h, w)


def position_ids(side: int, vae: torch.nn.Module, text_tokens: int,
                 device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """(img_ids, txt_ids) for RoPE, as FluxPipeline.prepare_latents / encode_prompt build them."""
    from diffusers import FluxPipeline

    half = side // vae_scale_factor(vae) // 2
    img_ids = FluxPipeline._prepare_latent_image_ids(None, half, half, device, torch.float32)
    return img_ids, torch.zeros(text_tokens, 3, device=device)


# --- losses ------------------------------------------------------------------------------------


def shift_mu(side: int, vae: torch.nn.Module) -> float:
    """The dynamic-shift mu that FluxPipeline uses at this resolution (scheduler_config's values)."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    from fbcache.models.tiny import scheduler_config

    config = scheduler_config()
    tokens = (side // vae_scale_factor(vae) // 2) ** 2
    return calculate_shift(tokens, config["base_image_seq_len"], config["max_image_seq_len"],
                           config["base_shift"], config["max_shift"])


def sample_sigmas(n: int, mu: float, generator: torch.Generator) -> torch.Tensor:
    """Logit-normal / uniform mixture, shifted like inference's schedule, so every used sigma is trained."""
    logit_normal = torch.sigmoid(torch.randn(n, generator=generator))
    uniform = torch.rand(n, generator=generator)
    use_uniform = torch.rand(n, generator=generator) < UNIFORM_SIGMA_SHARE
    t = torch.where(use_uniform, uniform, logit_normal)
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1))


def velocity_loss(transformer: torch.nn.Module, x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor,
                  prompt_embeds: torch.Tensor, pooled: torch.Tensor, img_ids: torch.Tensor,
                  txt_ids: torch.Tensor) -> torch.Tensor:
    """Rectified-flow loss: predict ``noise - x0`` at ``x_t = (1 - sigma) x0 + sigma noise``."""
    s = sigmas.view(-1, 1, 1)
    x_t = (1 - s) * x0 + s * noise
    dtype = transformer.dtype
    prediction = transformer(hidden_states=x_t.to(dtype), timestep=sigmas.to(dtype), guidance=None,
                             pooled_projections=pooled.to(dtype), encoder_hidden_states=prompt_embeds.to(dtype),
                             txt_ids=txt_ids, img_ids=img_ids, return_dict=False)[0]
    return F.mse_loss(prediction.float(), (noise - x0).float())


@contextlib.contextmanager
def _eval_mode(modules: list[torch.nn.Module]) -> Iterator[None]:
    """Eval mode for a measurement (T5 dropout would make it random), then back to the caller's modes."""
    modes = [m.training for m in modules]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for module, mode in zip(modules, modes):
            module.train(mode)


@torch.no_grad()
def flow_matching_loss(pipe_or_components: Any, n_samples: int, seed: int, side: int = DEFAULT_SIDE,
                       max_sequence_length: int = TinySpec.max_sequence_length) -> float:
    """Mean flow-matching loss on held-out procedural samples over the fixed :data:`HELDOUT_SIGMAS` grid.

    Accepts a FluxPipeline or its components dict; deterministic for a given model, ``n_samples`` and
    ``seed``, so tests can compare a trained model against an untrained one.
    """
    components = getattr(pipe_or_components, "components", pipe_or_components)
    transformer, vae = components["transformer"], components["vae"]
    with _eval_mode(list(trainable_modules(components).values())):
        images, captions = procedural.batch("heldout", seed, 0, n_samples, side)
        x0 = encode_latents(vae, images)
        device = transformer.device
        clip_ids, t5_ids = tokenize(components, captions, max_sequence_length)
        prompt_embeds, pooled = encode_text(components, clip_ids.to(device), t5_ids.to(device))
        img_ids, txt_ids = position_ids(side, vae, t5_ids.shape[1], device)
        generator = torch.Generator().manual_seed(seed)
        losses = []
        for sigma in HELDOUT_SIGMAS:
            noise = torch.randn(x0.shape, generator=generator).to(device)
            sigmas = torch.full((n_samples,), sigma, device=device)
            losses.append(velocity_loss(transformer, x0.to(device), noise, sigmas, prompt_embeds, pooled,
                                        img_ids, txt_ids).item())
    return float(np.mean(losses))


# --- training ----------------------------------------------------------------------------------


def _schedule(optimizer: torch.optim.Optimizer, warmup: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to a tenth: the low final rate stands in for weight averaging."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Progress:
    """Running means printed every ``every`` steps; the mean over the last 10 % of steps is the final loss.

    Losses stay on the device until printed: a ``.item()`` per step would stall the GPU queue.
    """

    def __init__(self, name: str, steps: int, every: int) -> None:
        self.name, self.steps, self.every = name, steps, every
        self.window: dict[str, list[torch.Tensor]] = {}
        self.tail: dict[str, list[torch.Tensor]] = {}
        self.start = time.perf_counter()

    def add(self, step: int, **values: torch.Tensor) -> None:
        for key, value in values.items():
            self.window.setdefault(key, []).append(value.detach())
            if step >= self.steps - max(1, self.steps // 10):
                self.tail.setdefault(key, []).append(value.detach())
        if (step + 1) % self.every == 0 or step + 1 == self.steps:
            means = " ".join(f"{k} {torch.stack(v).mean().item():.4f}" for k, v in self.window.items())
            elapsed = time.perf_counter() - self.start
            print(f"[{self.name}] step {step + 1}/{self.steps} {means} ({elapsed:.0f} s, "
                  f"{(step + 1) / elapsed:.1f} steps/s)", flush=True)
            self.window.clear()

    def final(self) -> dict[str, float]:
        return {key: torch.stack(values).mean().item() for key, values in self.tail.items()}


def train_vae(vae: torch.nn.Module, pool: Pool, settings: Settings, generator: torch.Generator) -> dict[str, float]:
    """Reconstruction (MSE) plus a small KL, on latents sampled from the posterior."""
    device = settings.device
    vae.requires_grad_(True)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=settings.vae_lr, weight_decay=0.0)
    schedule = _schedule(optimizer, settings.warmup_steps, settings.vae_steps)
    progress = Progress("vae", settings.vae_steps, settings.log_every)
    for step in range(settings.vae_steps):
        index = torch.randint(len(pool.images), (settings.vae_batch_size,), generator=generator).to(device)
        pixels = images_to_tensor(pool.images[index], device)
        posterior = vae.encode(pixels).latent_dist
        eps = torch.randn(posterior.mean.shape, generator=generator).to(device)
        decoded = vae.decode(posterior.mean + posterior.std * eps).sample
        reconstruction = F.mse_loss(decoded, pixels)
        kl = 0.5 * (posterior.mean ** 2 + posterior.var - 1 - posterior.logvar).mean()
        loss = reconstruction + settings.kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        progress.add(step, rec=reconstruction, kl=kl)
    vae.requires_grad_(False)
    return progress.final()


def latent_statistics(vae: torch.nn.Module, images: torch.Tensor, count: int = 4096) -> tuple[float, float]:
    """(mean, 1 / std) of the VAE latents: the pipeline's shift and scaling factors, giving unit variance."""
    latents = raw_latents(vae, images[:count])
    return float(latents.mean()), float(1 / latents.std())


def train_flow(components: dict[str, Any], pool: Pool, settings: Settings, spec: TinySpec,
               generator: torch.Generator) -> dict[str, float]:
    """Flow matching for the transformer and both text encoders; the VAE stays frozen."""
    device = settings.device
    transformer = components["transformer"]
    modules = [transformer, components["text_encoder"], components["text_encoder_2"]]
    parameters = [p for module in modules for p in module.parameters()]
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=0.01)
    schedule = _schedule(optimizer, settings.warmup_steps, settings.flow_steps)
    img_ids, txt_ids = position_ids(settings.resolution, components["vae"], spec.max_sequence_length, device)
    mu = shift_mu(settings.resolution, components["vae"])
    progress = Progress("flow", settings.flow_steps, settings.log_every)
    for step in range(settings.flow_steps):
        index = torch.randint(len(pool.latents), (settings.batch_size,), generator=generator).to(device)
        x0 = pool.latents[index]
        noise = torch.randn(x0.shape, generator=generator).to(device)
        sigmas = sample_sigmas(settings.batch_size, mu, generator).to(device)
        prompt_embeds, pooled = encode_text(components, pool.clip_ids[index], pool.t5_ids[index])
        loss = velocity_loss(transformer, x0, noise, sigmas, prompt_embeds, pooled, img_ids, txt_ids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        progress.add(step, loss=loss)
    for parameter in parameters:
        parameter.requires_grad_(False)
    return progress.final()


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> tuple[Path, Settings, bool]:
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="python -m tools.train_tiny", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="weights file (.safetensors); the .json goes beside it")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu",
                        help="training device")
    parser.add_argument("--smoke", action="store_true", help="a few steps on tiny data: the whole path in seconds")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="initial weights, data and noise")
    parser.add_argument("--resolution", type=int, default=defaults.resolution, help="image side, a multiple of 16")
    parser.add_argument("--pool-size", type=int, default=defaults.pool_size, help="procedural training images")
    parser.add_argument("--vae-steps", type=int, default=defaults.vae_steps, help="stage 1 steps")
    parser.add_argument("--vae-batch-size", type=int, default=defaults.vae_batch_size, help="stage 1 batch")
    parser.add_argument("--vae-lr", type=float, default=defaults.vae_lr, help="stage 1 learning rate")
    parser.add_argument("--kl-weight", type=float, default=defaults.kl_weight, help="KL term of stage 1")
    parser.add_argument("--flow-steps", type=int, default=defaults.flow_steps, help="stage 2 steps")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="stage 2 (flow matching) batch")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="stage 2 learning rate")
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps, help="linear warm-up, both stages")
    parser.add_argument("--heldout-samples", type=int, default=defaults.heldout_samples,
                        help="held-out samples for the recorded flow loss")
    parser.add_argument("--workers", type=int, default=min(defaults.workers, os.cpu_count() or 1),
                        help="processes that render the pool (the result does not depend on it)")
    parser.add_argument("--log-every", type=int, default=defaults.log_every, help="steps between progress lines")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    values = {k: v for k, v in vars(args).items() if k not in ("out", "smoke")}
    settings = Settings(**values)
    if args.smoke:
        settings = replace(settings, **SMOKE)
    if settings.resolution % 16:
        parser.error(f"--resolution {settings.resolution} is not a multiple of 16")
    return args.out, settings, args.smoke


def _device_name(device: str) -> str:
    if device == "cuda":
        return f"cuda ({torch.cuda.get_device_name()})"
    return f"cpu ({platform.processor() or platform.machine()})"


def _prepare_pool(components: dict[str, Any], settings: Settings, spec: TinySpec) -> Pool:
    images, captions = render_pool("train", settings.seed, settings.pool_size, settings.resolution, settings.workers)
    clip_ids, t5_ids = tokenize(components, captions, spec.max_sequence_length)
    device = settings.device
    return Pool(torch.from_numpy(images).to(device), clip_ids.to(device), t5_ids.to(device))


@dataclass
class Trained:
    """What :func:`train` hands to the writer: the model, its final spec and the numbers for the record."""

    components: dict[str, Any]
    spec: TinySpec
    losses: dict[str, float]
    untrained_heldout: float
    times: dict[str, float]


def _timed(times: dict[str, float], key: str, start: float) -> float:
    times[key] = time.perf_counter() - start
    return time.perf_counter()


def train(settings: Settings) -> Trained:
    """Both stages from a seeded initialisation; the VAE's latent statistics go into the spec."""
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    spec = TinySpec()
    components = build_components(spec)
    for module in trainable_modules(components).values():
        module.to(settings.device).eval().requires_grad_(False)  # eval: no T5 dropout; weights stay fp32
    untrained = flow_matching_loss(components, settings.heldout_samples, HELDOUT_SEED, settings.resolution,
                                   spec.max_sequence_length)
    print(f"untrained held-out flow loss {untrained:.4f}", flush=True)
    times: dict[str, float] = {}
    mark = time.perf_counter()
    pool = _prepare_pool(components, settings, spec)
    mark = _timed(times, "data_s", mark)
    print(f"rendered {settings.pool_size} training images in {times['data_s']:.1f} s", flush=True)

    vae = components["vae"]
    vae_losses = train_vae(vae, pool, settings, generator)
    shift, scale = latent_statistics(vae, pool.images)
    vae.register_to_config(shift_factor=shift, scaling_factor=scale)
    spec = replace(spec, vae_shift=shift, vae_scale=scale)
    pool.latents = encode_latents(vae, pool.images)
    mark = _timed(times, "vae_s", mark)
    print(f"latent shift {shift:.4f} scale {scale:.4f}", flush=True)

    flow_losses = train_flow(components, pool, settings, spec, generator)
    _timed(times, "flow_s", mark)
    losses = {"vae_reconstruction": vae_losses["rec"], "vae_kl": vae_losses["kl"], "flow": flow_losses["loss"]}
    return Trained(components, spec, losses, untrained, times)


def save(trained: Trained, out: Path, seed: int) -> None:
    """The shipped file: fp16 weights with the spec in the metadata; refuses to write a diverged model."""
    modules = trainable_modules(trained.components)
    if not all(torch.isfinite(p).all() for module in modules.values() for p in module.parameters()):
        raise RuntimeError("training diverged: some weights are not finite; nothing was written")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(out, trained.spec, modules, {"trainer": "tools.train_tiny", "seed": str(seed)},
                 dtype=torch.float16)


def _record(trained: Trained, settings: Settings, out: Path, smoke: bool, heldout: float,
            started: datetime.datetime) -> dict[str, Any]:
    """The JSON written beside the weights: how they were made and how good they are."""
    import diffusers
    import transformers

    modules = trainable_modules(trained.components)
    return {
        "weights": out.name,
        "size_bytes": out.stat().st_size,
        "smoke": smoke,
        "settings": asdict(settings),
        "spec": asdict(trained.spec),
        "parameters": {name: sum(p.numel() for p in m.parameters()) for name, m in modules.items()},
        "final_losses": trained.losses,
        "heldout_flow_loss": heldout,
        "heldout_flow_loss_untrained": trained.untrained_heldout,
        "heldout": {"split": "heldout", "seed": HELDOUT_SEED, "samples": settings.heldout_samples,
                    "sigmas": list(HELDOUT_SIGMAS), "stored_dtype": "float16"},
        "wall_time": trained.times,
        "device": _device_name(settings.device),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "diffusers": diffusers.__version__, "transformers": transformers.__version__},
        "date": started.isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, save the weights, measure them as shipped (fp16, reloaded), write and return the record."""
    out, settings, smoke = parse_args(argv)
    if settings.device == "cuda":
        # TF32 matmuls: fast enough for a model this small, and free of the NaNs bf16 gave the text encoders
        torch.set_float32_matmul_precision("high")
    started, clock = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    trained = train(settings)
    save(trained, out, settings.seed)
    mark = time.perf_counter()
    pipe, spec = build_tiny_pipeline(weights=out, device=settings.device)
    heldout = flow_matching_loss(pipe, settings.heldout_samples, HELDOUT_SEED, settings.resolution,
                                 spec.max_sequence_length)
    _timed(trained.times, "eval_s", mark)
    trained.times["total_s"] = time.perf_counter() - clock
    record = _record(trained, settings, out, smoke, heldout, started)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"held-out flow loss {heldout:.4f} (untrained {trained.untrained_heldout:.4f}); wrote {out.name} "
          f"({record['size_bytes'] / 1e6:.1f} MB) in {trained.times['total_s']:.0f} s", flush=True)
    return record


if __name__ == "__main__":
    main(sys.argv[1:])
