"""Prompt sets (``--fbcache-prompts``), each prompt measured against its own uncached image, and their shards.

One prompt's image metrics and hits say little about a cache; published FBCache evaluations average over
prompt sets. A set is a file:

- ``.txt`` (or any other name): one prompt per line; blank lines and lines starting with ``#`` are
  skipped; every prompt uses ``--fbcache-seed``.
- ``.toml``: ``prompts = ["...", ...]`` or ``[[prompt]]`` tables with ``text`` and an optional ``seed``.
- ``.json``: a list of strings or of ``{"prompt": "...", "seed": N}``, or ``{"prompts": [...]}``.

``default`` names the set shipped in ``fbcache/prompts/default.txt`` (any ``<name>.txt`` there is a
name). The set's digest (prompts and seeds, in order) enters the run's fingerprint, so runs of
different sets are never compared.

A set can be sharded over several processes of one host (``--fbcache-shard``). One process per GPU, started by an established launcher: ``torchrun --nproc-per-node N --no-python
pytest benchmarks ...`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in each process, and
``--fbcache-shard auto`` (the default) reads them. Without torchrun, ``--fbcache-shard R/N`` with
``CUDA_VISIBLE_DEVICES`` does the same by hand. pytest-xdist is not used: pytest-benchmark 5 disables
itself in any xdist run (``--benchmark-enable`` does not override that) and its workers' results never
reach a saved file.

Shard R of N takes the prompts whose index i satisfies ``i % N == R``: a deterministic split, the
same on every host, so the union of the shards is the whole set. Each shard measures its own
uncached baselines, on its own GPU (``cuda:LOCAL_RANK``), and saves its own run; ``fbcache merge``
unions them into one run file.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fbcache.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "prompts"
ACCEPTED = ("default (the shipped 8-prompt set), a shipped set name, or a file: .txt (one prompt per line), "
            ".toml (prompts = [...] or [[prompt]] text/seed) or .json (a list of prompts or of {prompt, seed})")


@dataclass(frozen=True)
class PromptCase:
    """One prompt of a set and the seed of its generator."""

    text: str
    seed: int


@dataclass(frozen=True)
class PromptSet:
    name: str
    source: str
    cases: tuple[PromptCase, ...]

    @property
    def digest(self) -> str:
        """Short hash of the prompts and seeds, in order: what the fingerprint compares."""
        payload = json.dumps([[case.text, case.seed] for case in self.cases], ensure_ascii=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:8]

    def describe(self) -> dict[str, Any]:
        """What ``machine_info["fbcache"]["workload"]["prompt_set"]`` records."""
        return {"name": self.name, "digest": self.digest, "count": len(self.cases),
                "prompts": [{"text": c.text, "seed": c.seed} for c in self.cases]}


def shipped_names() -> list[str]:
    return sorted(path.stem for path in SHIPPED_DIR.glob("*.txt"))


def _fail(option: str, raw: str, why: str) -> ConfigError:
    return ConfigError(option, raw, ACCEPTED, why)


def _seed(option: str, raw: str, value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(option, raw, f"{where}: seed must be a whole number >= 0, got {value!r}")
    return value


def _case(option: str, raw: str, entry: Any, default_seed: int, where: str) -> PromptCase:
    text: Any
    if isinstance(entry, str):
        text, seed = entry, default_seed
    elif isinstance(entry, dict):
        text = entry.get("prompt", entry.get("text"))
        unknown = set(entry) - {"prompt", "text", "seed"}
        if unknown:
            raise _fail(option, raw, f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        seed = _seed(option, raw, entry["seed"], where) if "seed" in entry else default_seed
    else:
        raise _fail(option, raw, f"{where}: expected a prompt string or a table with 'prompt' and 'seed'")
    if not isinstance(text, str) or not text.strip():
        raise _fail(option, raw, f"{where}: empty or missing prompt text")
    if "\n" in text:
        raise _fail(option, raw, f"{where}: a prompt must be one line")
    return PromptCase(text.strip(), seed)


def _entries_from_data(option: str, raw: str, data: Any) -> list[Any]:
    if isinstance(data, dict):
        entries = data.get("prompts", data.get("prompt"))
        unknown = set(data) - {"prompts", "prompt"}
        if unknown:
            raise _fail(option, raw, f"unknown top-level key(s) {', '.join(sorted(unknown))}")
    else:
        entries = data
    if not isinstance(entries, list):
        raise _fail(option, raw, "no list of prompts found")
    return entries


def _read_entries(option: str, raw: str, path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(option, raw, f"cannot read it: {exc}") from None
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            return _entries_from_data(option, raw, tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise _fail(option, raw, f"not valid TOML: {exc}") from None
    if suffix == ".json":
        try:
            return _entries_from_data(option, raw, json.loads(text))
        except json.JSONDecodeError as exc:
            raise _fail(option, raw, f"not valid JSON: {exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def load_prompt_set(option: str, raw: str, default_seed: int) -> PromptSet:
    """The set named or pointed to by ``raw``; ConfigError, naming the option, for anything unusable."""
    value = str(raw).strip()
    shipped = SHIPPED_DIR / f"{value}.txt"
    if value and "/" not in value and shipped.is_file():
        path, name = shipped, value
    else:
        path, name = Path(value).expanduser(), Path(value).stem
        if not path.is_file():
            raise _fail(option, raw, f"no such file, and not a shipped set ({', '.join(shipped_names())})")
    entries = _read_entries(option, raw, path)
    cases = tuple(_case(option, raw, entry, default_seed, f"prompt {i + 1}") for i, entry in enumerate(entries))
    if not cases:
        raise _fail(option, raw, "the set has no prompts")
    if len(set(cases)) != len(cases):
        raise _fail(option, raw, "the same prompt and seed appear twice")
    return PromptSet(name=name, source=str(path), cases=cases)


# ------------------------------------------------------------------------------------ shards

SHARD_ACCEPTED = "auto (torchrun's RANK/WORLD_SIZE), off, or R/N with 0 <= R < N"


@dataclass(frozen=True)
class Shard:
    rank: int
    world_size: int
    #: the process's index on this host (torchrun's LOCAL_RANK): which GPU it takes
    local_rank: int
    #: "torchrun" or "option": who said so
    origin: str

    def indices(self, count: int) -> list[int]:
        """The prompt indices of this shard, out of ``count``."""
        return [i for i in range(count) if i % self.world_size == self.rank]

    def describe(self) -> dict[str, object]:
        return {"rank": self.rank, "world_size": self.world_size, "local_rank": self.local_rank,
                "origin": self.origin}


def _env_int(environ: Mapping[str, str], name: str, option: str) -> int:
    raw = environ.get(name, "")
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(option, f"auto ({name}={raw!r})", SHARD_ACCEPTED, f"{name} is not a whole number") from None


def parse_shard(option: str, raw: str, environ: Mapping[str, str]) -> Shard | None:
    """None when the run is not sharded (``off``, or ``auto`` outside a launcher, or a world of one)."""
    value = str(raw).strip().lower()
    if value == "off":
        return None
    if value == "auto":
        if "WORLD_SIZE" not in environ or "RANK" not in environ:
            return None
        world, rank = _env_int(environ, "WORLD_SIZE", option), _env_int(environ, "RANK", option)
        local = _env_int(environ, "LOCAL_RANK", option) if "LOCAL_RANK" in environ else rank
        if world < 1 or not 0 <= rank < world:
            raise ConfigError(option, f"auto (RANK={rank}, WORLD_SIZE={world})", SHARD_ACCEPTED, "rank out of range")
        return Shard(rank, world, local, "torchrun") if world > 1 else None
    match = re.fullmatch(r"(\d+)/(\d+)", value)
    if not match:
        raise ConfigError(option, raw, SHARD_ACCEPTED)
    rank, world = int(match.group(1)), int(match.group(2))
    if world < 1 or rank >= world:
        raise ConfigError(option, raw, SHARD_ACCEPTED, "R must be below N")
    # by hand, each process is pinned with CUDA_VISIBLE_DEVICES (or --fbcache-device cuda:N): its GPU is 0
    return Shard(rank, world, 0, "option") if world > 1 else None


def shard_device(device: str, shard: Shard | None) -> str:
    """Under torchrun each shard its own GPU: a bare ``cuda`` becomes ``cuda:LOCAL_RANK``; explicit indices,
    CPU and shards given by hand (pinned with CUDA_VISIBLE_DEVICES) stay as they are."""
    if shard is not None and shard.origin == "torchrun" and device == "cuda":
        return f"cuda:{shard.local_rank}"
    return device
