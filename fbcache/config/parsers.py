"""Parsers of single option values: each turns a raw string into a value or raises ConfigError.

Every parser takes the option's name first, so its error names exactly what the user typed
(``--fbcache-steps`` or ``FBCACHE_STEPS``) and the values it accepts.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from pathlib import Path

from fbcache.errors import ConfigError


def parse_thresholds(option: str, raw: str) -> tuple[float, ...]:
    """'0 0.05,0.1' -> (0.0, 0.05, 0.1): sorted, de-duplicated, finite and >= 0."""
    accepted = "numbers >= 0, separated by spaces or commas, e.g. '0 0.05 0.1'"
    tokens = [t for t in re.split(r"[,\s]+", raw.strip()) if t]
    if not tokens:
        raise ConfigError(option, raw, accepted, "no thresholds given")
    values = []
    for token in tokens:
        try:
            value = float(token)
        except ValueError:
            raise ConfigError(option, token, accepted, "not a number") from None
        if math.isnan(value) or math.isinf(value):
            raise ConfigError(option, token, accepted, "not finite")
        if value < 0:
            raise ConfigError(option, token, accepted, "negative")
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


def parse_resolution(option: str, raw: str) -> tuple[int, int]:
    """'1024' or '1024x768' (width x height), each a positive multiple of 16."""
    accepted = "N or WxH, each a positive multiple of 16 (FLUX: VAE factor 8 x 2x2 patches), e.g. 1024 or 1024x768"
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", str(raw))
    if not match:
        raise ConfigError(option, raw, accepted, "not N or WxH")
    width = int(match.group(1))
    height = int(match.group(2) or match.group(1))
    for value in (width, height):
        if value <= 0 or value % 16:
            raise ConfigError(option, raw, accepted, f"{value} is not a positive multiple of 16")
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


def parse_device(option: str, raw: str, cuda_available: Callable[[], bool], cuda_count: Callable[[], int]) -> str:
    accepted = "auto, cpu, cuda, cuda:N"
    value = str(raw).strip().lower()
    if value == "auto":
        return "cuda" if cuda_available() else "cpu"
    if value == "cpu":
        return value
    match = re.fullmatch(r"cuda(?::(\d+))?", value)
    if not match:
        raise ConfigError(option, raw, accepted)
    if not cuda_available():
        raise ConfigError(option, raw, "auto, cpu", "CUDA was requested but torch sees no CUDA device")
    if match.group(1) is not None and int(match.group(1)) >= cuda_count():
        raise ConfigError(option, raw, f"cuda:0..cuda:{cuda_count() - 1}", "no such CUDA device")
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


def parse_threads(option: str, raw: str) -> int | None:
    """'auto' (torch's default: None) or a whole number >= 1."""
    if str(raw).strip().lower() == "auto":
        return None
    try:
        return parse_int(option, raw, 1)
    except ConfigError:
        raise ConfigError(option, raw, "auto or a whole number >= 1", "not a thread count") from None


def parse_bool(option: str, raw: str | bool) -> bool:
    if isinstance(raw, bool):
        return raw
    value = str(raw).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(option, raw, "true/false, yes/no, 1/0, on/off")
