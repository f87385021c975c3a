"""Quantization modes (``--fbcache-quant``): what a mode is, and the registry (one file per mode family).

A mode declares everything the harness does with it, before any weights load: its own options, the
packages it needs, the hardware it runs on (checked by ``build_config`` for the device and by the
preflight for the GPU's compute capability), how it applies, its versions for ``machine_info``, the
setting recorded in the fingerprint (``quant_config``: a changed default of the library separates
histories instead of mixing them) and the compile modes it works under. It applies in one of two ways:

- **after load** (``apply``): the model source builds its transformer, then the mode quantizes it
  in place (torchao's ``quantize_``);
- **at load time** (``load_transformer``): the mode loads a transformer of its own that the model
  source uses instead of building one; only a source with ``takes_transformer`` can, any other is
  refused before a model is built.

A family module defines ``MODES`` (a tuple of :class:`QuantMode`); a new family is one new file plus
one line in ``BUILTIN``, or a :func:`register` call. Modules listed here import no heavy library at
import time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fbcache import Registry
from fbcache.config import COMPILE_MODES, HarnessConfig, OptionSpec

BUILTIN = (
    "fbcache.quant.torchao",
    "fbcache.quant.nunchaku",
)


def _nothing(config: HarnessConfig) -> None:
    return None


def _no_versions() -> dict[str, str | None]:
    return {}


def _no_setting(config: HarnessConfig) -> str | None:
    return None


@dataclass(frozen=True)
class QuantMode:
    """One ``--fbcache-quant`` value: what it applies, what it needs and what it records."""

    name: str
    #: one line for ``--help``
    summary: str
    #: this mode's own ``--fbcache-*`` options; their values are read with ``config.option(spec)``
    options: tuple[OptionSpec, ...] = ()
    #: importable module name -> how to install it; checked before any model is built
    requires: Mapping[str, str] = field(default_factory=dict)
    #: runs only on a CUDA GPU
    cuda_only: bool = False
    #: lowest CUDA compute capability its kernels support
    min_capability: tuple[int, int] | None = None
    #: why, in the refusal message
    hardware_note: str = ""
    #: option rules of this mode alone: raise ConfigError (pure, no environment)
    validate: Callable[[HarnessConfig], None] = _nothing
    #: environment checks beyond ``requires`` (the library's release, the GPU): raise ConfigError
    preflight: Callable[[HarnessConfig], None] = _nothing
    #: after load: ``apply(transformer, config)`` quantizes the built transformer in place
    apply: Callable[[Any, HarnessConfig], None] | None = None
    #: at load time: ``load_transformer(config)`` -> the transformer the model source uses instead of its own
    load_transformer: Callable[[HarnessConfig], Any] | None = None
    #: the weights ``load_transformer`` reads (a path or hub id), part of the model's digest
    weights: Callable[[HarnessConfig], str | None] = _no_setting
    #: library versions recorded in ``machine_info["fbcache"]["versions"]``
    versions: Callable[[], dict[str, str | None]] = _no_versions
    #: the fingerprint's ``quant_config``: every setting of what it applies (None: nothing recorded)
    settings: Callable[[HarnessConfig], str | None] = _no_setting
    #: ``--fbcache-compile`` modes it works under; anything else is refused with ``compile_note``
    compile_modes: tuple[str, ...] = COMPILE_MODES
    compile_note: str = ""
    #: non-empty: refused with a compile mode other than none on a CUDA GPU, and why (measured)
    cuda_compile_note: str = ""


NONE = QuantMode("none", "no quantization (bf16 on a GPU, the model's dtype on a CPU)")

_REGISTRY: Registry[QuantMode] = Registry(BUILTIN, "MODES", core=(NONE,))
register = _REGISTRY.register
unregister = _REGISTRY.unregister
get = _REGISTRY.get
names = _REGISTRY.names
all_modes = _REGISTRY.all


def runnable_on(device: str, capability: tuple[int, int] | None = None) -> list[str]:
    """The modes this device can run without weights of their own (the 'accepted' part of a refusal)."""
    names = []
    for candidate in all_modes():
        if candidate.load_transformer is not None:
            continue
        if candidate.cuda_only and not device.startswith("cuda"):
            continue
        if candidate.min_capability and capability is not None and capability < candidate.min_capability:
            continue
        names.append(candidate.name)
    return names


def transformer_for(config: HarnessConfig) -> Any | None:
    """The transformer a load-time mode loads for ``config``; None when the mode applies after load."""
    mode = get(config.quant)
    return mode.load_transformer(config) if mode.load_transformer is not None else None


__all__ = ["NONE", "QuantMode", "all_modes", "get", "names", "register", "runnable_on", "transformer_for",
           "unregister"]
