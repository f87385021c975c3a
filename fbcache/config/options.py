"""The fbcache options: ONE table of the core options, and the parsers of single option values.

Every option ``name`` is available as ``--fbcache-<name>`` on the command line, as
``FBCACHE_<NAME>`` in the environment and as ``fbcache_<name>`` under ``[tool.pytest.ini_options]``
(command line > environment > ini > the table's default). ``fbcache nightly`` passes on the options
marked ``nightly``. Cache backends, quantization modes and model sources declare their own options
with the same :class:`OptionSpec`; :mod:`fbcache.configure` joins them to this table, adds one
``--fbcache-calibrate-<metric>-margin`` per image metric and lists the registries' choices in the
help of ``model``, ``quant``, ``cache_backend`` and ``calibrate_margin``.

Every parser takes the option's name first, so its error names exactly what the user typed
(``--fbcache-steps`` or ``FBCACHE_STEPS``) and the values it accepts.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fbcache.errors import ConfigError

DEFAULT_PROMPT = "A cute panda holding a sign that says hello world"
SEED_THRESHOLDS_TEXT = "0 0.01 0.05 0.1 0.2 0.5 0.8"
#: ``--fbcache-compile`` values (what each does: fbcache.models)
COMPILE_MODES = ("none", "regional", "full")
#: the help of an option whose choices a registry lists (fbcache.configure fills it in)
REGISTRY_HELP = "one of the registered choices"


@dataclass(frozen=True)
class OptionSpec:
    name: str
    help: str | Callable[[], str]
    #: the raw default, parsed like user input; "" means "none" or "derived" (see help)
    default: str
    metavar: str = "VALUE"
    flag: bool = False
    #: ``fbcache nightly --<name>`` passes it on to the sweep
    nightly: bool = False
    #: what ``--help`` names as the default when ``default`` is "" (derived, or nothing)
    default_help: str = "none"
    #: an extension's option: ``parse(option, raw)`` -> the value ``HarnessConfig.option`` gives (raise
    #: ConfigError naming ``option``); None: the text itself. An empty value is None, unparsed.
    parse: Callable[[str, str], Any] | None = None
    #: NAME=VALUE entries: the flag may be repeated; in the environment and the ini, comma-separated
    multiple: bool = False

    @property
    def cli(self) -> str:
        return "--fbcache-" + self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        return "fbcache_" + self.name

    @property
    def ini(self) -> str:
        return "fbcache_" + self.name

    @property
    def env(self) -> str:
        return "FBCACHE_" + self.name.upper()

    def help_text(self) -> str:
        return self.help() if callable(self.help) else self.help

    def value(self, raw: str | bool | None) -> Any:
        """The parsed value of a raw string (None or "": the default)."""
        text = self.default if raw is None or raw == "" else raw
        if text == "":
            return None
        return self.parse(self.cli, str(text)) if self.parse is not None else str(text)


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("model", REGISTRY_HELP, "tiny", "MODEL", nightly=True),
    OptionSpec("quant", REGISTRY_HELP, "none", "QUANT", nightly=True),
    OptionSpec("compile", "torch.compile the transformer once per session, outside the timed rounds: none; "
               "regional (each repeated block's forward, fullgraph, before the cache hooks; works with the "
               "cache); full (the whole transformer forward; uncached benchmarks only). Timed rounds that "
               "recompile fail their benchmark", "none", "MODE", nightly=True),
    OptionSpec("cache_backend", REGISTRY_HELP, "diffusers", "BACKEND", nightly=True),
    OptionSpec("thresholds", "residual_diff_threshold values to sweep", SEED_THRESHOLDS_TEXT, "LIST", nightly=True),
    OptionSpec("steps", "denoising steps", "", "N", nightly=True, default_help="the model's, 28"),
    OptionSpec("resolution", "N or WxH, multiples of 16", "", "RES", nightly=True,
               default_help="the model's, 64 for tiny models, 1024 otherwise"),
    OptionSpec("prompt", "the prompt (when no --fbcache-prompts set is given)", DEFAULT_PROMPT, "TEXT"),
    OptionSpec("prompts", "a prompt set: default (8 shipped prompts), a shipped set name, or a .txt (one prompt "
               "per line), .toml or .json file (prompts with optional seeds); one benchmark per threshold and prompt",
               "", "FILE", nightly=True, default_help="none: the one --fbcache-prompt"),
    OptionSpec("shard", "run one shard of the prompt set: auto (torchrun's RANK/WORLD_SIZE/LOCAL_RANK when set), "
               "off, or R/N (shard R of N, 0-based); merge the shards' runs with fbcache merge", "auto", "SHARD"),
    OptionSpec("seed", "generator seed", "0", "N"),
    OptionSpec("rounds", "timed generations per threshold", "3", "N", nightly=True),
    OptionSpec("warmup_rounds", "untimed generations per threshold before the timed ones", "1", "N"),
    OptionSpec("output_dir", "where images and the results table go", "fbcache-results", "DIR"),
    OptionSpec("bounds", "bounds profile: auto (the shipped profile that matches this run, if any), none, "
               "a profile name in the bounds directory, or a TOML path", "auto", "PROFILE", nightly=True),
    OptionSpec("bounds_dir", "where profile names are looked up", "", "DIR",
               default_help="benchmarks/bounds under the rootdir"),
    OptionSpec("calibrate", "write a bounds profile from this run to PATH (measured value minus the margins)",
               "", "PATH", default_help="none, no profile written"),
    OptionSpec("calibrate_speedup_margin", "relative margin below the measured speedup for --fbcache-calibrate",
               "0.15", "FRACTION"),
    OptionSpec("calibrate_margin", "per image metric, METRIC=DELTA: how far beyond the measured value "
               "--fbcache-calibrate puts the metric's bound", "", "METRIC=DELTA", multiple=True,
               default_help=REGISTRY_HELP),
    OptionSpec("device", "auto, cpu, cuda or cuda:N", "auto", "DEVICE", nightly=True),
    OptionSpec("force_compare", "let --benchmark-compare compare runs with different fingerprints", "false",
               flag=True),
    OptionSpec("interleave", "time the rounds interleaved: round 1 of the uncached baseline and of every threshold, "
               "then round 2 of each, the order rotated per round, so drift hits all alike and speedups pair "
               "generations timed next to each other (false: each threshold's rounds back to back)", "true",
               "BOOL", nightly=True),
    OptionSpec("threads", "torch threads for CPU runs (torch.set_num_threads), or auto to leave torch's default; "
               "1 keeps a CPU run from fighting other jobs for the cores", "1", "N", nightly=True),
    OptionSpec("clock", "what a round's time is: wall (time.perf_counter), cpu (time.process_time: the process's "
               "CPU time, which other jobs on the cores do not stretch; CPU devices only), or auto: cpu on a CPU "
               "device with a fixed --fbcache-threads, wall otherwise", "auto", "auto|wall|cpu", nightly=True),
    OptionSpec("selfcheck", "also time a bare loop of the same pipeline call after the uncached benchmark, "
               "to report the harness's own overhead", "false", flag=True),
)

BY_NAME: dict[str, OptionSpec] = {spec.name: spec for spec in OPTIONS}


# ------------------------------------------------------------------------------------ parsers


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
    accepted = f"a number in [0, {upper:g})" if math.isfinite(upper) else "a finite number >= 0"
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(option, raw, accepted, "not a number") from None
    if not 0 <= value < upper:
        raise ConfigError(option, raw, accepted, "out of range")
    return value


def parse_entries(option: str, raw: str, names: tuple[str, ...], parse: Callable[[str, str, str], Any],
                  what: str = "NAME") -> dict[str, Any]:
    """'a=1, b=2' -> {'a': parse(option, 'a', '1'), ...}: each NAME one of ``names``, at most once.

    ``parse(option, name, value)`` raises ConfigError; its error is given again naming the whole entry.
    """
    accepted = f"{what}=VALUE, {what} one of {', '.join(names) or '(none registered)'}; several separated by commas"
    found: dict[str, Any] = {}
    for entry in (e.strip() for e in str(raw).split(",") if e.strip()):
        name, equals, value = (part.strip() for part in entry.partition("="))
        if not equals or not value:
            raise ConfigError(option, entry, accepted, f"no {what}=VALUE")
        if name not in names:
            raise ConfigError(option, entry, accepted, f"no {what} {name!r}")
        if name in found:
            raise ConfigError(option, entry, accepted, f"{name} given twice")
        try:
            found[name] = parse(option, name, value)
        except ConfigError as exc:
            raise ConfigError(option, entry, f"{name}=VALUE, VALUE {exc.accepted}", exc.why) from None
    return found


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


def resolve_clock(option: str, raw: str, device: str, threads: int | None) -> str:
    """auto: the process's CPU time for a CPU run with a fixed thread count, whose wall time other jobs on
    the same cores stretch (a 2-core VM: generations of 0.36-47 s); wall time on a GPU, whose work is not
    the process's CPU time."""
    value = parse_choice(option, raw, ("auto", "wall", "cpu"))
    on_cpu = device.startswith("cpu")
    if value == "cpu" and not on_cpu:
        raise ConfigError(option, raw, "auto, wall", f"the device is {device}: its work is not this process's CPU time")
    if value == "auto":
        return "cpu" if on_cpu and threads is not None else "wall"
    return value
