"""Sharding a prompt set over several processes of one host (``--fbcache-shard``).

One process per GPU, started by an established launcher: ``torchrun --nproc-per-node N --no-python
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

import re
from collections.abc import Mapping
from dataclasses import dataclass

from fbcache.errors import ConfigError

ACCEPTED = "auto (torchrun's RANK/WORLD_SIZE), off, or R/N with 0 <= R < N"


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
        raise ConfigError(option, f"auto ({name}={raw!r})", ACCEPTED, f"{name} is not a whole number") from None


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
            raise ConfigError(option, f"auto (RANK={rank}, WORLD_SIZE={world})", ACCEPTED, "rank out of range")
        return Shard(rank, world, local, "torchrun") if world > 1 else None
    match = re.fullmatch(r"(\d+)/(\d+)", value)
    if not match:
        raise ConfigError(option, raw, ACCEPTED)
    rank, world = int(match.group(1)), int(match.group(2))
    if world < 1 or rank >= world:
        raise ConfigError(option, raw, ACCEPTED, "R must be below N")
    # by hand, each process is pinned with CUDA_VISIBLE_DEVICES (or --fbcache-device cuda:N): its GPU is 0
    return Shard(rank, world, 0, "option") if world > 1 else None


def shard_device(device: str, shard: Shard | None) -> str:
    """Under torchrun each shard its own GPU: a bare ``cuda`` becomes ``cuda:LOCAL_RANK``; explicit indices,
    CPU and shards given by hand (pinned with CUDA_VISIBLE_DEVICES) stay as they are."""
    if shard is not None and shard.origin == "torchrun" and device == "cuda":
        return f"cuda:{shard.local_rank}"
    return device
