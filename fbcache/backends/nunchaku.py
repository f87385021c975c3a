"""nunchaku's first-block cache, on whichever supported release is installed (0.3.2, 1.x).

What changes between releases, and how this adapter follows it (read from nunchaku's source):

- **where the decision is made**: ``get_can_use_cache`` is called through the globals of the module
  that *defines* ``check_and_apply_cache`` - ``caching/utils.py`` on 0.3.2, ``caching/fbcache.py``
  from 1.0 on, where ``utils`` only re-imports it. We find that module from
  ``check_and_apply_cache.__module__`` and wrap the decision, and read the "nothing cached yet"
  buffer, there. 0.3.2 returns ``(bool, float)``, 1.x two 0-dim tensors: converted once each.
- **V1 or V2 transformer**: ``diffusers_adapters.apply_cache_on_pipe`` always picks the V1 adapter;
  a ``NunchakuFluxTransformer2DModelV2`` (1.x) needs ``diffusers_adapters.flux_v2``.
- **the double first-block cache** (a ``MULTI/SINGLE`` pair): applied as nunchaku's own tests apply
  it, ``apply_cache_on_pipe(pipe, use_double_fb_cache=True, residual_diff_threshold_multi=M,
  residual_diff_threshold_single=S)``, through the same V1 or V2 adapter. Every release fbcache
  supports has it (since 0.3.0, nunchaku #76), on both transformers; one whose adapters lack those
  arguments is refused before any model is built. The engine then decides ``mode="multi"`` after the
  first double-stream block and ``mode="single"`` after the first single-stream block: both are
  counted, each with its own "nothing cached yet" buffer.
- **re-applying** only updates the threshold. A V1 transformer counts as cached only after its
  first generation; a second apply before that would keep the first threshold, so we refuse it
  (the harness always generates between two applies) and check the threshold after every apply.
- **the off switch** is a negative threshold. V2 then calls the transformer's original forward: the
  uncached computation, so a V2 pipeline can run the uncached baseline again. V1 keeps the patched
  forward, which runs every block without deciding: all blocks computed, but through nunchaku's
  cached-blocks module, so it is not "no cache hooks at all" and the baseline must come first.
- Applying patches the pipeline *class* (``__call__``) for good, on every release.

Unsupported releases (0.2.x, 0.3.0-0.3.1) are refused before any model is built.

**Which nunchaku** is installed, which release, and can this GPU run it? Answered without weights.

Three different things answer to ``import nunchaku``:

- the real engine (nunchaku-tech/nunchaku), installed from its GitHub release wheels;
- an unrelated PyPI project of the same name (piece-wise linear segmentation), which
  ``pip install nunchaku`` gives you;
- fbcache's test stand-ins (``tests/standins/nunchaku-<version>``), which mirror one release's
  caching layer on plain diffusers blocks so the adapter can be tested on a CPU. Never the engine.

The engine's release is read from ``nunchaku/__version__.py`` (``nunchaku/__init__.py`` does not
import it); the wheel's metadata says e.g. ``1.1.0+torch2.7``, and the unrelated PyPI package
answers that query too, so it is only a fallback.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from fbcache import backends
from fbcache.backends import STANDIN_PREFIX, BackendSpec, DecisionLog
from fbcache.config import BY_NAME, HarnessConfig, Threshold, ThresholdPair, has_pairs
from fbcache.errors import BrokenRunError, ConfigError

INSTALL_HINT = (
    "install the real engine from its release wheels (https://github.com/nunchaku-tech/nunchaku/releases), "
    "choosing the wheel for your Python, torch and CUDA versions; `pip install nunchaku` installs an unrelated "
    "package"
)

#: SVDQuant 4-bit kernels by GPU architecture (compute capability as "major minor")
SUPPORTED_SM: dict[str, str] = {"75": "int4", "80": "int4", "86": "int4", "89": "int4", "120": "fp4", "121": "fp4"}

#: the oldest release whose cache takes a new threshold on the same pipeline (nunchaku PR #577)
MIN_SUPPORTED = (0, 3, 2)


@dataclass(frozen=True)
class NunchakuEngine:
    status: str  # "real", "standin", "unrelated" or "absent"
    version: str = ""

    @property
    def label(self) -> str:
        """What the history records as the nunchaku version."""
        return {
            "real": self.version or "unknown",
            "standin": f"{STANDIN_PREFIX}{self.version or 'an unknown release'} (tests only, not the real engine)",
            "unrelated": f"unrelated PyPI package {self.version}".strip(),
            "absent": "not installed",
        }[self.status]

    @property
    def release(self) -> tuple[int, int, int] | None:
        return parse_release(self.version)


def parse_release(version: str) -> tuple[int, int, int] | None:
    """``"1.1.0+torch2.7"`` -> (1, 1, 0); ``"1.2.0dev"`` -> (1, 2, 0); None when there is no X.Y.Z."""
    match = re.match(r"\s*v?(\d+)\.(\d+)\.(\d+)", version or "")
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def _declared_version() -> str:
    """``nunchaku/__version__.py``'s ``__version__``, or "" when the package has none."""
    try:
        return str(importlib.import_module("nunchaku.__version__").__version__)
    except (ImportError, AttributeError):
        return ""


