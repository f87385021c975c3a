"""What a cache backend is: a live object that switches FBCache on one pipeline, and its spec.

Following the diffusers hooks pattern, each backend lives in one file with an ``apply``-style
``enable(threshold, log)`` that installs the library's real cache and wraps its real per-step
decision (nothing here decides anything), and a :class:`BackendSpec` that tells the harness
everything else it needs *before* a model is built: its packages, its option rules, its versions
for ``machine_info`` and whether its cache can be removed again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from fbcache.plugin.decisions import DecisionLog

if TYPE_CHECKING:
    from fbcache.config.harness import HarnessConfig


class CacheBackend(Protocol):
    """A cache installed on one pipeline. ``enable``/``disable`` bracket each threshold's rounds."""

    name: str
    #: False once the pipeline carries a cache that cannot be removed
    can_run_uncached: bool

    def enable(self, threshold: float, log: DecisionLog) -> None: ...

    def disable(self) -> None: ...


def _nothing(config: HarnessConfig) -> None:
    return None


def _no_versions() -> dict[str, str | None]:
    return {}


def _no_settings(config: HarnessConfig) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class BackendSpec:
    """Everything the harness knows about a backend without importing the library behind it."""

    name: str
    #: one line for ``--help`` and the guide's backend table
    summary: str
    #: ``create(pipe, config)`` -> the live backend; imports the library lazily
    create: Callable[[Any, HarnessConfig], CacheBackend]
    #: importable module name -> how to install it; checked before any model is built
    requires: Mapping[str, str] = field(default_factory=dict)
    #: False: the cache cannot be removed, so the uncached baseline must run first
    removable: bool = True
    #: option rules of this backend alone: raise ConfigError (pure, no environment)
    validate: Callable[[HarnessConfig], None] = _nothing
    #: environment checks beyond ``requires`` (versions, GPU): raise ConfigError
    preflight: Callable[[HarnessConfig], None] = _nothing
    #: library versions recorded in ``machine_info["fbcache"]["versions"]``
    versions: Callable[[], dict[str, str | None]] = _no_versions
    #: every setting that changes the cache's behaviour, recorded in the fingerprint
    settings: Callable[[HarnessConfig], dict[str, Any]] = _no_settings
    #: ``--fbcache-compile`` modes under which this cache still decides every step and really skips
    #: blocks; anything else is refused before a model is built, with ``compile_note`` as the reason
    compile_modes: tuple[str, ...] = ("none",)
    compile_note: str = "not verified to work under torch.compile"
