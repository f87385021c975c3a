"""Model sources: what one is, what it builds, and the registry (one file per source).

A source module defines ``SOURCES`` (a tuple of :class:`ModelSource`); a new source is one new file
plus one line in ``BUILTIN``, or a :func:`register` call (registered sources come first). The first
source whose ``matches`` accepts ``--fbcache-model`` wins, so the catch-all ``pretrained`` (a
directory or hub id) comes last. Modules listed here import no heavy library at import time.

Sources know no particular quantization mode: a mode that applies after load quantizes whatever
the source built (:func:`load_model`); a mode that loads its own transformer hands it to a source
that ``takes_transformer`` (:func:`fbcache.quant.transformer_for`), and any other source is
refused before a model is built.

Compiling (``--fbcache-compile``): :func:`load_model` torch.compiles the transformer once per session, before
any cache is enabled; torch is imported only then.

``regional`` compiles each repeated block's ``forward`` (``block.forward = torch.compile(block.forward,
fullgraph=True)``), and it must happen before the first ``enable_cache``: diffusers' FBCache hooks
then wrap the *compiled* forward and stay plain Python, so the cache decision is taken eagerly, a
hit really skips the compiled blocks, and switching the cache on, off or to another threshold
compiles nothing new (docs/gpus.md gives the measured graph counts). diffusers' ``compile_repeated_blocks`` is not
used: it compiles ``Module.__call__`` and so traces the hooks as well, which recompiles on the first
cached call and, with ``fullgraph=True``, fails on the hook's ``torch.compiler.disable``'d decision.

``regional+io`` compiles, besides the blocks as ``regional`` does, the modules every step runs outside
them (:data:`IO_MODULES`: the embedders before the blocks, the output norm and projection after them),
each ``forward`` on its own. The cache hooks sit on the blocks only, so the decision stays eager as in
``regional``. On a hit the hooks hand ``norm_out`` a tensor laid out unlike a computed step's slice
(another stride of the size-1 batch dimension), which dynamo's guards would compile again on the first
cached call; each compiled module's tensor arguments are therefore viewed in the contiguous layout
first (:func:`_same_layout`; no copy for a contiguous tensor), so switching the cache on, off or to
another threshold still compiles nothing new.

``full`` compiles the whole transformer ``forward`` (``fullgraph=True``). It only works without a
cache: the cache decision is data-dependent and runs outside compiled code, so a whole-transformer
graph cannot contain it (tiny model, CPU: "Skip inlining torch.compiler.disable()'d function
FBCHeadBlockHook._should_compute_remaining_blocks"). The harness refuses ``full`` when cached
benchmarks are selected.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fbcache import quant
from fbcache.config import COMPILE_MODES, HarnessConfig, OptionSpec

BUILTIN = (
    "fbcache.models.tiny",
    "fbcache.models.flux",
)


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
    #: random weights: realistic cost per step, meaningless hits and image metrics
    timing_only: bool = False
    #: importable module name -> how to install it; checked before any model is built
    requires: Mapping[str, str] = field(default_factory=dict)
    #: this source's own ``--fbcache-*`` options; their values are read with ``config.option(spec)``
    options: tuple[OptionSpec, ...] = ()
    #: option rules of this source (device, ...): raise ConfigError
    validate: Callable[[HarnessConfig], None] = _nothing
    #: environment checks (weights present, ...): raise ConfigError
    preflight: Callable[[HarnessConfig], None] = _nothing
    #: image files are named ``<stem>_t0.1_first.png`` (the reference experiment's names)
    image_stem: str = "flux"
    #: the user types the name itself (False for a catch-all such as "a directory or hub id")
    typed_by_name: bool = True
    #: ``load`` builds its pipeline around the transformer of a load-time quantization mode
    #: (:func:`fbcache.quant.transformer_for`); False: such modes are refused with this source
    takes_transformer: bool = False


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


#: the torch.compile backend; tests switch it to "aot_eager" (no C++ build) through their plugin
COMPILE_BACKEND = "inductor"
FULL_WITH_CACHE_REASON = ("the cache decision is data-dependent and runs outside compiled code, so a "
                          "whole-transformer graph breaks at every step's decision; use regional")


def compile_stance(name: str) -> Any:
    """``torch.compiler.set_stance(name)`` as a context, or nothing where this torch has no stances."""
    import torch

    set_stance = getattr(getattr(torch, "compiler", None), "set_stance", None)
    return set_stance(name) if set_stance is not None else contextlib.nullcontext()


def repeated_blocks(transformer: Any) -> list[Any]:
    """FLUX's repeated blocks: the double-stream blocks, then the single-stream blocks."""
    blocks: list[Any] = []
    for name in ("transformer_blocks", "single_transformer_blocks"):
        blocks.extend(getattr(transformer, name, None) or [])
    if not blocks:
        raise ValueError(f"{type(transformer).__name__} has no transformer_blocks/single_transformer_blocks to compile")
    return blocks


