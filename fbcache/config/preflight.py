"""Checks that need the environment (packages, GPU), run before any model is built."""

from __future__ import annotations

import importlib.util
from typing import Callable

from fbcache.config.harness import HarnessConfig
from fbcache.errors import ConfigError
from fbcache.backends.nunchaku_engine import INSTALL_HINT, NunchakuEngine, detect, precision_for_capability


def _capability(device: str) -> tuple[int, int]:
    import torch

    index = int(device.split(":")[1]) if ":" in device else 0
    return torch.cuda.get_device_capability(index)


def check_environment(
    config: HarnessConfig,
    engine: NunchakuEngine | None = None,
    capability: Callable[[str], tuple[int, int]] = _capability,
    has_module: Callable[[str], bool] = lambda name: importlib.util.find_spec(name) is not None,
) -> None:
    """Raise ConfigError for anything that would fail later, once weights are already loading."""
    if config.model == "tiny":
        from fbcache.models.tiny import TINY_WEIGHTS

        if not TINY_WEIGHTS.is_file():
            raise ConfigError("--fbcache-model", "tiny", "tiny-random, flux-random, a directory or hub id",
                              "the trained tiny weights are missing from this installation")

    if config.quant.startswith("torchao") and not has_module("torchao"):
        raise ConfigError("--fbcache-quant", config.quant, "none, nunchaku",
                          "torchao is not installed: pip install 'fbcache[torchao]'")
    if config.quant == "torchao-fp8":
        major, minor = capability(config.device)
        if (major, minor) < (8, 9):
            raise ConfigError("--fbcache-quant", config.quant, "none, torchao-int8wo",
                              f"float8 needs sm_89 or newer; this GPU is sm_{major}{minor}")

    needs_engine = config.quant == "nunchaku" or config.cache_backend == "nunchaku"
    if not needs_engine:
        return
    engine = engine or detect()
    option = "--fbcache-quant" if config.quant == "nunchaku" else "--fbcache-cache-backend"
    value = config.quant if config.quant == "nunchaku" else config.cache_backend
    if engine.status == "absent":
        raise ConfigError(option, value, "the alternatives without nunchaku", f"nunchaku is not installed: {INSTALL_HINT}")
    if engine.status == "unrelated":
        raise ConfigError(option, value, "the alternatives without nunchaku",
                          f"the installed 'nunchaku' {engine.version} is an unrelated PyPI package; "
                          f"pip uninstall nunchaku, then {INSTALL_HINT}")
    if engine.status == "standin":
        if config.quant == "nunchaku":
            raise ConfigError(option, value, "none, torchao-int8wo, torchao-fp8",
                              "only fbcache's test stand-in for nunchaku is installed; it cannot quantize")
        return
    if config.quant != "nunchaku":
        raise ConfigError("--fbcache-cache-backend", config.cache_backend, "diffusers",
                          "nunchaku's cache adapter needs nunchaku's transformer: add --fbcache-quant nunchaku")
    try:
        precision_for_capability(capability(config.device))
    except ValueError as exc:
        raise ConfigError(option, value, "none, torchao-int8wo, torchao-fp8", str(exc)) from None
