"""From raw option strings to a checked :class:`~fbcache.config.HarnessConfig`, before any model is built.

- The option table: the core options (:mod:`fbcache.config`), every registered
  extension's own (cache backends, quantization modes, model sources) and one calibrate margin per
  image metric, as seen by pytest (``--fbcache-*``), the environment (``FBCACHE_*``), the ini file
  and ``fbcache nightly``.
- :func:`build_config`: every option parsed and checked; each registry entry adds its own rules.
  Bad input costs nothing and names the option and the values it accepts.
- :func:`check_environment`: what needs the environment (packages, GPU), from the same registries.

Nothing here names a particular backend, quantization mode, model source or image metric.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from fbcache import backends, metrics, models, quant
from fbcache.config import (
    BY_NAME,
    COMPILE_MODES,
    OPTIONS,
    REGISTRY_HELP,
    HarnessConfig,
    OptionSpec,
    ThresholdPair,
    check_writable_dir,
    load_prompt_set,
    parse_bool,
    parse_choice,
    parse_device,
    parse_int,
    parse_margin,
    parse_resolution,
    parse_shard,
    parse_threads,
    parse_thresholds,
    resolve_clock,
    resolve_on_gpu,
    shard_device,
)
from fbcache.errors import ConfigError
from fbcache.models import FULL_WITH_CACHE_REASON

# ------------------------------------------------------------------------------------ the option table


def _model_help() -> str:
    named = ", ".join(f"{s.name} ({s.summary})" for s in models.all_sources() if s.typed_by_name)
    return f"{named}; or a local diffusers FLUX directory, or a hub id"


def _quant_help() -> str:
    return "; ".join(f"{mode.name}: {mode.summary}" for mode in quant.all_modes())


def _backend_help() -> str:
    return "; ".join(f"{spec.name}: {spec.summary}" for spec in backends.all_backends())


def _margins_help() -> str:
    return "each metric's own: " + ", ".join(f"{m.name} {m.margin_text(m.calibrate_margin)}"
                                             for m in metrics.all_metrics())


def _metrics_help() -> str:
    opt_in = [m.name for m in metrics.all_metrics() if not m.default]
    return ", ".join(m.name for m in metrics.selected()) + (f"; opt-in: {', '.join(opt_in)}" if opt_in else "")


_REGISTRY_HELP: dict[str, Callable[[], str]] = {"model": _model_help, "quant": _quant_help,
                                                "cache_backend": _backend_help}
#: defaults that come from a registry, named in ``--help``
_REGISTRY_DEFAULT: dict[str, Callable[[], str]] = {"calibrate_margin": _margins_help, "metrics": _metrics_help}


def extension_options() -> tuple[OptionSpec, ...]:
    """Every registered backend's, quantization mode's, model source's and image metric's own options, in that order."""
    found: dict[str, OptionSpec] = {}
    owners = [(entry.name, entry.options) for entry in backends.all_backends()]
    owners += [(entry.name, entry.options) for entry in quant.all_modes()]
    owners += [(entry.name, entry.options) for entry in models.all_sources()]
    owners += [(f"image metric {entry.name}", entry.options) for entry in metrics.all_metrics()]
    for owner, declared in owners:
        for spec in declared:
            if spec.name in BY_NAME or found.get(spec.name, spec) != spec:
                raise ValueError(f"option {spec.cli} of {owner} is declared twice")
            found[spec.name] = spec
    return tuple(found.values())


def margin_option(metric: metrics.ImageMetric) -> OptionSpec:
    """``--fbcache-calibrate-<metric>-margin DELTA``: the same as ``--fbcache-calibrate-margin <metric>=DELTA``
    (the one metric that had a margin option before margins were per metric keeps its spelling)."""
    return OptionSpec(f"calibrate_{metric.name.replace('-', '_')}_margin",
                      f"the same as {BY_NAME['calibrate_margin'].cli} {metric.name}=DELTA", "", "DELTA",
                      default_help=f"the metric's own, {metric.margin_text(metric.calibrate_margin)}")


def metric_options() -> tuple[OptionSpec, ...]:
    """One calibrate margin option per registered image metric (:func:`margin_option`)."""
    taken = set(BY_NAME) | {spec.name for spec in extension_options()}
    found = tuple(margin_option(metric) for metric in metrics.all_metrics())
    for spec in found:
        if spec.name in taken:
            raise ValueError(f"option {spec.cli} of an image metric is declared twice")
    return found


def options() -> tuple[OptionSpec, ...]:
    """The whole option table: the core options (the registries' choices in their help), then the extensions',
    then the image metrics' margins."""
    core = tuple(replace(spec, help=_REGISTRY_HELP[spec.name]) if spec.help == REGISTRY_HELP else spec
                 for spec in OPTIONS)
    core = tuple(replace(spec, default_help=_REGISTRY_DEFAULT[spec.name]()) if spec.default_help == REGISTRY_HELP
                 else spec for spec in core)
    return core + extension_options() + metric_options()


def add_options(parser: Any, specs: tuple[OptionSpec, ...] | None = None) -> None:
    """Register the options (default: all) in a ``fbcache`` group of ``pytest --help`` and as ini keys."""
    group = parser.getgroup("fbcache", "fbcache: First-Block Cache sweep (also settable as FBCACHE_* env vars)")
    for spec in options() if specs is None else specs:
        text = spec.help_text()
        if spec.flag:
            group.addoption(spec.cli, action="store_const", const="true", default=None, dest=spec.dest,
                            help=f"{text} (default: off; env {spec.env}, ini {spec.ini})")
        elif spec.multiple:
            group.addoption(spec.cli, action="append", default=None, dest=spec.dest, metavar=spec.metavar,
                            help=f"{text} (default: {spec.default or spec.default_help}; env {spec.env}, "
                                 f"ini {spec.ini}; repeatable, comma-separated in env and ini)")
        else:
            group.addoption(spec.cli, action="store", default=None, dest=spec.dest, metavar=spec.metavar,
                            help=f"{text} (default: {spec.default or spec.default_help}; env {spec.env}, "
                                 f"ini {spec.ini})")
        parser.addini(spec.ini, help=text, default=None)


def resolve_raw(config: Any, environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Raw option strings by precedence: command line, then environment, then ini, else None."""
    environ = os.environ if environ is None else environ
    raw: dict[str, str | None] = {}
    for spec in options():
        value = config.getoption(spec.dest, default=None)
        if isinstance(value, list):  # a repeated flag (``multiple``): its entries, as the environment gives them
            value = ",".join(value)
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
    spec = next(s for s in options() if s.name == name)
    if config.getoption(spec.dest, default=None) is not None:
        return spec.cli
    if environ.get(spec.env) is not None:
        return spec.env
    ini_value = config.getini(spec.ini)
    return f"{spec.ini} (ini)" if ini_value not in (None, "", []) else spec.cli


def option_name(cli: str) -> str | None:
    """``--fbcache-steps`` -> ``steps``; None for anything that is not one of these options."""
    return next((s.name for s in options() if s.cli == cli), None)


# ------------------------------------------------------------------------------------ build_config


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
    quant_mode = parse_choice(cli("quant"), get("quant"), quant.names())
    compile_mode = parse_choice(cli("compile"), get("compile"), COMPILE_MODES)
    backend = parse_choice(cli("cache_backend"), get("cache_backend"), backends.names())
    extra = {spec.name: spec.value(raw.get(spec.name)) for spec in extension_options()}
    calibrate_margins = metrics.amounts(cli("calibrate_margin"), [str(raw.get("calibrate_margin") or "")],
                                        {m.name: (margin_option(m).cli, _text(raw.get(margin_option(m).name)))
                                         for m in metrics.all_metrics()}, margins=True)
    chosen_metrics = metrics.parse_selection(cli("metrics"), str(raw.get("metrics") or ""))
    thresholds = parse_thresholds(cli("thresholds"), str(get("thresholds")))
    steps = parse_int(cli("steps"), get("steps"), 1) if get("steps") else source.default_steps
    width, height = parse_resolution(cli("resolution"), str(get("resolution"))) if get("resolution") \
        else source.default_resolution
    if raw.get("prompt") is not None and not str(raw.get("prompt")).strip():
        raise ConfigError(cli("prompt"), raw.get("prompt"), "a non-empty prompt (leave the option out for the default)",
                          "empty")
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
        quant=quant_mode,
        compile=compile_mode,
        cache_backend=backend,
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
        compile_cache=(check_writable_dir(cli("compile_cache"), str(get("compile_cache")))
                       if get("compile_cache") else None),
        calibrate_speedup_margin=parse_margin(cli("calibrate_speedup_margin"), str(get("calibrate_speedup_margin")), 1.0),
        calibrate_margins=calibrate_margins,
        metrics=chosen_metrics,
        device=device,
        force_compare=parse_bool(cli("force_compare"), get("force_compare")),
        selfcheck=parse_bool(cli("selfcheck"), get("selfcheck")),
        interleave=parse_bool(cli("interleave"), get("interleave")),
        threads=threads,
        clock=resolve_clock(cli("clock"), str(get("clock")), device, threads),
        breakdown=resolve_on_gpu(cli("breakdown"), str(get("breakdown")), device),
        flops=resolve_on_gpu(cli("flops"), str(get("flops")), device),
        prompt_set=prompt_set,
        shard=shard,
        cache_removable=backends.get(backend).removable,
        extra=extra,
    )
    quant.get(quant_mode).validate(config)
    source.validate(config)
    check_load_time_quant(config)
    backends.get(backend).validate(config)
    check_threshold_pairs(config)
    check_quant_device(config)
    check_compile(config)
    return config


def _text(raw: str | bool | None) -> str | None:
    return None if raw is None else str(raw)


def check_load_time_quant(config: HarnessConfig) -> None:
    """A mode that loads its own transformer needs a model source that builds its pipeline around one."""
    source = models.source_for(config.model)
    if quant.get(config.quant).load_transformer is not None and not source.takes_transformer:
        # what a user types: a source's name, or what a catch-all matches (its summary)
        takers = "; ".join(s.name if s.typed_by_name else s.summary for s in models.all_sources() if s.takes_transformer)
        raise ConfigError(BY_NAME["quant"].cli, config.quant, ", ".join(quant.runnable_on(config.device)),
                          f"{config.quant} loads its own transformer, and the {source.name} model source builds "
                          f"its own; sources that take one: {takers}")


def check_threshold_pairs(config: HarnessConfig) -> None:
    """A MULTI/SINGLE pair needs a cache that decides twice per step (its spec's ``two_stages``)."""
    pair = next((t for t in config.thresholds if isinstance(t, ThresholdPair)), None)
    spec = backends.get(config.cache_backend)
    if pair is None or spec.two_stages:
        return
    takers = ", ".join(b.name for b in backends.all_backends() if b.two_stages) or "none registered"
    raise ConfigError(BY_NAME["thresholds"].cli, f"{pair:g}", f"single thresholds like 0.1 with the {spec.name} cache "
                      f"backend; MULTI/SINGLE pairs with a backend that decides twice per step: {takers}",
                      f"the {spec.name} cache decides once per step, after the first block")


def check_quant_device(config: HarnessConfig) -> None:
    """A quantization whose kernels need a CUDA GPU is refused on a CPU (the GPU's sm is preflight's)."""
    mode = quant.get(config.quant)
    if mode.cuda_only and not config.device.startswith("cuda"):
        raise ConfigError(BY_NAME["quant"].cli, config.quant, ", ".join(quant.runnable_on(config.device)),
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
    mode = quant.get(config.quant)
    if config.compile not in mode.compile_modes:
        raise ConfigError(option, config.compile, ", ".join(mode.compile_modes), mode.compile_note)
    if mode.cuda_compile_note and config.device.startswith("cuda"):
        raise ConfigError(option, config.compile, "none", f"with --fbcache-quant {config.quant}: {mode.cuda_compile_note}")


def check_compile_selection(config: HarnessConfig, cached_benchmarks: int) -> None:
    """``full`` compiles the whole transformer, which cannot hold the cache: uncached benchmarks only.

    Called once the benchmarks are selected (after ``-k``), still before any model is built.
    """
    if config.compile == "full" and cached_benchmarks:
        raise ConfigError(BY_NAME["compile"].cli, config.compile, "none, regional, regional+io; or full with only the "
                          "uncached benchmark selected (-k uncached)",
                          f"{cached_benchmarks} cached benchmark(s) selected and {FULL_WITH_CACHE_REASON}")


# ------------------------------------------------------------------------------------ preflight


def _capability(device: str) -> tuple[int, int]:
    import torch

    index = int(device.split(":")[1]) if ":" in device else 0
    return torch.cuda.get_device_capability(index)


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def check_requirements(option: str, value: str, requires: Mapping[str, str],
                       has_module: Callable[[str], bool] = _has_module,
                       accepted: str = "another value whose packages are installed") -> None:
    """Every required module importable, or a ConfigError that says how to install it."""
    for module, hint in requires.items():
        if not has_module(module):
            raise ConfigError(option, value, accepted, f"{module} is not installed: {hint}")


def check_environment(
    config: HarnessConfig,
    capability: Callable[[str], tuple[int, int]] = _capability,
    has_module: Callable[[str], bool] = _has_module,
) -> None:
    """Raise ConfigError for anything that would fail later, once weights are already loading.

    The model source, the quantization mode, the cache backend and every image metric the run computes
    each declare their packages and their own environment checks; the GPU's compute capability is
    checked here for every mode.
    """
    source = models.source_for(config.model)
    check_requirements(BY_NAME["model"].cli, config.model, source.requires, has_module)
    source.preflight(config)

    mode = quant.get(config.quant)
    check_requirements(BY_NAME["quant"].cli, config.quant, mode.requires, has_module)
    if mode.min_capability is not None and config.device.startswith("cuda"):
        major, minor = capability(config.device)
        if (major, minor) < mode.min_capability:
            raise ConfigError(BY_NAME["quant"].cli, config.quant,
                              ", ".join(quant.runnable_on(config.device, (major, minor))),
                              f"{mode.hardware_note}; this GPU is sm_{major}{minor}")
    mode.preflight(config)

    backend = backends.get(config.cache_backend)
    check_requirements(BY_NAME["cache_backend"].cli, config.cache_backend, backend.requires, has_module)
    backend.preflight(config)
    usable = [m.name for m in metrics.all_metrics() if all(has_module(module) for module in m.requires)]
    for metric in metrics.selected(config.metrics):
        check_requirements(BY_NAME["metrics"].cli, metric.name, metric.requires, has_module,
                           f"names from {', '.join(usable) or 'none: no metric has its packages here'}")
        if metric.preflight is not None:
            metric.preflight(config)
