"""Checks that need the environment (packages, GPU), run before any model is built.

The rules come from the registries: the chosen model source and cache backend each declare the
packages they need and their own environment checks, so this module names none of them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping

from fbcache import backends, models
from fbcache.config.harness import HarnessConfig
from fbcache.errors import ConfigError
from fbcache.models import quantization


def _capability(device: str) -> tuple[int, int]:
    import torch

    index = int(device.split(":")[1]) if ":" in device else 0
    return torch.cuda.get_device_capability(index)


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def check_requirements(option: str, value: str, requires: Mapping[str, str],
                       has_module: Callable[[str], bool] = _has_module) -> None:
    """Every required module importable, or a ConfigError that says how to install it."""
    for module, hint in requires.items():
        if not has_module(module):
            raise ConfigError(option, value, "another value whose packages are installed",
                              f"{module} is not installed: {hint}")


def check_environment(
    config: HarnessConfig,
    capability: Callable[[str], tuple[int, int]] = _capability,
    has_module: Callable[[str], bool] = _has_module,
) -> None:
    """Raise ConfigError for anything that would fail later, once weights are already loading."""
    source = models.source_for(config.model)
    check_requirements("--fbcache-model", config.model, source.requires, has_module)
    source.preflight(config)

    mode = quantization.mode(config.quant)
    if quantization.uses_torchao(config.quant) and not has_module("torchao"):
        raise ConfigError("--fbcache-quant", config.quant, "none, nunchaku",
                          f"torchao is not installed: {quantization.TORCHAO_HINT}")
    if mode.min_capability is not None and config.device.startswith("cuda"):
        major, minor = capability(config.device)
        if (major, minor) < mode.min_capability:
            raise ConfigError("--fbcache-quant", config.quant,
                              ", ".join(quantization.runnable_on(config.device, (major, minor))),
                              f"{mode.hardware_note}; this GPU is sm_{major}{minor}")
    if config.quant == "nunchaku":
        from fbcache.backends.nunchaku import check_engine

        check_engine(config, "--fbcache-quant", config.quant)

    backend = backends.get(config.cache_backend)
    check_requirements("--fbcache-cache-backend", config.cache_backend, backend.requires, has_module)
    backend.preflight(config)
