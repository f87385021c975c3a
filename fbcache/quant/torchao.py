"""torchao weight quantization of the transformer, applied after load with ``quantize_``.

The configs are the ones measured on the GPUs page of the docs:
``set_inductor_config=False`` leaves torch.compile's global settings alone, so eager and compiled
runs of the same mode differ only by compilation. int4 uses the ``tile_packed_to_4d`` packing
(tinygemm kernels, CUDA sm_80+); torchao's default int4 packing needs the separate ``mslk`` package.
The config's ``repr`` - every field, defaults included - is the fingerprint's ``quant_config``.

``--fbcache-quant-filter blocks`` quantizes only the repeated blocks' linear layers: the embedders and
output layers, small matrices run once per step whatever the cache decides, stay in the model's dtype
(whether that is faster under fp8 is measured, not assumed: docs/gpus.md). It is named in
``quant_config``; the default ``all`` leaves ``quant_config`` as it always was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fbcache.config import HarnessConfig, OptionSpec, parse_choice
from fbcache.errors import MissingDependencyError
from fbcache.quant import QuantMode

TORCHAO_HINT = "pip install 'fbcache[torchao]'"
#: ``--fbcache-quant-filter`` values
QUANT_FILTERS = ("all", "blocks")
#: the transformer's lists of repeated blocks: ``blocks`` quantizes the linear layers under these only
BLOCK_LISTS = ("transformer_blocks", "single_transformer_blocks")
FILTER = OptionSpec("quant_filter", "torchao modes: which linear layers are quantized: all (every nn.Linear, "
                    "torchao's default) or blocks (only those of the repeated blocks; the embedders and output "
                    "layers stay in the model's dtype)", "all", "all|blocks", nightly=True,
                    parse=lambda option, raw: parse_choice(option, raw, QUANT_FILTERS))
FILTER_NOTE = "; quantized: the linear layers of transformer_blocks and single_transformer_blocks only"


def in_blocks(module: Any, fqn: str) -> bool:
    """quantize_'s filter for ``blocks``: a linear layer inside one of :data:`BLOCK_LISTS`."""
    import torch

    return isinstance(module, torch.nn.Linear) and fqn.split(".", 1)[0] in BLOCK_LISTS


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
        if config.option(FILTER) == "blocks":
            quantize_(transformer, built, filter_fn=in_blocks)
        else:
            quantize_(transformer, built)

    def settings(config: HarnessConfig) -> str:
        return repr(_built(name, make)) + (FILTER_NOTE if config.option(FILTER) == "blocks" else "")

    return QuantMode(name, summary, options=(FILTER,), requires={"torchao": TORCHAO_HINT}, apply=apply,
                     settings=settings, **kwargs)


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