def detect() -> NunchakuEngine:
    """Classify ``nunchaku`` by its files, importing it only if it has the engine's layout."""
    spec = importlib.util.find_spec("nunchaku")
    if spec is None or not spec.submodule_search_locations:
        return NunchakuEngine("absent")
    package_dir = Path(list(spec.submodule_search_locations)[0])
    try:
        wheel_version = importlib.metadata.version("nunchaku")
    except importlib.metadata.PackageNotFoundError:
        wheel_version = ""
    if not (package_dir / "caching").is_dir():
        return NunchakuEngine("unrelated", wheel_version)
    module = importlib.import_module("nunchaku")
    declared = _declared_version()
    if getattr(module, "__fbcache_standin__", False):
        return NunchakuEngine("standin", declared)
    return NunchakuEngine("real", declared or wheel_version)


def unsupported_release(version: str) -> str | None:
    """Why fbcache cannot sweep thresholds with this release's cache, or None when it can."""
    release = parse_release(version)
    if release is None:
        return f"cannot read nunchaku's release from nunchaku/__version__.py (got {version!r})"
    if release >= MIN_SUPPORTED:
        return None
    shown = ".".join(map(str, release))
    if release < (0, 3, 0):
        why = "re-applying its cache keeps the first threshold for every later one"
    else:
        why = "re-applying its cache for the next threshold crashes (nunchaku #437)"
    return f"nunchaku {shown} is not supported: {why}; upgrade to nunchaku >= 0.3.2"


def precision_for_capability(capability: tuple[int, int]) -> str:
    """'int4' or 'fp4' for this GPU; raises ValueError where the engine has no 4-bit kernels."""
    sm = f"{capability[0]}{capability[1]}"
    if sm not in SUPPORTED_SM:
        supported = ", ".join(f"sm_{k} ({v})" for k, v in SUPPORTED_SM.items())
        raise ValueError(f"nunchaku has no kernels for sm_{sm}; it supports {supported}")
    return SUPPORTED_SM[sm]


# ------------------------------------------------------------------------------------ the cache

#: nunchaku's own off switch: any negative threshold (0 still decides every step, and never hits)
OFF = -1.0
#: per decision (``mode``), the buffer that holds the last computed step's first-block residual; None
#: until the first step computed
FIRST_RESIDUAL = {"multi": "first_multi_hidden_states_residual", "single": "first_single_hidden_states_residual"}
#: what a MULTI/SINGLE pair is applied with, as nunchaku's tests/flux/test_flux_double_fb_cache*.py pass it
DOUBLE_CACHE_ARGUMENTS = ("use_double_fb_cache", "residual_diff_threshold_multi", "residual_diff_threshold_single")
#: the Flux adapters a threshold is applied through (V1; V2 from 1.0), inside the nunchaku package
FLUX_ADAPTERS = ("caching/diffusers_adapters/flux.py", "caching/diffusers_adapters/flux_v2.py")


def decision_module() -> ModuleType:
    """The module that defines ``check_and_apply_cache``: it calls ``get_can_use_cache`` through its
    own globals and owns the buffers (``caching.utils`` on 0.3.2, ``caching.fbcache`` on 1.x)."""
    utils = importlib.import_module("nunchaku.caching.utils")
    module = importlib.import_module(utils.check_and_apply_cache.__module__)
    missing = [name for name in ("get_can_use_cache", "get_buffer") if not callable(getattr(module, name, None))]
    if missing:
        raise BrokenRunError(f"{module.__name__} (nunchaku {detect().version}) has no {', '.join(missing)}; "
                             "this nunchaku layout is not supported")
    return module


def is_v2(transformer: Any) -> bool:
    """True for nunchaku 1.x's ``NunchakuFluxTransformer2DModelV2`` (which 0.3.2 does not have)."""
    try:
        from nunchaku import NunchakuFluxTransformer2DModelV2
    except ImportError:
        return False
    return isinstance(transformer, NunchakuFluxTransformer2DModelV2)


