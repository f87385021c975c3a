"""The fbcache pytest options: one table, three sources (command line > environment > ini file).

Every option ``name`` is available as ``--fbcache-<name>`` on the command line, as
``FBCACHE_<NAME>`` in the environment and as ``fbcache_<name>`` under ``[tool.pytest.ini_options]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from fbcache.config.harness import DEFAULT_PROMPT


@dataclass(frozen=True)
class OptionSpec:
    name: str
    help: str
    default: str
    metavar: str = "VALUE"
    flag: bool = False

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


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("model", "tiny (trained, default), tiny-random, flux-random (full-size FLUX.1, random weights, "
               "timing only), a local diffusers FLUX directory, or a hub id", "tiny", "MODEL"),
    OptionSpec("quant", "none, torchao-int8wo, torchao-fp8 (sm_89+), nunchaku (SVDQuant; needs "
               "--fbcache-nunchaku-transformer)", "none", "QUANT"),
    OptionSpec("cache_backend", "diffusers (built-in FirstBlockCache) or nunchaku (apply_cache_on_pipe)",
               "diffusers", "BACKEND"),
    OptionSpec("nunchaku_transformer", "svdq-int4/fp4 transformer: a local .safetensors file or hub path", "",
               "PATH"),
    OptionSpec("nunchaku_precision", "auto (as nunchaku's get_precision: fp4 on sm_120, else int4), int4, fp4",
               "auto", "PRECISION"),
    OptionSpec("thresholds", "residual_diff_threshold values to sweep", "0 0.01 0.05 0.1 0.2 0.5 0.8", "LIST"),
    OptionSpec("steps", "denoising steps (default: 28)", "", "N"),
    OptionSpec("resolution", "N or WxH, multiples of 16 (default: 64 for tiny models, 1024 otherwise)", "", "RES"),
    OptionSpec("prompt", "the prompt", DEFAULT_PROMPT, "TEXT"),
    OptionSpec("seed", "generator seed", "0", "N"),
    OptionSpec("rounds", "timed generations per threshold", "3", "N"),
    OptionSpec("warmup_rounds", "untimed generations per threshold before the timed ones", "1", "N"),
    OptionSpec("output_dir", "where images and the results table go", "fbcache-results", "DIR"),
    OptionSpec("bounds", "bounds profile: auto (the shipped profile that matches this run, if any), none, "
               "a profile name under benchmarks/bounds/, or a TOML path", "auto", "PROFILE"),
    OptionSpec("calibrate", "write a bounds profile from this run to PATH (measured value minus the margins)",
               "", "PATH"),
    OptionSpec("calibrate_speedup_margin", "relative margin below the measured speedup for --fbcache-calibrate",
               "0.15", "FRACTION"),
    OptionSpec("calibrate_ssim_margin", "absolute margin below the measured SSIM for --fbcache-calibrate",
               "0.02", "DELTA"),
    OptionSpec("device", "auto, cpu, cuda or cuda:N", "auto", "DEVICE"),
    OptionSpec("force_compare", "let --benchmark-compare compare runs with different fingerprints", "false",
               flag=True),
    OptionSpec("interleave", "time the rounds interleaved: round 1 of the uncached baseline and of every threshold, "
               "then round 2 of each, the order rotated per round, so drift hits all alike and speedups pair "
               "generations timed next to each other (false: each threshold's rounds back to back)", "true",
               "BOOL"),
    OptionSpec("threads", "torch threads for CPU runs (torch.set_num_threads), or auto to leave torch's default; "
               "1 measured stable under load on a 2-core VM (2026-11-27)", "1", "N"),
    OptionSpec("selfcheck", "also time a bare loop of the same pipeline call after the uncached benchmark, "
               "to report the harness's own overhead", "false", flag=True),
)


def add_options(parser: Any) -> None:
    """Register every option in a ``fbcache`` group of ``pytest --help`` and as an ini key."""
    group = parser.getgroup("fbcache", "fbcache: First-Block Cache sweep (also settable as FBCACHE_* env vars)")
    for spec in OPTIONS:
        if spec.flag:
            group.addoption(spec.cli, action="store_const", const="true", default=None, dest=spec.dest,
                            help=f"{spec.help} (env {spec.env}, ini {spec.ini})")
        else:
            group.addoption(spec.cli, action="store", default=None, dest=spec.dest, metavar=spec.metavar,
                            help=f"{spec.help} (default: {spec.default or 'per model'}; env {spec.env}, "
                                 f"ini {spec.ini})")
        parser.addini(spec.ini, help=spec.help, default=None)


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
