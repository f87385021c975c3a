"""Model sources: each turns a :class:`~fbcache.config.HarnessConfig` into a ready :class:`LoadedModel`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fbcache.config.harness import HarnessConfig


@dataclass
class LoadedModel:
    """A FluxPipeline ready to call, plus what the history needs to know about it."""

    pipe: Any
    name: str
    #: keyword arguments that, with height/width/steps/generator, make one generation
    call_kwargs: dict[str, Any]
    #: short hash of the weights or of the construction recipe; changes when the model changes
    digest: str
    timing_only: bool = False
    notes: list[str] = field(default_factory=list)


def load_model(config: HarnessConfig) -> LoadedModel:
    """Build or load the model named by ``config.model``, on ``config.device``, quantized as asked."""
    from fbcache.models.quantization import quantize_transformer

    kind = config.kind
    if kind in ("tiny", "tiny-random"):
        from fbcache.models.tiny import load_tiny

        loaded = load_tiny(config, trained=(kind == "tiny"))
    elif kind == "flux-random":
        from fbcache.models.flux_random import load_flux_random

        loaded = load_flux_random(config)
    else:
        from fbcache.models.pretrained import load_pretrained

        loaded = load_pretrained(config)
    if config.quant not in ("none", "nunchaku"):
        quantize_transformer(loaded.pipe.transformer, config.quant)
    return loaded
