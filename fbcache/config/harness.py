"""Validated harness configuration: every user-facing option is parsed and checked here.

All checks run before any model is built, so bad input costs nothing and names the option and the
values it accepts (see :class:`fbcache.errors.ConfigError`). Defaults come from the option table
(:mod:`fbcache.config.options`); the model's own defaults (steps, resolution) from its
:class:`~fbcache.models.base.ModelSource`; each model source and cache backend adds its own rules.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fbcache import backends, models
from fbcache.config.options import BY_NAME, COMPILE_MODES, NUNCHAKU_PRECISIONS, QUANTIZATIONS
from fbcache.config.parsers import (
    check_writable_dir,
    parse_bool,
    parse_choice,
    parse_device,
    parse_int,
    parse_margin,
    parse_resolution,
    parse_threads,
    parse_thresholds,
)
from fbcache.config.prompts import PromptCase, PromptSet, load_prompt_set
from fbcache.config.shard import Shard, parse_shard, shard_device
from fbcache.errors import MISSING, ConfigError
from fbcache.models import compile as compile_modes
from fbcache.models import quantization


def _table(name: str) -> str:
    return BY_NAME[name].default


SEED_THRESHOLDS: tuple[float, ...] = parse_thresholds("--fbcache-thresholds", _table("thresholds"))
DEFAULT_PROMPT = _table("prompt")


@dataclass(frozen=True)
class HarnessConfig:
    """What one benchmark session measures. Immutable: one session, one configuration.

    Field defaults are the option table's; ``steps``/``width``/``height`` are the default model's,
    ``device`` is what ``auto`` gives on a machine without CUDA.
    """

    model: str = _table("model")
    quant: str = _table("quant")
    compile: str = _table("compile")
    cache_backend: str = _table("cache_backend")
    nunchaku_transformer: str | None = None
    nunchaku_precision: str = _table("nunchaku_precision")
    thresholds: tuple[float, ...] = SEED_THRESHOLDS
    steps: int = models.source_for(_table("model")).default_steps
    width: int = models.source_for(_table("model")).default_resolution[0]
    height: int = models.source_for(_table("model")).default_resolution[1]
    prompt: str = DEFAULT_PROMPT
    seed: int = int(_table("seed"))
    rounds: int = int(_table("rounds"))
    warmup_rounds: int = int(_table("warmup_rounds"))
    output_dir: Path = Path(_table("output_dir"))
    bounds: str = _table("bounds")
    bounds_dir: Path | None = None
    calibrate: Path | None = None
    calibrate_speedup_margin: float = float(_table("calibrate_speedup_margin"))
    calibrate_ssim_margin: float = float(_table("calibrate_ssim_margin"))
    device: str = "cpu"
    force_compare: bool = False
    selfcheck: bool = False
    #: --fbcache-prompts: several prompts, one benchmark per (threshold, prompt); None: ``prompt`` alone
    prompt_set: PromptSet | None = None
    #: this process's part of the prompt set (torchrun or --fbcache-shard R/N); None: the whole set
    shard: Shard | None = None
    #: rounds of all benchmarks interleaved (plugin/measure.py)
    interleave: bool = True
    #: torch threads for CPU runs; None leaves torch's default (GPU runs are never changed)
    threads: int | None = int(_table("threads"))
    #: "wall" (time.perf_counter) or "cpu" (time.process_time); resolved from "auto" by build_config
    clock: str = "wall"

    @property
    def cases(self) -> tuple[PromptCase, ...]:
        """Every prompt of the run, with its seed: the set's, or the single ``prompt`` and ``seed``."""
        return self.prompt_set.cases if self.prompt_set is not None else (PromptCase(self.prompt, self.seed),)

    @property
    def shard_indices(self) -> list[int]:
        """The indices into :attr:`cases` this process measures."""
        count = len(self.cases)
        return self.shard.indices(count) if self.shard is not None else list(range(count))

    def case(self, prompt_index: int | None) -> PromptCase:
        """The prompt and seed of a benchmark (``None``: the single prompt of a run without a set)."""
        return self.cases[prompt_index or 0]

    @property
    def source(self) -> models.ModelSource:
        return models.source_for(self.model)

    @property
    def kind(self) -> str:
        """The model source's name: 'tiny', 'tiny-random', 'flux-random', 'pretrained', ..."""
        return self.source.name

    @property
    def interleaved(self) -> bool:
        """Whether rounds are interleaved: asked for, a cache that can be removed between generations,
        and an eager session (switching the cache between compiled generations would recompile)."""
        return self.interleave and backends.get(self.cache_backend).removable and self.compile == "none"

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def timing_only(self) -> bool:
        """Random full-size weights: realistic cost per step, unrealistic cache behaviour."""
        return self.source.timing_only

    @property
    def image_stem(self) -> str:
        return self.source.image_stem


