"""nunchaku's SVDQuant int4/fp4 transformer, loaded at load time instead of the model's own.

The transformer comes from ``--fbcache-nunchaku-transformer`` (a local ``.safetensors`` file or a
hub path) at the precision nunchaku's own ``get_precision`` picks (``--fbcache-nunchaku-precision
auto``: fp4 on sm_120, else int4). Which ``nunchaku`` is installed and whether this GPU has its
kernels is answered by :mod:`fbcache.backends.nunchaku`, before any weights load.
"""

from __future__ import annotations

from typing import Any

from fbcache import quant
from fbcache.backends import nunchaku as engine
from fbcache.config import HarnessConfig, OptionSpec, parse_choice
from fbcache.errors import MISSING, ConfigError

PRECISIONS = ("auto", "int4", "fp4")

TRANSFORMER = OptionSpec("nunchaku_transformer", "svdq-int4/fp4 transformer: a local .safetensors file or hub path",
                         "", "PATH", nightly=True)
PRECISION = OptionSpec("nunchaku_precision", "auto (as nunchaku's get_precision: fp4 on sm_120, else int4), int4, fp4",
                       "auto", "PRECISION", parse=lambda option, raw: parse_choice(option, raw, PRECISIONS))


def validate(config: HarnessConfig) -> None:
    if not config.option(TRANSFORMER):
        raise ConfigError(TRANSFORMER.cli, MISSING, "a local svdq-int4/fp4 .safetensors file or hub path",
                          "--fbcache-quant nunchaku needs the quantized transformer's weights")


def preflight(config: HarnessConfig) -> None:
    """The real engine is installed (a stand-in cannot quantize) and has kernels for this GPU."""
    accepted = ", ".join(quant.runnable_on(config.device))
    engine.check_engine("--fbcache-quant", config.quant, accepted, to_quantize=True)
    engine.check_kernels("--fbcache-quant", config.quant, accepted, config.device)


def load_transformer(config: HarnessConfig) -> Any:
    """nunchaku's SVDQuant transformer, precision chosen as nunchaku's own get_precision does."""
    import torch
    from nunchaku import NunchakuFluxTransformer2dModel
    from nunchaku.utils import get_precision

    path = config.option(TRANSFORMER)
    precision = get_precision(config.option(PRECISION), config.device, path)
    dtype = torch.bfloat16 if config.device.startswith("cuda") else torch.float32
    return NunchakuFluxTransformer2dModel.from_pretrained(path, device=config.device, torch_dtype=dtype,
                                                          precision=precision)


MODES = (
    quant.QuantMode(
        "nunchaku", "nunchaku SVDQuant int4/fp4 transformer (needs --fbcache-nunchaku-transformer)",
        options=(TRANSFORMER, PRECISION), cuda_only=True, hardware_note="nunchaku needs a CUDA GPU",
        validate=validate, preflight=preflight, load_transformer=load_transformer,
        weights=lambda config: config.option(TRANSFORMER), versions=lambda: {"nunchaku": engine.detect().label},
        compile_modes=("none",),
        compile_note="nunchaku's SVDQuant transformer runs its own CUDA kernels, not torch.compile'd code",
    ),
)
