"""The persistent compile cache (``--fbcache-compile-cache DIR``), and whether each compilation found it.

torch.compile keeps two caches on disk that a later process reuses: inductor's (its FX graph cache and
AOTAutograd cache, under ``TORCHINDUCTOR_CACHE_DIR``) and Triton's compiled kernels
(``TRITON_CACHE_DIR``). By default both live in the system temp directory, which a runner's cleanup or
reboot wipes. :func:`activate` points them into DIR before anything compiles, so the next run of an
unchanged stack loads its graphs instead of compiling them. dynamo still traces every graph in each
process: a warm first call is cheaper, not free (measured: docs/gpus.md, "Compile cache").

Each compiled cache state's untimed first call (:func:`fbcache.plugin.schedule.compile_warmup`) counts
inductor's cache lookups, and :func:`state` names the outcome: ``warm`` (every lookup hit), ``cold``
(every one missed), ``partial``, ``bypassed`` (inductor would not cache a graph) or ``uncached``
(graphs compiled without any lookup: a backend without a cache, such as the tests' aot_eager).

DIR also keeps ``fbcache-compiled.json``: the stacks (accelerator, library versions, model, quantization
and its settings, compile mode and backend, resolution) whose graphs a run compiled into it. A run of a
stack listed there whose first call still misses has met a warm start that silently compiled cold:
:meth:`CompileCache.finding` says so, and the run is saved marked (plugin/display.py, verdicts/judge.py).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fbcache.history.storage import replace_file

#: the stacks whose graphs runs compiled into the directory, by :func:`stack_key`
MANIFEST = "fbcache-compiled.json"
#: torch's variables for its on-disk caches, and each one's folder under DIR ("": DIR itself)
TORCH_CACHE_VARIABLES = {"TORCHINDUCTOR_CACHE_DIR": "", "TRITON_CACHE_DIR": "triton"}


def activate(directory: Path, environ: MutableMapping[str, str] | None = None) -> None:
    """Make DIR hold torch's compile caches; call before the first compilation of the process
    (inductor reads these variables at each lookup, and hands them to its compile workers)."""
    environ = os.environ if environ is None else environ
    directory.mkdir(parents=True, exist_ok=True)
    for variable, sub in TORCH_CACHE_VARIABLES.items():
        environ[variable] = str(directory / sub) if sub else str(directory)


def stack_key(info: Mapping[str, Any]) -> str:
    """What decides whether a compiled graph can be reused, from a run's ``machine_info["fbcache"]``:
    two runs with the same key compile the same graphs with the same libraries on the same accelerator."""
    workload = info.get("workload") or {}
    stack = {"accelerator": info.get("accelerator"), "versions": info.get("versions"), "model": info.get("model"),
             "quantization": info.get("quantization"), "quant_config": info.get("quant_config"),
             "compile": info.get("compile"), "resolution": workload.get("resolution")}
    return hashlib.sha256(json.dumps(stack, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stack_text(info: Mapping[str, Any]) -> str:
    """The stack in a few words, for the manifest and the messages."""
    compile_info = info.get("compile") or {}
    versions = info.get("versions") or {}
    return (f"{info.get('model')}, {info.get('quantization')}, {compile_info.get('mode')} "
            f"({compile_info.get('backend')}), {(info.get('workload') or {}).get('resolution')}, "
            f"{(info.get('accelerator') or {}).get('name')}, torch {versions.get('torch')}")


def read_manifest(directory: Path) -> dict[str, dict[str, Any]]:
    """The stacks compiled into DIR so far; a missing or unreadable manifest lists none (nothing is expected warm)."""
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    stacks = data.get("stacks") if isinstance(data, dict) else None
    return {k: v for k, v in stacks.items() if isinstance(v, dict)} if isinstance(stacks, dict) else {}


def state(graphs: int, hits: int, misses: int, bypasses: int) -> str | None:
    """What one first call's cache lookups came to; None when it compiled nothing."""
    if misses and hits:
        return "partial"
    if misses:
        return "cold"
    if bypasses:
        return "bypassed"
    if hits:
        return "warm"
    return "uncached" if graphs else None


@dataclass
class CompileCache:
    """One session's compile cache: DIR (None: torch's default temp directory) and this stack's entry."""

    directory: Path | None
    key: str = ""
    stack: str = ""
    #: DIR's manifest entry for this stack when the session started (None: never compiled into DIR)
    expected: dict[str, Any] | None = None
    remembered: bool = False

    @classmethod
    def open(cls, directory: Path | None, info: Mapping[str, Any]) -> CompileCache:
        """Read what DIR holds (nothing is created or written before the first compilation)."""
        if directory is None:
            return cls(None)
        key = stack_key(info)
        return cls(directory, key, stack_text(info), read_manifest(directory).get(key))

    def activate(self) -> None:
        if self.directory is not None:
            activate(self.directory)

    def outcome(self, label: str, graphs: int, hits: int, misses: int, bypasses: int) -> dict[str, Any]:
        """The record's ``compile_cache`` entry for one first call; remembers a stack that compiled into DIR,
        and keeps a finding when a stack DIR already held missed anyway."""
        found = state(graphs, hits, misses, bypasses)
        entry: dict[str, Any] = {"state": found, "hits": hits, "misses": misses, "bypasses": bypasses,
                                 "dir": None if self.directory is None else str(self.directory)}
        if self.directory is None:
            return entry
        if self.expected is not None and misses:
            entry["finding"] = (f"{label}: compiled {misses} graph(s) cold ({hits} cache hit(s)) although "
                                f"{self.directory} held this stack's graphs (compiled into it "
                                f"{self.expected.get('compiled', '?')}): a warm start that recompiled")
        if misses and self.expected is None and not self.remembered:
            self.remember()
        return entry

    def remember(self) -> None:
        """List this stack in DIR's manifest, atomically (a failed write loses only the expectation)."""
        assert self.directory is not None
        stacks = read_manifest(self.directory)
        stacks[self.key] = {"stack": self.stack,
                            "compiled": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        try:
            replace_file(self.directory / MANIFEST, json.dumps({"stacks": stacks}, indent=1, sort_keys=True).encode())
        except OSError:
            return
        self.remembered = True


__all__ = ["MANIFEST", "TORCH_CACHE_VARIABLES", "CompileCache", "activate", "read_manifest", "stack_key",
           "stack_text", "state"]