#: the modules FLUX's transformer runs every step outside its repeated blocks, in call order
IO_MODULES = ("x_embedder", "time_text_embed", "context_embedder", "pos_embed", "norm_out", "proj_out")


def io_modules(transformer: Any) -> list[tuple[str, Any]]:
    """The :data:`IO_MODULES` this transformer has, by name."""
    return [(name, module) for name in IO_MODULES if (module := getattr(transformer, name, None)) is not None]


def _same_layout(compiled: Callable[..., Any]) -> Callable[..., Any]:
    """``compiled``, called with every tensor argument in the contiguous layout (see the module docstring)."""
    import torch

    def canonical(value: Any) -> Any:
        return value.contiguous().view(value.shape) if isinstance(value, torch.Tensor) else value

    def call(*args: Any, **kwargs: Any) -> Any:
        return compiled(*(canonical(a) for a in args), **{k: canonical(v) for k, v in kwargs.items()})

    return call


def compile_recipe(compile_mode: str) -> str | None:
    """What ``compile_transformer`` does for this mode, for ``machine_info`` (None for ``none``)."""
    recipes = {
        "regional": f"torch.compile(block.forward, fullgraph=True, backend={COMPILE_BACKEND!r}) on every block of "
                    "transformer_blocks and single_transformer_blocks, before any enable_cache",
        "regional+io": f"torch.compile(forward, fullgraph=True, backend={COMPILE_BACKEND!r}) on every block of "
                       "transformer_blocks and single_transformer_blocks and on each of "
                       f"{', '.join(IO_MODULES)} (tensor arguments in contiguous layout), before any enable_cache",
        "full": f"torch.compile(transformer.forward, fullgraph=True, backend={COMPILE_BACKEND!r})",
    }
    return recipes.get(compile_mode)


def compile_transformer(transformer: Any, compile_mode: str) -> int:
    """Wrap the transformer (or its blocks) in torch.compile; compilation itself happens on the first call.

    Returns how many functions were wrapped (0 for ``none``).
    """
    import torch

    if compile_mode == "none":
        return 0
    if compile_mode in ("regional", "regional+io"):
        blocks = repeated_blocks(transformer)
        for block in blocks:
            block.forward = torch.compile(block.forward, fullgraph=True, backend=COMPILE_BACKEND)
        if compile_mode == "regional":
            return len(blocks)
        modules = io_modules(transformer)
        for _, module in modules:
            module.forward = _same_layout(torch.compile(module.forward, fullgraph=True, backend=COMPILE_BACKEND))
        return len(blocks) + len(modules)
    if compile_mode == "full":
        transformer.forward = torch.compile(transformer.forward, fullgraph=True, backend=COMPILE_BACKEND)
        return 1
    raise ValueError(f"unknown compile mode {compile_mode!r}; accepted: {', '.join(COMPILE_MODES)}")


def load_model(config: HarnessConfig) -> LoadedModel:
    """Build or load the model named by ``config.model``, on ``config.device``, quantized, then compiled.

    Compilation wraps the blocks here, before any cache backend exists, so the cache hooks wrap the
    compiled forwards (:func:`compile_transformer`); the compiling itself happens on the first call,
    in the untimed warm-up.
    """
    loaded = source_for(config.model).load(config)
    mode = quant.get(config.quant)
    if mode.apply is not None:
        mode.apply(loaded.pipe.transformer, config)
    compile_transformer(loaded.pipe.transformer, config.compile)
    return loaded


__all__ = ["COMPILE_BACKEND", "IO_MODULES", "LoadedModel", "ModelSource", "all_sources", "compile_recipe",
           "compile_transformer", "io_modules", "load_model", "named_sources", "register", "repeated_blocks",
           "source_for", "unregister"]
