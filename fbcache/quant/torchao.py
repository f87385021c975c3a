"""torchao weight quantization of the transformer, applied after load with ``quantize_``.

The configs are the ones measured on the GPUs page of the docs:
``set_inductor_config=False`` leaves torch.compile's global settings alone, so eager and compiled
runs of the same mode differ only by compilation. int4 uses the ``tile_packed_to_4d`` packing
(tinygemm kernels, CUDA sm_80+); torchao's default int4 packing needs the separate ``mslk`` package.
The config's ``repr`` - every field, defaults included - is the fingerprint's ``quant_config``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fbcache.config import HarnessConfig
from fbcache.errors import MissingDependencyError
from fbcache.quant import QuantMode

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


def _built(name: str, make: Callable[[], Any]) -> Any:
    """The torchao config object of a mode (MissingDependencyError without torchao)."""
    try:
        return make()
    except ImportError as exc:
        raise MissingDependencyError(f"{name} needs torchao: {TORCHAO_HINT} ({exc})") from exc


def _mode(name: str, summary: str, make: Callable[[], Any], **kwargs: Any) -> QuantMode:
    def apply(transformer: Any, config: HarnessConfig) -> None:
        """Quantize the transformer's linear layers in place."""
        built = _built(name, make)
        try:
            from torchao.quantization import quantize_
        except ImportError as exc:
            raise MissingDependencyError(f"{name} needs torchao: {TORCHAO_HINT} ({exc})") from exc
        quantize_(transformer, built)

    return QuantMode(name, summary, requires={"torchao": TORCHAO_HINT}, apply=apply,
                     settings=lambda config: repr(_built(name, make)), **kwargs)


_FLOAT8 = "float8 needs a CUDA GPU of sm_89 or newer"

MODES: tuple[QuantMode, ...] = (
    _mode("torchao-int8wo", "torchao int8 weight-only, per-row scales", _int8wo,
          cuda_compile_note="compiled int8 weight-only FLUX blocks never finished a generation on a GPU (measured: "
          "docs/gpus.md); run it eager"),
    _mode("torchao-int4wo", "torchao int4 weight-only, group size 128, tile_packed_to_4d packing "
          "(tinygemm; CUDA sm_80+)", _int4wo, cuda_only=True, min_capability=(8, 0),
          hardware_note="int4 tile_packed_to_4d (tinygemm) kernels need a CUDA GPU of sm_80 or newer"),
    _mode("torchao-fp8", "torchao float8 dynamic activation + float8 weight, per-row scales (sm_89+)",
          _fp8("row"), cuda_only=True, min_capability=(8, 9), hardware_note=_FLOAT8),
    _mode("torchao-fp8-tensor", "as torchao-fp8 with one scale per tensor (sm_89+)", _fp8("tensor"),
          cuda_only=True, min_capability=(8, 9), hardware_note=_FLOAT8),
)