class _Recorder:
    """Where the wrapped decision writes: the log of the threshold being measured, if any."""

    log: DecisionLog | None = None


_RECORDER = _Recorder()


def install_decision_wrapper(module: ModuleType) -> None:
    """Wrap ``module.get_can_use_cache`` once per process; every call is noted in the current log."""
    decide = module.get_can_use_cache
    if getattr(decide, "__fbcache_wrapped__", False):
        return

    @functools.wraps(decide)
    def recorded(first_hidden_states_residual: Any, threshold: float, parallelized: bool = False,
                 mode: str = "multi") -> Any:
        nothing_cached = module.get_buffer(FIRST_RESIDUAL[mode]) is None
        can_use_cache, diff = decide(first_hidden_states_residual, threshold=threshold, parallelized=parallelized,
                                     mode=mode)
        log = _RECORDER.log
        if log is not None:  # "single": the second decision of a step, made only with use_double_fb_cache
            # 1.x returns 0-dim tensors: one host sync each, as the engine's own `if can_use_cache` does
            log.note_decision(hit=bool(can_use_cache), diff=None if nothing_cached else float(diff),
                              single_stream=mode == "single")
        return can_use_cache, diff

    recorded.__fbcache_wrapped__ = True  # type: ignore[attr-defined]
    setattr(module, "get_can_use_cache", recorded)  # noqa: B010 - a module of nunchaku's, found at run time


class NunchakuFBCache:
    """nunchaku's FBCache on one pipeline: applied per threshold, switched off with a negative one."""

    name = "nunchaku"

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.v2 = is_v2(pipe.transformer)
        self.can_run_uncached = True
        self._applied = False
        install_decision_wrapper(decision_module())

    def _apply(self, threshold: Threshold) -> None:
        if self.v2:
            from nunchaku.caching.diffusers_adapters.flux_v2 import apply_cache_on_pipe
        else:
            from nunchaku.caching.diffusers_adapters import apply_cache_on_pipe
        if isinstance(threshold, ThresholdPair):
            apply_cache_on_pipe(self.pipe, use_double_fb_cache=True, residual_diff_threshold_multi=threshold.multi,
                                residual_diff_threshold_single=threshold.single)
        else:  # use_double_fb_cache defaults to False, so a pair applied before is switched off
            apply_cache_on_pipe(self.pipe, residual_diff_threshold=threshold)
        self._applied = True

    def _pending_first_apply(self) -> bool:
        """V1 applied, but never run in a generation: a re-apply now would not take effect."""
        return self._applied and not self.v2 and not getattr(self.pipe.transformer, "_is_cached", False)

    def effective_threshold(self) -> Threshold | None:
        """The threshold (or pair) nunchaku will use; None for a V1 transformer that has not generated yet."""
        transformer = self.pipe.transformer
        if self.v2:
            holder = transformer
        else:
            blocks = getattr(transformer, "cached_transformer_blocks", None)
            if blocks is None:
                return None
            holder = blocks[0]
        multi = float(holder.residual_diff_threshold_multi)
        if holder.use_double_fb_cache:
            return ThresholdPair(multi, float(holder.residual_diff_threshold_single))
        return multi

    def enable(self, threshold: Threshold, log: DecisionLog) -> None:
        if self._pending_first_apply():
            raise BrokenRunError("nunchaku's cache was applied but no generation ran since; applying it again now "
                                 "would keep the first threshold (a V1 transformer is cached only once it ran)")
        self._apply(threshold)
        effective = self.effective_threshold()
        if effective is not None and effective != threshold:
            raise BrokenRunError(f"nunchaku kept threshold {effective:g} after applying {threshold:g}")
        self.can_run_uncached = False
        _RECORDER.log = log

    def disable(self) -> None:
        _RECORDER.log = None
        if self._pending_first_apply():
            return  # nothing generated (the run broke); a re-apply would not take effect anyway
        self._apply(OFF)
        # V2 now calls the original forward; V1 keeps its patched forward (all blocks, no decision)
        self.can_run_uncached = self.v2


# ------------------------------------------------------------------------------------ checks


def _capability(device: str) -> tuple[int, int]:
    import torch

    index = int(device.split(":")[1]) if ":" in device else 0
    return torch.cuda.get_device_capability(index)


