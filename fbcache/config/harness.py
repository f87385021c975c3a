"""What one benchmark session measures: :class:`HarnessConfig`, a plain, immutable record.

Its defaults are literals: the option table's, and the default model's own (the tiny model: 28
steps, 64x64). Nothing here knows a registry; :func:`fbcache.configure.build_config` checks raw
option strings through the registries and builds one, before any model is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fbcache.config.options import BY_NAME, DEFAULT_PROMPT, OptionSpec, parse_thresholds
from fbcache.config.prompts import PromptCase, PromptSet, Shard

SEED_THRESHOLDS: tuple[float, ...] = parse_thresholds("--fbcache-thresholds", BY_NAME["thresholds"].default)


@dataclass(frozen=True)
class HarnessConfig:
    """What one benchmark session measures. Immutable: one session, one configuration.

    Field defaults are the option table's; ``steps``/``width``/``height`` are the default model's,
    ``device`` is what ``auto`` gives on a machine without CUDA.
    """

    model: str = "tiny"
    quant: str = "none"
    compile: str = "none"
    cache_backend: str = "diffusers"
    thresholds: tuple[float, ...] = SEED_THRESHOLDS
    steps: int = 28
    width: int = 64
    height: int = 64
    prompt: str = DEFAULT_PROMPT
    seed: int = 0
    rounds: int = 3
    warmup_rounds: int = 1
    output_dir: Path = Path("fbcache-results")
    bounds: str = "auto"
    bounds_dir: Path | None = None
    calibrate: Path | None = None
    calibrate_speedup_margin: float = 0.15
    #: per image metric, a margin for ``calibrate`` that replaces the metric's own
    calibrate_margins: Mapping[str, float] = field(default_factory=dict, hash=False)
    device: str = "cpu"
    force_compare: bool = False
    selfcheck: bool = False
    #: --fbcache-prompts: several prompts, one benchmark per (threshold, prompt); None: ``prompt`` alone
    prompt_set: PromptSet | None = None
    #: this process's part of the prompt set (torchrun or --fbcache-shard R/N); None: the whole set
    shard: Shard | None = None
    #: rounds of all benchmarks interleaved (plugin/schedule.py)
    interleave: bool = True
    #: torch threads for CPU runs; None leaves torch's default (GPU runs are never changed)
    threads: int | None = 1
    #: "wall" (time.perf_counter) or "cpu" (time.process_time); resolved from "auto" by build_config
    clock: str = "wall"
    #: whether the cache backend's cache can be removed between generations (its spec's ``removable``)
    cache_removable: bool = True
    #: the values of the extensions' own options (backends, quantization modes, model sources) by
    #: option name, parsed; read them with :meth:`option`
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def option(self, spec: OptionSpec) -> Any:
        """An extension option's value: as given, else its parsed default."""
        return self.extra[spec.name] if spec.name in self.extra else spec.value(None)

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
    def interleaved(self) -> bool:
        """Whether rounds are interleaved: asked for, a cache that can be removed between generations,
        and an eager session (switching the cache between compiled generations would recompile)."""
        return self.interleave and self.cache_removable and self.compile == "none"

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"