def parse_model(raw: str) -> str:
    value = str(raw).strip()
    return models.source_for(value).canonical(value)


def _torch_cuda() -> tuple[Callable[[], bool], Callable[[], int]]:
    import torch

    return torch.cuda.is_available, torch.cuda.device_count


def build_config(
    raw: Mapping[str, str | bool | None],
    cuda: tuple[Callable[[], bool], Callable[[], int]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> HarnessConfig:
    """Turn raw option strings (already resolved from CLI, env and ini) into a checked config.

    ``raw`` is keyed by option name without prefix (``"model"``, ``"thresholds"``, ...); a missing
    or ``None`` value means the option table's default. ``cuda`` lets tests fake the CUDA probe,
    ``environ`` the launcher's variables (RANK, WORLD_SIZE, LOCAL_RANK).
    """

    def get(name: str) -> Any:
        value = raw.get(name)
        return BY_NAME[name].default if value is None or value == "" else value

    def cli(name: str) -> str:
        return BY_NAME[name].cli

    model = parse_model(get("model"))
    source = models.source_for(model)
    quant = parse_choice(cli("quant"), get("quant"), QUANTIZATIONS)
    compile_mode = parse_choice(cli("compile"), get("compile"), COMPILE_MODES)
    backend = parse_choice(cli("cache_backend"), get("cache_backend"), backends.names())
    precision = parse_choice(cli("nunchaku_precision"), get("nunchaku_precision"), NUNCHAKU_PRECISIONS)
    thresholds = parse_thresholds(cli("thresholds"), str(get("thresholds")))
    steps = parse_int(cli("steps"), get("steps"), 1) if get("steps") else source.default_steps
    width, height = parse_resolution(cli("resolution"), str(get("resolution"))) if get("resolution") \
        else source.default_resolution
    if raw.get("prompt") is not None and not str(raw.get("prompt")).strip():
        raise ConfigError(cli("prompt"), raw.get("prompt"), "a non-empty prompt (leave the option out for the default)",
                          "empty")
    nunchaku_transformer = get("nunchaku_transformer") or None
    if quant == "nunchaku" and not nunchaku_transformer:
        raise ConfigError(cli("nunchaku_transformer"), MISSING,
                          "a local svdq-int4/fp4 .safetensors file or hub path",
                          "--fbcache-quant nunchaku needs the quantized transformer's weights")
    probe = cuda or _torch_cuda()
    calibrate = get("calibrate")
    calibrate_path = Path(str(calibrate)).expanduser().resolve() if calibrate else None
    if calibrate_path is not None:
        check_writable_dir(cli("calibrate"), str(calibrate_path.parent))
    bounds_dir = get("bounds_dir")
    seed = parse_int(cli("seed"), get("seed"), 0)
    prompts_raw = raw.get("prompts")
    prompt_set = load_prompt_set(cli("prompts"), str(prompts_raw), seed) if prompts_raw else None
    shard = parse_shard(cli("shard"), str(get("shard")), os.environ if environ is None else environ)
    if shard is not None:
        count = len(prompt_set.cases) if prompt_set is not None else 1
        if count < shard.world_size:
            raise ConfigError(cli("shard"), f"{shard.rank}/{shard.world_size}",
                              f"at most {count} shard(s) for {count} prompt(s)",
                              "sharding splits a prompt set (--fbcache-prompts); every shard needs a prompt")
    device = shard_device(parse_device(cli("device"), str(get("device")), *probe), shard)
    if device.startswith("cuda:") and int(device.split(":")[1]) >= probe[1]():
        raise ConfigError(cli("device"), device, f"cuda:0..cuda:{probe[1]() - 1}",
                          f"shard {shard.rank if shard else 0}: LOCAL_RANK names a GPU this process cannot see")

    threads = parse_threads(cli("threads"), str(get("threads")))
    config = HarnessConfig(
        model=model,
        quant=quant,
        compile=compile_mode,
        cache_backend=backend,
        nunchaku_transformer=str(nunchaku_transformer) if nunchaku_transformer else None,
        nunchaku_precision=precision,
        thresholds=thresholds,
        steps=steps,
        width=width,
        height=height,
        prompt=str(get("prompt")),
        seed=seed,
        rounds=parse_int(cli("rounds"), get("rounds"), 1),
        warmup_rounds=parse_int(cli("warmup_rounds"), get("warmup_rounds"), 0),
        output_dir=check_writable_dir(cli("output_dir"), str(get("output_dir"))),
        bounds=str(get("bounds")),
        bounds_dir=Path(str(bounds_dir)).expanduser().resolve() if bounds_dir else None,
        calibrate=calibrate_path,
        calibrate_speedup_margin=parse_margin(cli("calibrate_speedup_margin"), str(get("calibrate_speedup_margin")), 1.0),
        calibrate_ssim_margin=parse_margin(cli("calibrate_ssim_margin"), str(get("calibrate_ssim_margin")), 1.0),
        device=device,
        force_compare=parse_bool(cli("force_compare"), get("force_compare")),
        selfcheck=parse_bool(cli("selfcheck"), get("selfcheck")),
        interleave=parse_bool(cli("interleave"), get("interleave")),
        threads=threads,
        clock=resolve_clock(cli("clock"), str(get("clock")), device, threads),
        prompt_set=prompt_set,
        shard=shard,
    )
    source.validate(config)
    backends.get(backend).validate(config)
    check_quant_device(config)
    check_compile(config)
    return config


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


def check_quant_device(config: HarnessConfig) -> None:
    """A quantization whose kernels need a CUDA GPU is refused on a CPU (the GPU's sm is preflight's)."""
    mode = quantization.mode(config.quant)
    if mode.cuda_only and not config.device.startswith("cuda"):
        raise ConfigError(BY_NAME["quant"].cli, config.quant, ", ".join(quantization.runnable_on(config.device)),
                          f"{mode.hardware_note}; the device is {config.device}")


def check_compile(config: HarnessConfig) -> None:
    """The cache backend and the quantization must both work under the chosen compile mode."""
    option = BY_NAME["compile"].cli
    if config.compile == "none":
        return
    spec = backends.get(config.cache_backend)
    if config.compile not in spec.compile_modes:
        raise ConfigError(option, config.compile, ", ".join(spec.compile_modes),
                          f"the {spec.name} cache backend cannot run under torch.compile: {spec.compile_note}")
    if config.quant == "nunchaku":
        raise ConfigError(option, config.compile, "none",
                          "nunchaku's SVDQuant transformer runs its own CUDA kernels, not torch.compile'd code")
    note = quantization.mode(config.quant).cuda_compile_note
    if note and config.device.startswith("cuda"):
        raise ConfigError(option, config.compile, "none", f"with --fbcache-quant {config.quant}: {note}")


def check_compile_selection(config: HarnessConfig, cached_benchmarks: int) -> None:
    """``full`` compiles the whole transformer, which cannot hold the cache: uncached benchmarks only.

    Called once the benchmarks are selected (after ``-k``), still before any model is built.
    """
    if config.compile == "full" and cached_benchmarks:
        raise ConfigError(BY_NAME["compile"].cli, config.compile, "none, regional; or full with only the "
                          "uncached benchmark selected (-k uncached)",
                          f"{cached_benchmarks} cached benchmark(s) selected and {compile_modes.FULL_WITH_CACHE_REASON}")
