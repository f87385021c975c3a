"""``fbcache merge``: the shards of one sharded sweep become ONE pytest-benchmark run file.

A sweep sharded over N processes (``torchrun --nproc-per-node N --no-python pytest benchmarks ...``,
see :mod:`fbcache.config`) leaves N run files, one per shard, each under the storage's
``shards/R-of-N`` folder. The merged file is what an unsharded run of the same sweep would have
saved: the same machine_info (and so the same fingerprint), minus the shard's own entry, and the
union of the shards' benchmarks, with the slowest shard's startup (model load, cold start). Which GPU
ran a benchmark stays in its ``extra_info["shard"]`` (rank, world size, device, GPU name). pytest-benchmark reads it like any other run
(``--benchmark-compare``, ``pytest-benchmark compare``), and so does ``fbcache compare``.

Nothing is merged unless it is one sweep: every shard present once, one fingerprint, one commit,
one set of thresholds, every prompt of the set exactly once. The file is written atomically and
never overwrites (:func:`fbcache.history.storage.write_new_file`); a refusal is a MergeError (exit 2).
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_benchmark.utils import safe_dumps

from fbcache.cli import DEFAULT_STORAGE, storage_path
from fbcache.errors import EXIT_CLEAN, MergeError
from fbcache.history import STARTUP_KEY, BenchRecord, Startup, order_key, slowest_startup
from fbcache.history.fingerprint import fingerprint_differences, fingerprint_of
from fbcache.history.storage import next_run_name, parse_run, run_files, write_new_file
from fbcache.render import markdown_table

HELP = "merge the shards of a sharded sweep into one run file"
DESCRIPTION = "merge the shards of a sharded sweep (torchrun or --fbcache-shard) into one pytest-benchmark run file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", nargs="+", help="shard run files, or shard directories (their newest run), "
                                                  "e.g. .benchmarks/shards/0-of-2 .benchmarks/shards/1-of-2")
    parser.add_argument("--out", default=DEFAULT_STORAGE, help="storage to save the merged run in (default .benchmarks)")
    parser.add_argument("--name", default="merged", help="saved as NNNN_<name>.json (default merged)")
    parser.add_argument("--machine-id", help="storage folder (default: the shards' pytest-benchmark machine id)")


def run(args: argparse.Namespace) -> int:
    inputs = [Path(p) for p in args.shards]
    merged = merge_shards(inputs)
    # the shards' pytest-benchmark machine id: the folder their run files are in
    machine_id = args.machine_id or resolve_inputs(inputs)[0].parent.name
    path = write_merged(merged, storage_path(args.out), args.name, machine_id)
    run = parse_run(path, merged)
    shards = merged["machine_info"]["fbcache"]["merged_from"]
    print(markdown_table(run.records.values()))
    print(f"merged {shards['world_size']} shards ({', '.join(shards['runs'])}) into {path}")
    return EXIT_CLEAN


@dataclass
class Shard:
    path: Path
    data: dict[str, Any]

    @property
    def info(self) -> dict[str, Any]:
        return self.data["machine_info"]["fbcache"]

    @property
    def entry(self) -> dict[str, Any]:
        return self.info.get("shard") or {}


def resolve_inputs(paths: list[Path]) -> list[Path]:
    """Run files as given; a directory stands for the newest run file under it."""
    files = []
    for path in paths:
        if path.is_dir():
            found = run_files(path) or sorted(path.rglob("[0-9][0-9][0-9][0-9]_*.json"))
            if not found:
                raise MergeError(f"{path}: no run file in it")
            files.append(found[-1])
        elif path.is_file():
            files.append(path)
        else:
            raise MergeError(f"{path}: no such file or directory")
    return files


def _load(path: Path) -> Shard:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        parse_run(path, data)  # an fbcache run, every benchmark readable
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise MergeError(f"{path}: {exc}") from None
    shard = Shard(path, data)
    if not shard.entry:
        raise MergeError(f"{path}: not a shard (no machine_info fbcache.shard; was it run under torchrun "
                         "or with --fbcache-shard R/N?)")
    return shard


def _check_one_sweep(shards: list[Shard]) -> int:
    """Every rank once, one fingerprint, one commit, one threshold set, every prompt once; the world size."""
    world = {int(s.entry.get("world_size") or 0) for s in shards}
    if len(world) != 1:
        raise MergeError(f"the shards come from sweeps of different sizes: world sizes {sorted(world)}")
    size = world.pop()
    ranks = sorted(int(s.entry.get("rank", -1)) for s in shards)
    if ranks != list(range(size)):
        missing = sorted(set(range(size)) - set(ranks))
        doubled = sorted({r for r in ranks if ranks.count(r) > 1})
        raise MergeError(f"need each of the {size} shards exactly once; missing ranks {missing}, repeated {doubled}")
    first = shards[0]
    for other in shards[1:]:
        differences = fingerprint_differences(fingerprint_of(first.data["machine_info"]),
                                              fingerprint_of(other.data["machine_info"]))
        if differences:
            raise MergeError(f"{other.path} is not the same sweep as {first.path}: " + "; ".join(differences))
        if (first.data.get("commit_info") or {}).get("id") != (other.data.get("commit_info") or {}).get("id"):
            raise MergeError(f"{other.path} ran another commit than {first.path}")
    thresholds = [sorted({str(b["extra_info"].get("threshold")) for b in s.data["benchmarks"]}) for s in shards]
    if any(t != thresholds[0] for t in thresholds):
        raise MergeError(f"the shards swept different thresholds: {thresholds}")
    names = [b["fullname"] for s in shards for b in s.data["benchmarks"]]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise MergeError(f"benchmarks in more than one shard: {', '.join(repeated)}")
    prompt_set = (first.info.get("workload") or {}).get("prompt_set") or {}
    count = int(prompt_set.get("count", 1))
    indices = sorted({b["extra_info"].get("prompt_index") for s in shards for b in s.data["benchmarks"]},
                     key=lambda i: -1 if i is None else i)
    if indices != list(range(count)):
        raise MergeError(f"the shards cover prompts {indices}, the set has {count}")
    return size


def merge_shards(paths: list[Path]) -> dict[str, Any]:
    """The merged pytest-benchmark document of the shards in ``paths`` (files or shard directories)."""
    shards = sorted((_load(p) for p in resolve_inputs(paths)), key=lambda s: int(s.entry.get("rank", 0)))
    if not shards:
        raise MergeError("no shard run files given")
    size = _check_one_sweep(shards)
    merged = copy.deepcopy(shards[0].data)
    info = merged["machine_info"]["fbcache"]
    info.pop("shard", None)
    info["merged_from"] = {"world_size": size, "runs": [s.path.name for s in shards]}
    benchmarks = []
    for shard in shards:
        accelerator = shard.info.get("accelerator") or {}
        entry = {"rank": shard.entry.get("rank"), "world_size": size, "device": shard.entry.get("device"),
                 "gpu_name": accelerator.get("name"), "run": shard.path.name}
        for bench in shard.data["benchmarks"]:
            bench = copy.deepcopy(bench)
            bench["extra_info"]["shard"] = entry
            benchmarks.append(bench)
    merged["benchmarks"] = sorted(benchmarks, key=lambda b: order_key(BenchRecord.from_extra_info(b["extra_info"])))
    merged["datetime"] = max(str(s.data.get("datetime", "")) for s in shards)
    # each shard loaded its own model: the merged run waited for the slowest load and first generation
    startup = slowest_startup(Startup.from_run(s.data) for s in shards)
    merged.pop(STARTUP_KEY, None)
    if startup is not None:
        merged[STARTUP_KEY] = startup.to_json()
    return merged


def write_merged(merged: dict[str, Any], storage: Path, save: str, machine_id: str) -> Path:
    """Save the merged run as the next numbered run of ``storage/machine_id``; atomic, never overwriting."""
    directory = storage / machine_id
    directory.mkdir(parents=True, exist_ok=True)
    payload = safe_dumps(merged, ensure_ascii=True, indent=4).encode()
    return write_new_file(directory, lambda: next_run_name(directory, save), payload)
