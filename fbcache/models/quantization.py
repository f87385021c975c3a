"""Weight quantization of the transformer with torchao (nunchaku quantizes at load time instead).

Each ``--fbcache-quant`` mode is a :class:`QuantMode`: the torchao config it applies and what the
hardware must offer. The rules are checked before any weights load (``build_config`` for the
device, ``preflight`` for the GPU's compute capability), and the config's ``repr`` - every field,
defaults included - goes into ``machine_info`` and the fingerprint, so a changed torchao default
separates histories instead of mixing them.

The configs are the ones that ran on an H200 with torchao 0.18 (docs/results/h200-compile-2026-11-27/):
``set_inductor_config=False`` leaves torch.compile's global settings alone, so eager and compiled
runs of the same mode differ only by compilation. int4 uses the ``tile_packed_to_4d`` packing
(tinygemm kernels, CUDA sm_80+); torchao's default int4 packing needs the separate ``mslk`` package.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fbcache.errors import MissingDependencyError

TORCHAO_HINT = "pip install 'fbcache[torchao]'"


def _int8wo() -> Any:
    from torchao.quantization import Int8WeightOnlyConfig

    return Int8WeightOnlyConfig(version=2, set_inductor_config=False)


def _int4wo() -> Any:
    from torchao.quantization import Int4WeightOnlyConfig

    return Int4WeightOnlyConfig(group_size=128, int4_packing_format="tile_packed_to_4d", set_inductor_config=False)


def _fp8(granularity: str) -> Callable[[], Any]:
    def make() -> Any:
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig,
            PerRow,
            PerTensor,
        )

        chosen = PerRow() if granularity == "row" else PerTensor()
        return Float8DynamicActivationFloat8WeightConfig(granularity=chosen, set_inductor_config=False)

    return make


@dataclass(frozen=True)
class QuantMode:
    """One ``--fbcache-quant`` value: what it applies and what hardware it needs."""

    name: str
    #: one line for ``--help``
    summary: str
    #: builds the torchao config (imports torchao); None: nothing to apply here
    torchao_config: Callable[[], Any] | None = None
    #: runs only on a CUDA GPU
    cuda_only: bool = False
    #: lowest CUDA compute capability its kernels support
    min_capability: tuple[int, int] | None = None
    #: why, in the refusal message
    hardware_note: str = ""
    #: non-empty: refused with ``--fbcache-compile`` other than none on a CUDA GPU, and why (measured)
    cuda_compile_note: str = ""


MODES: tuple[QuantMode, ...] = (
    QuantMode("none", "no quantization (bf16 on a GPU, the model's dtype on a CPU)"),
    QuantMode("torchao-int8wo", "torchao int8 weight-only, per-row scales", _int8wo,
              cuda_compile_note="compiled int8 weight-only FLUX blocks never finished a generation on a GPU: on an "
              "H200 (torch 2.11, torchao 0.18, 2026-11-28) the regional compile took 50 s, then the first 1024x1024 "
              "generation ran for 14 minutes without finishing (eager: 6.7 s); run it eager"),
    QuantMode("torchao-int4wo", "torchao int4 weight-only, group size 128, tile_packed_to_4d packing "
              "(tinygemm; CUDA sm_80+)", _int4wo, cuda_only=True, min_capability=(8, 0),
              hardware_note="int4 tile_packed_to_4d (tinygemm) kernels need a CUDA GPU of sm_80 or newer"),
    QuantMode("torchao-fp8", "torchao float8 dynamic activation + float8 weight, per-row scales (sm_89+)",
              _fp8("row"), cuda_only=True, min_capability=(8, 9),
              hardware_note="float8 needs a CUDA GPU of sm_89 or newer"),
    QuantMode("torchao-fp8-tensor", "as torchao-fp8 with one scale per tensor (sm_89+)", _fp8("tensor"),
              cuda_only=True, min_capability=(8, 9), hardware_note="float8 needs a CUDA GPU of sm_89 or newer"),
    QuantMode("nunchaku", "nunchaku SVDQuant int4/fp4 transformer (needs --fbcache-nunchaku-transformer)",
              cuda_only=True, hardware_note="nunchaku needs a CUDA GPU"),
)

BY_NAME: dict[str, QuantMode] = {mode.name: mode for mode in MODES}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def mode(name: str) -> QuantMode:
    return BY_NAME[name]


def uses_torchao(name: str) -> bool:
    return BY_NAME[name].torchao_config is not None


def runnable_on(device: str, capability: tuple[int, int] | None = None) -> list[str]:
    """The modes this device can run (for the 'accepted' part of a refusal)."""
    names = []
    for candidate in MODES:
        if candidate.name == "nunchaku":
            continue
        if candidate.cuda_only and not device.startswith("cuda"):
            continue
        if candidate.min_capability and capability is not None and capability < candidate.min_capability:
            continue
        names.append(candidate.name)
    return names


def torchao_config(name: str) -> Any:
    """The torchao config object of a mode (raises MissingDependencyError without torchao)."""
    make = BY_NAME[name].torchao_config
    if make is None:
        raise ValueError(f"{name} is not a torchao mode")
    try:
        return make()
    except ImportError as exc:
        raise MissingDependencyError(f"{name} needs torchao: {TORCHAO_HINT} ({exc})") from exc


def config_repr(name: str) -> str | None:
    """``repr`` of the torchao config a mode applies, every field included; None when it applies none."""
    return repr(torchao_config(name)) if uses_torchao(name) else None


def quantize_transformer(transformer: Any, quant: str) -> str:
    """Quantize the transformer's linear layers in place; returns the applied config's repr."""
    config = torchao_config(quant)
    try:
        from torchao.quantization import quantize_
    except ImportError as exc:
        raise MissingDependencyError(f"{quant} needs torchao: {TORCHAO_HINT} ({exc})") from exc
    quantize_(transformer, config)
    return repr(config)
