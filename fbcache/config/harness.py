"""Validated harness configuration: every user-facing option is parsed and checked here.

All checks run before any model is built, so bad input costs nothing and names the option
and the values it accepts (see :class:`fbcache.errors.ConfigError`).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from fbcache.errors import ConfigError

SEED_THRESHOLDS: tuple[float, ...] = (0.0, 0.01, 0.05, 0.1, 0.2, 0.5, 0.8)
DEFAULT_PROMPT = "A cute panda holding a sign that says hello world"

BUILTIN_MODELS = ("tiny", "tiny-random", "flux-random")
QUANTIZATIONS = ("none", "torchao-int8wo", "torchao-fp8", "nunchaku")
CACHE_BACKENDS = ("diffusers", "nunchaku")
NUNCHAKU_PRECISIONS = ("auto", "int4", "fp4")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

#: steps and resolution used when the user sets none, per model kind
MODEL_DEFAULTS: dict[str, tuple[int, tuple[int, int]]] = {
    "tiny": (28, (64, 64)),
    "tiny-random": (28, (64, 64)),
    "flux-random": (28, (1024, 1024)),
    "pretrained": (28, (1024, 1024)),
}


def model_kind(model: str) -> str:
    """'tiny', 'tiny-random', 'flux-random' or 'pretrained' (a local directory or hub id)."""
    return model if model in BUILTIN_MODELS else "pretrained"


@dataclass(frozen=True)
class HarnessConfig:
    """What one benchmark session measures. Immutable: one session, one configuration."""

    model: str = "tiny"
    quant: str = "none"
    cache_backend: str = "diffusers"
    nunchaku_transformer: str | None = None
    nunchaku_precision: str = "auto"
    thresholds: tuple[float, ...] = SEED_THRESHOLDS
    steps: int = 28
    height: int = 64
    width: int = 64
    prompt: str = DEFAULT_PROMPT
    seed: int = 0
    rounds: int = 3
    warmup_rounds: int = 1
    output_dir: Path = Path("fbcache-results")
    bounds: str = "auto"
    calibrate: Path | None = None
    calibrate_speedup_margin: float = 0.15
    calibrate_ssim_margin: float = 0.02
    device: str = "cpu"
    force_compare: bool = False
    selfcheck: bool = False
    interleave: bool = True
    #: torch threads for CPU runs; None leaves torch's default (and GPU runs are never changed)
    threads: int | None = 1

    @property
    def kind(self) -> str:
        return model_kind(self.model)

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def timing_only(self) -> bool:
        """Random full-size weights: realistic cost per step, unrealistic cache behaviour."""
        return self.kind == "flux-random"


# ---------------------------------------------------------------- parsers of single values


def parse_thresholds(raw: str) -> tuple[float, ...]:
    """'0 0.05,0.1' -> (0.0, 0.05, 0.1): sorted, de-duplicated, finite and >= 0."""
    accepted = "numbers >= 0, separated by spaces or commas, e.g. '0 0.05 0.1'"
    tokens = [t for t in re.split(r"[,\s]+", raw.strip()) if t]
    if not tokens:
        raise ConfigError("--fbcache-thresholds", raw, accepted, "no thresholds given")
    values = []
    for token in tokens:
        try:
            value = float(token)
        except ValueError:
            raise ConfigError("--fbcache-thresholds", token, accepted, "not a number") from None
        if math.isnan(value) or math.isinf(value):
            raise ConfigError("--fbcache-thresholds", token, accepted, "not finite")
        if value < 0:
            raise ConfigError("--fbcache-thresholds", token, accepted, "negative")
        values.append(value)
    return tuple(sorted(set(values)))


def parse_int(option: str, raw: str, minimum: int) -> int:
    accepted = f"a whole number >= {minimum}"
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(option, raw, accepted, "not a whole number") from None
    if value < minimum:
        raise ConfigError(option, raw, accepted, f"less than {minimum}")
    return value


def parse_resolution(raw: str) -> tuple[int, int]:
    """'1024' or '1024x768' (width x height), each a positive multiple of 16."""
    accepted = "N or WxH, each a positive multiple of 16 (FLUX: VAE factor 8 x 2x2 patches), e.g. 1024 or 1024x768"
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", str(raw))
    if not match:
        raise ConfigError("--fbcache-resolution", raw, accepted, "not N or WxH")
    width = int(match.group(1))
    height = int(match.group(2) or match.group(1))
    for value in (width, height):
        if value <= 0 or value % 16:
            raise ConfigError("--fbcache-resolution", raw, accepted, f"{value} is not a positive multiple of 16")
    return width, height


def parse_margin(option: str, raw: str, upper: float) -> float:
    accepted = f"a number in [0, {upper})"
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(option, raw, accepted, "not a number") from None
    if not 0 <= value < upper:
        raise ConfigError(option, raw, accepted, "out of range")
    return value


def parse_choice(option: str, raw: str, choices: tuple[str, ...]) -> str:
    value = str(raw).strip().lower()
    if value not in choices:
        raise ConfigError(option, raw, ", ".join(choices))
    return value


def parse_model(raw: str) -> str:
    accepted = f"{', '.join(BUILTIN_MODELS)}, a local diffusers FLUX directory, or a hub id like org/name"
    value = str(raw).strip()
    if value in BUILTIN_MODELS:
        return value
    path = Path(value).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ConfigError("--fbcache-model", raw, accepted, "directory has no model_index.json")
        return str(path.resolve())
    if value.startswith((".", "/", "~")):
        raise ConfigError("--fbcache-model", raw, accepted, "no such directory")
    if _HUB_ID.match(value):
        return value
    raise ConfigError("--fbcache-model", raw, accepted, "unknown model")


def parse_device(raw: str, cuda_available: Callable[[], bool], cuda_count: Callable[[], int]) -> str:
    accepted = "auto, cpu, cuda, cuda:N"
    value = str(raw).strip().lower()
    if value == "auto":
        return "cuda" if cuda_available() else "cpu"
    if value == "cpu":
        return value
    match = re.fullmatch(r"cuda(?::(\d+))?", value)
    if not match:
        raise ConfigError("--fbcache-device", raw, accepted)
    if not cuda_available():
        raise ConfigError("--fbcache-device", raw, "auto, cpu", "CUDA was requested but torch sees no CUDA device")
    if match.group(1) is not None and int(match.group(1)) >= cuda_count():
        raise ConfigError("--fbcache-device", raw, f"cuda:0..cuda:{cuda_count() - 1}", "no such CUDA device")
    return value


def check_writable_dir(option: str, raw: str) -> Path:
    """The directory, resolved, if it exists writable or could be created; no side effects."""
    accepted = "a directory that exists and is writable, or can be created"
    path = Path(raw).expanduser().resolve()
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(option, raw, accepted, f"{probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(option, raw, accepted, f"{probe} is not writable")
    return path


def parse_threads(raw: str) -> int | None:
    """'auto' (torch's default) or a whole number >= 1."""
    if str(raw).strip().lower() == "auto":
        return None
    try:
        return parse_int("--fbcache-threads", raw, 1)
    except ConfigError:
        raise ConfigError("--fbcache-threads", raw, "auto or a whole number >= 1", "not a thread count") from None


def parse_bool(option: str, raw: str | bool) -> bool:
    if isinstance(raw, bool):
        return raw
    value = str(raw).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(option, raw, "true/false, yes/no, 1/0, on/off")


# ---------------------------------------------------------------- the whole configuration


def _torch_cuda() -> tuple[Callable[[], bool], Callable[[], int]]:
    import torch

    return torch.cuda.is_available, torch.cuda.device_count


def build_config(
    raw: Mapping[str, str | bool | None],
    cuda: tuple[Callable[[], bool], Callable[[], int]] | None = None,
) -> HarnessConfig:
    """Turn raw option strings (already resolved from CLI, env and ini) into a checked config.

    ``raw`` is keyed by option name without prefix (``"model"``, ``"thresholds"``, ...); a missing
    or ``None`` value means "use the default". ``cuda`` lets tests fake the CUDA probe.
    """

    def get(name: str) -> str | bool | None:
        value = raw.get(name)
        return None if value is None or value == "" else value

    model = parse_model(get("model") or "tiny")
    kind = model_kind(model)
    default_steps, (default_w, default_h) = MODEL_DEFAULTS[kind]
    quant = parse_choice("--fbcache-quant", get("quant") or "none", QUANTIZATIONS)
    backend = parse_choice("--fbcache-cache-backend", get("cache_backend") or "diffusers", CACHE_BACKENDS)
    precision = parse_choice("--fbcache-nunchaku-precision", get("nunchaku_precision") or "auto", NUNCHAKU_PRECISIONS)
    thresholds = parse_thresholds(str(get("thresholds"))) if get("thresholds") is not None else SEED_THRESHOLDS
    steps = parse_int("--fbcache-steps", get("steps"), 1) if get("steps") is not None else default_steps
    width, height = parse_resolution(str(get("resolution"))) if get("resolution") is not None else (default_w, default_h)
    seed = parse_int("--fbcache-seed", get("seed"), 0) if get("seed") is not None else 0
    rounds = parse_int("--fbcache-rounds", get("rounds"), 1) if get("rounds") is not None else 3
    warmup = parse_int("--fbcache-warmup-rounds", get("warmup_rounds"), 0) if get("warmup_rounds") is not None else 1
    prompt = str(get("prompt") or DEFAULT_PROMPT)
    speedup_margin = parse_margin("--fbcache-calibrate-speedup-margin", str(get("calibrate_speedup_margin") or 0.15), 1.0)
    ssim_margin = parse_margin("--fbcache-calibrate-ssim-margin", str(get("calibrate_ssim_margin") or 0.02), 1.0)

    if kind == "flux-random" and quant == "nunchaku":
        raise ConfigError("--fbcache-quant", quant, "none, torchao-int8wo, torchao-fp8",
                          "flux-random has no SVDQuant checkpoint; nunchaku needs --fbcache-nunchaku-transformer")
    nunchaku_transformer = get("nunchaku_transformer")
    if quant == "nunchaku" and not nunchaku_transformer:
        raise ConfigError("--fbcache-nunchaku-transformer", None,
                          "a local svdq-int4/fp4 .safetensors file or hub path", "required with --fbcache-quant nunchaku")
    if kind.startswith("tiny") and quant == "nunchaku":
        raise ConfigError("--fbcache-quant", quant, "none, torchao-int8wo, torchao-fp8",
                          "tiny models have no SVDQuant checkpoint")

    probe = cuda or _torch_cuda()
    device = parse_device(str(get("device") or "auto"), *probe)
    if kind == "flux-random" and not device.startswith("cuda"):
        raise ConfigError("--fbcache-device", device, "cuda, cuda:N",
                          "flux-random is the full-size FLUX.1 transformer (11.9B parameters); it needs a CUDA GPU")
    if quant == "torchao-fp8" and not device.startswith("cuda"):
        raise ConfigError("--fbcache-quant", quant, "none, torchao-int8wo", "float8 needs a CUDA GPU of sm_89 or newer")
    if quant == "nunchaku" and not device.startswith("cuda"):
        raise ConfigError("--fbcache-quant", quant, "none, torchao-int8wo", "nunchaku needs a CUDA GPU")

    output_dir = check_writable_dir("--fbcache-output-dir", str(get("output_dir") or "fbcache-results"))
    calibrate = get("calibrate")
    calibrate_path = None
    if calibrate:
        calibrate_path = Path(str(calibrate)).expanduser().resolve()
        check_writable_dir("--fbcache-calibrate", str(calibrate_path.parent))

    return HarnessConfig(
        model=model,
        quant=quant,
        cache_backend=backend,
        nunchaku_transformer=str(nunchaku_transformer) if nunchaku_transformer else None,
        nunchaku_precision=precision,
        thresholds=thresholds,
        steps=steps,
        width=width,
        height=height,
        prompt=prompt,
        seed=seed,
        rounds=rounds,
        warmup_rounds=warmup,
        output_dir=output_dir,
        bounds=str(get("bounds") or "auto"),
        calibrate=calibrate_path,
        calibrate_speedup_margin=speedup_margin,
        calibrate_ssim_margin=ssim_margin,
        device=device,
        force_compare=parse_bool("--fbcache-force-compare", get("force_compare") or False),
        selfcheck=parse_bool("--fbcache-selfcheck", get("selfcheck") or False),
        interleave=parse_bool("--fbcache-interleave", get("interleave") if get("interleave") is not None else True),
        threads=parse_threads(str(get("threads"))) if get("threads") is not None else 1,
    )
