"""Real FLUX weights: a local diffusers directory or a hub id, optionally around the transformer of a
load-time quantization mode.

``FluxPipeline.from_pretrained`` honours ``HF_HUB_OFFLINE=1``: with the files already in the
cache (``HF_HOME``), nothing touches the network.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from fbcache import quant
from fbcache.config.harness import HarnessConfig
from fbcache.errors import ConfigError
from fbcache.models import LoadedModel, ModelSource, named_sources


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


SOURCES = (
    ModelSource(name="pretrained", summary="a local diffusers FLUX directory or a hub id (real weights)",
                matches=lambda value: True, canonical=canonical_model, load=load_pretrained, typed_by_name=False,
                takes_transformer=True),
)
