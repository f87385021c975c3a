"""What a model source is: a :class:`ModelSource` spec, and the :class:`LoadedModel` it builds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    #: per-prompt call arguments for a model without a text encoder (flux-random's random embeddings);
    #: None: the prompt text replaces ``call_kwargs["prompt"]``
    embed: Callable[[str], dict[str, Any]] | None = None

    def kwargs_for(self, prompt: str | None) -> dict[str, Any]:
        """The call arguments for one prompt of a set (``None``: the run's single prompt, as built)."""
        if prompt is None:
            return self.call_kwargs
        if self.embed is not None:
            return {**self.call_kwargs, **self.embed(prompt)}
        if "prompt" in self.call_kwargs:
            return {**self.call_kwargs, "prompt": prompt}
        return self.call_kwargs


def _nothing(config: HarnessConfig) -> None:
    return None


def _same(value: str) -> str:
    return value


@dataclass(frozen=True)
class ModelSource:
    """A way to get a FLUX pipeline, declared without building anything."""

    name: str
    #: one line for ``--help``
    summary: str
    #: does ``--fbcache-model VALUE`` name this source?
    matches: Callable[[str], bool]
    #: ``load(config)`` -> LoadedModel; imports heavy libraries lazily
    load: Callable[[HarnessConfig], LoadedModel]
    #: the canonical value stored in the config (e.g. a resolved directory); raises ConfigError
    canonical: Callable[[str], str] = _same
    default_steps: int = 28
    #: (width, height) when ``--fbcache-resolution`` is not given
    default_resolution: tuple[int, int] = (1024, 1024)
    #: random weights: realistic cost per step, meaningless hits and SSIM
    timing_only: bool = False
    #: importable module name -> how to install it; checked before any model is built
    requires: Mapping[str, str] = field(default_factory=dict)
    #: option rules of this source (device, quantization): raise ConfigError
    validate: Callable[[HarnessConfig], None] = _nothing
    #: environment checks (weights present, ...): raise ConfigError
    preflight: Callable[[HarnessConfig], None] = _nothing
    #: image files are named ``<stem>_t0.1_first.png`` (the reference experiment's names)
    image_stem: str = "flux"
    #: the user types the name itself (False for a catch-all such as "a directory or hub id")
    typed_by_name: bool = True
