"""Real FLUX weights: a local diffusers directory or a hub id, optionally with nunchaku's transformer.

``FluxPipeline.from_pretrained`` honours ``HF_HUB_OFFLINE=1``: with the files already in the
cache (``HF_HOME``), nothing touches the network.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from fbcache.config.harness import HarnessConfig
from fbcache.models import LoadedModel


def _dtype(device: str) -> torch.dtype:
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def load_nunchaku_transformer(config: HarnessConfig) -> Any:
    """nunchaku's SVDQuant transformer, precision chosen as nunchaku's own get_precision does."""
    from nunchaku import NunchakuFluxTransformer2dModel
    from nunchaku.utils import get_precision

    path = config.nunchaku_transformer
    precision = get_precision(config.nunchaku_precision, config.device, path)
    return NunchakuFluxTransformer2dModel.from_pretrained(
        path, device=config.device, torch_dtype=_dtype(config.device), precision=precision,
    )


def _digest(config: HarnessConfig, pipe: Any) -> str:
    """Identity of the weights: the hub commit when known, else the source names and file sizes."""
    hasher = hashlib.sha256(config.model.encode())
    commit = getattr(pipe.config, "_commit_hash", None) or ""
    hasher.update(str(commit).encode())
    if config.nunchaku_transformer:
        hasher.update(config.nunchaku_transformer.encode())
        path = Path(config.nunchaku_transformer)
        if path.is_file():
            hasher.update(str(path.stat().st_size).encode())
    return hasher.hexdigest()[:12]


def load_pretrained(config: HarnessConfig) -> LoadedModel:
    from diffusers import FluxPipeline

    kwargs: dict[str, Any] = {"dtype": _dtype(config.device)}
    if config.quant == "nunchaku":
        kwargs["transformer"] = load_nunchaku_transformer(config)
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