def check_engine(option: str, value: str, accepted: str, to_quantize: bool) -> NunchakuEngine:
    """The installed ``nunchaku`` is the real engine, or (for the cache alone) fbcache's stand-in."""
    engine = detect()
    if engine.status == "absent":
        raise ConfigError(option, value, accepted, f"nunchaku is not installed: {INSTALL_HINT}")
    if engine.status == "unrelated":
        raise ConfigError(option, value, accepted,
                          f"the installed 'nunchaku' {engine.version} is an unrelated PyPI package; "
                          f"pip uninstall nunchaku, then {INSTALL_HINT}")
    if engine.status == "standin" and to_quantize:
        raise ConfigError(option, value, accepted,
                          "only fbcache's test stand-in for nunchaku is installed; it cannot quantize")
    return engine


def check_kernels(option: str, value: str, accepted: str, device: str) -> None:
    """The engine has 4-bit kernels for this GPU."""
    try:
        precision_for_capability(_capability(device))
    except ValueError as exc:
        raise ConfigError(option, value, accepted, str(exc)) from None


def missing_double_cache() -> str | None:
    """Why the installed nunchaku cannot take a MULTI/SINGLE pair, or None: each of its Flux adapters must
    accept ``DOUBLE_CACHE_ARGUMENTS`` (read from their source with ``ast``; nothing is imported)."""
    spec = importlib.util.find_spec("nunchaku")
    if spec is None or not spec.submodule_search_locations:
        return "nunchaku is not installed"
    package_dir = Path(list(spec.submodule_search_locations)[0])
    for relative in FLUX_ADAPTERS:
        path = package_dir / relative
        if not path.is_file():
            continue  # flux_v2.py exists from 1.0 on
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        function = next((node for node in tree.body if isinstance(node, ast.FunctionDef)
                         and node.name == "apply_cache_on_transformer"), None)
        arguments = set() if function is None else {a.arg for a in function.args.args + function.args.kwonlyargs}
        lacking = [name for name in DOUBLE_CACHE_ARGUMENTS if name not in arguments]
        if lacking:
            return (f"nunchaku {detect().version or '(unknown release)'} has no double first-block cache: "
                    f"nunchaku/{relative} apply_cache_on_transformer takes no {', '.join(lacking)}")
    return None


def preflight(config: HarnessConfig) -> None:
    """The engine (or a stand-in) is installed, serves this run, and its release can sweep thresholds on
    one pipeline (and, for MULTI/SINGLE pairs, has the double first-block cache)."""
    option, value = "--fbcache-cache-backend", config.cache_backend
    others = ", ".join(name for name in backends.names() if name != "nunchaku")
    engine = check_engine(option, value, others, to_quantize=False)
    pair = next((t for t in config.thresholds if isinstance(t, ThresholdPair)), None)
    why_not_pairs = missing_double_cache() if pair is not None else None
    if why_not_pairs is not None:
        raise ConfigError(BY_NAME["thresholds"].cli, f"{pair:g}",
                          "single thresholds with this nunchaku; MULTI/SINGLE pairs with nunchaku >= 0.3.2",
                          why_not_pairs)
    if engine.status == "real":
        if config.quant != "nunchaku":
            raise ConfigError(option, value, others,
                              "nunchaku's cache adapter needs nunchaku's transformer: add --fbcache-quant nunchaku")
        check_kernels(option, value, others, config.device)
    why = unsupported_release(engine.version)
    if why is not None:
        raise ConfigError(option, value, f"{others}, or nunchaku >= 0.3.2", why)


SPEC = BackendSpec(
    name="nunchaku",
    summary="nunchaku's apply_cache_on_pipe, 0.3.2 or 1.x; MULTI/SINGLE threshold pairs use its double first-block "
            "cache (needs --fbcache-quant nunchaku; patches the pipeline class)",
    create=lambda pipe, config: NunchakuFBCache(pipe),
    removable=False,
    preflight=preflight,
    versions=lambda: {"nunchaku": detect().label},
    # True when the sweep has MULTI/SINGLE pairs: the double first-block cache, for those thresholds
    settings=lambda config: {"use_double_fb_cache": has_pairs(config.thresholds)},
    compile_note="nunchaku's engine runs its own CUDA kernels and its cache patches the pipeline class; "
                 "it is not run under torch.compile",
    available=lambda: detect().status in ("real", "standin"),
    two_stages=True,
    standin="a folder with fbcache's nunchaku STAND-IN (tests/standins/nunchaku-1.1.0): put on PYTHONPATH for "
            "the nunchaku sweep only; the table says it is a stand-in",
)
