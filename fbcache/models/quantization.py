"""Weight quantization of the transformer with torchao (nunchaku quantizes at load time instead)."""

from __future__ import annotations

from typing import Any

from fbcache.errors import MissingDependencyError


def quantize_transformer(transformer: Any, quant: str) -> None:
    """Quantize the transformer's linear layers in place."""
    try:
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig,
            Int8WeightOnlyConfig,
            quantize_,
        )
    except ImportError as exc:
        raise MissingDependencyError(f"{quant} needs torchao: pip install 'fbcache[torchao]' ({exc})") from exc
    configs = {
        "torchao-int8wo": Int8WeightOnlyConfig,
        "torchao-fp8": Float8DynamicActivationFloat8WeightConfig,
    }
    quantize_(transformer, configs[quant]())
