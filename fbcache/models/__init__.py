"""The model-source registry: one file per source, one line per source in ``BUILTIN``.

A source module defines ``SOURCES`` (a tuple of :class:`~fbcache.models.base.ModelSource`). The
first source whose ``matches`` accepts ``--fbcache-model`` wins, so the catch-all ``pretrained``
(a directory or hub id) comes last. Tests and third parties may :func:`register` more in front.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from fbcache.models.base import LoadedModel, ModelSource

if TYPE_CHECKING:
    from fbcache.config.harness import HarnessConfig

BUILTIN = (
    "fbcache.models.tiny",
    "fbcache.models.flux_random",
    "fbcache.models.pretrained",
)

_REGISTERED: list[ModelSource] = []
_BUILTIN_SOURCES: list[ModelSource] = []


def _builtin() -> list[ModelSource]:
    if not _BUILTIN_SOURCES:
        for module in BUILTIN:
            _BUILTIN_SOURCES.extend(importlib.import_module(module).SOURCES)
    return _BUILTIN_SOURCES


def all_sources() -> list[ModelSource]:
    """Registered sources first, then the built-in ones in ``BUILTIN`` order."""
    return _REGISTERED + _builtin()


def register(source: ModelSource) -> ModelSource:
    unregister(source.name)
    _REGISTERED.append(source)
    return source


def unregister(name: str) -> None:
    _REGISTERED[:] = [s for s in _REGISTERED if s.name != name]


def named_sources() -> list[str]:
    """Names a user can type as they are (the catch-all's name is a description, not a value)."""
    return [s.name for s in all_sources() if s.typed_by_name]


def source_for(model: str) -> ModelSource:
    """The source that serves ``model``; the catch-all always matches."""
    for source in all_sources():
        if source.matches(model):
            return source
    raise LookupError(model)  # pragma: no cover - pretrained matches everything


def load_model(config: HarnessConfig) -> LoadedModel:
    """Build or load the model named by ``config.model``, on ``config.device``, quantized, then compiled.

    Compilation wraps the blocks here, before any cache backend exists, so the cache hooks wrap the
    compiled forwards (:mod:`fbcache.models.compile`); the compiling itself happens on the first call,
    in the untimed warm-up.
    """
    from fbcache.models.compile import compile_transformer
    from fbcache.models.quantization import quantize_transformer, uses_torchao

    loaded = source_for(config.model).load(config)
    if uses_torchao(config.quant):
        quantize_transformer(loaded.pipe.transformer, config.quant)
    compile_transformer(loaded.pipe.transformer, config.compile)
    return loaded


__all__ = ["LoadedModel", "ModelSource", "all_sources", "load_model", "named_sources", "register", "source_for",
           "unregister"]
