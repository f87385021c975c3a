"""The fbcache options: ONE table, read by pytest, the environment, the ini file, the config and nightly.

Every option ``name`` is available as ``--fbcache-<name>`` on the command line, as
``FBCACHE_<NAME>`` in the environment and as ``fbcache_<name>`` under ``[tool.pytest.ini_options]``
(command line > environment > ini > the table's default). :class:`~fbcache.config.harness.HarnessConfig`
takes its defaults from this table, and ``fbcache nightly`` passes on the options marked ``nightly``.
Choices that come from a registry (models, cache backends) are listed from the registry itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fbcache.models import compile as compile_modes
from fbcache.models import quantization

DEFAULT_PROMPT = "A cute panda holding a sign that says hello world"
SEED_THRESHOLDS_TEXT = "0 0.01 0.05 0.1 0.2 0.5 0.8"
QUANTIZATIONS = quantization.NAMES
COMPILE_MODES = compile_modes.MODES
NUNCHAKU_PRECISIONS = ("auto", "int4", "fp4")


def _model_help() -> str:
    from fbcache import models

    named = ", ".join(f"{s.name} ({s.summary})" for s in models.all_sources() if s.typed_by_name)
    return f"{named}; or a local diffusers FLUX directory, or a hub id"


def _quant_help() -> str:
    return "; ".join(f"{mode.name}: {mode.summary}" for mode in quantization.MODES)


def _backend_help() -> str:
    from fbcache import backends

    return "; ".join(f"{name}: {backends.get(name).summary}" for name in backends.names())


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


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("model", _model_help, "tiny", "MODEL", nightly=True),
    OptionSpec("quant", _quant_help, "none", "QUANT", nightly=True),
    OptionSpec("compile", "torch.compile the transformer once per session, outside the timed rounds: none; "
               "regional (each repeated block's forward, fullgraph, before the cache hooks; works with the "
               "cache); full (the whole transformer forward; uncached benchmarks only). Timed rounds that "
               "recompile fail their benchmark", "none", "MODE", nightly=True),
    OptionSpec("cache_backend", _backend_help, "diffusers", "BACKEND", nightly=True),
    OptionSpec("nunchaku_transformer", "svdq-int4/fp4 transformer: a local .safetensors file or hub path", "",
               "PATH", nightly=True),
    OptionSpec("nunchaku_precision", "auto (as nunchaku's get_precision: fp4 on sm_120, else int4), int4, fp4",
               "auto", "PRECISION"),
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
    OptionSpec("calibrate_ssim_margin", "absolute margin below the measured SSIM for --fbcache-calibrate "
               "(other metrics use their own default margin)", "0.02", "DELTA"),
    OptionSpec("device", "auto, cpu, cuda or cuda:N", "auto", "DEVICE", nightly=True),
    OptionSpec("force_compare", "let --benchmark-compare compare runs with different fingerprints", "false",
               flag=True),
    OptionSpec("interleave", "time the rounds interleaved: round 1 of the uncached baseline and of every threshold, "
               "then round 2 of each, the order rotated per round, so drift hits all alike and speedups pair "
               "generations timed next to each other (false: each threshold's rounds back to back)", "true",
               "BOOL", nightly=True),
    OptionSpec("threads", "torch threads for CPU runs (torch.set_num_threads), or auto to leave torch's default; "
               "1 measured stable under load on a 2-core VM (2026-11-27)", "1", "N", nightly=True),
    OptionSpec("clock", "what a round's time is: wall (time.perf_counter), cpu (time.process_time: the process's "
               "CPU time, which other jobs on the cores do not stretch; CPU devices only), or auto: cpu on a CPU "
               "device with a fixed --fbcache-threads, wall otherwise", "auto", "auto|wall|cpu", nightly=True),
    OptionSpec("selfcheck", "also time a bare loop of the same pipeline call after the uncached benchmark, "
               "to report the harness's own overhead", "false", flag=True),
)

BY_NAME: dict[str, OptionSpec] = {spec.name: spec for spec in OPTIONS}


def add_options(parser: Any) -> None:
    """Register every option in a ``fbcache`` group of ``pytest --help`` and as an ini key."""
    group = parser.getgroup("fbcache", "fbcache: First-Block Cache sweep (also settable as FBCACHE_* env vars)")
    for spec in OPTIONS:
        text = spec.help_text()
        if spec.flag:
            group.addoption(spec.cli, action="store_const", const="true", default=None, dest=spec.dest,
                            help=f"{text} (default: off; env {spec.env}, ini {spec.ini})")
        else:
            group.addoption(spec.cli, action="store", default=None, dest=spec.dest, metavar=spec.metavar,
                            help=f"{text} (default: {spec.default or spec.default_help}; env {spec.env}, "
                                 f"ini {spec.ini})")
        parser.addini(spec.ini, help=text, default=None)


def resolve_raw(config: Any, environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Raw option strings by precedence: command line, then environment, then ini, else None."""
    environ = os.environ if environ is None else environ
    raw: dict[str, str | None] = {}
    for spec in OPTIONS:
        value = config.getoption(spec.dest, default=None)
        if value is None:
            value = environ.get(spec.env)
        if value is None:
            ini_value = config.getini(spec.ini)
            value = ini_value if ini_value not in (None, "", []) else None
        raw[spec.name] = value
    return raw


def source_of(config: Any, name: str, environ: Mapping[str, str] | None = None) -> str:
    """Where option ``name``'s value came from, spelled as the user wrote it: the flag, the
    environment variable, or the ini key. Error messages name this, not always the flag."""
    environ = os.environ if environ is None else environ
    spec = next(s for s in OPTIONS if s.name == name)
    if config.getoption(spec.dest, default=None) is not None:
        return spec.cli
    if environ.get(spec.env) is not None:
        return spec.env
    ini_value = config.getini(spec.ini)
    return f"{spec.ini} (ini)" if ini_value not in (None, "", []) else spec.cli


def option_name(cli: str) -> str | None:
    """``--fbcache-steps`` -> ``steps``; None for anything that is not one of these options."""
    return next((s.name for s in OPTIONS if s.cli == cli), None)
