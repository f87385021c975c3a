"""A synthetic history with very large runs, to profile ``fbcache report`` (and compare, history) at scale.

``python -m tools.large_history OUT --benchmarks 10000 --runs 2`` writes ``--runs`` runs of one
fingerprint, each with ``--benchmarks`` benchmarks: a prompt set of ``benchmarks / (thresholds + 1)``
prompts, every prompt with its uncached baseline and each threshold, as a prompt-set sweep saves
them. The benchmarks are copies of one measured benchmark (``tests/data/run.json``, tiny on CPU)
with their threshold, prompt, times and hits changed, so every file reads back like a real run.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import shutil
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
TEMPLATE = DATA / "run.json"
#: a real image of the tiny model, standing in for every benchmark's images
IMAGE = DATA / "tiny-reference.png"
MACHINE = "Linux-CPython-3.12-64bit"
THRESHOLDS = (0.05, 0.1, 0.2)


def _benchmark(template: dict[str, Any], threshold: float | None, prompt: int, steps: int,
               rng: random.Random) -> dict[str, Any]:
    bench = copy.deepcopy(template)
    label = "uncached" if threshold is None else f"t{threshold:g}"
    bench["name"] = f"test_{'uncached' if threshold is None else 'threshold'}[{'' if threshold is None else label + '-'}p{prompt}]"
    bench["fullname"] = f"benchmarks/test_fbcache_sweep.py::{bench['name']}"
    bench["params"] = {"fbcache_prompt": prompt, **({} if threshold is None else {"fbcache_threshold": threshold})}
    info = bench["extra_info"]
    seconds = [1.0 / (1.0 + (threshold or 0.0) * 4) * rng.uniform(0.97, 1.03) for _ in range(2)]
    hits = 0 if threshold is None else min(steps - 1, int(threshold * 10 * steps) // 2)
    trace = [False] + [threshold is not None and i % 2 == 0 and i // 2 < hits for i in range(1, steps)]
    info.update(threshold=threshold, steps=steps, rounds_s=seconds, prompt_index=prompt,
                prompt=f"synthetic prompt {prompt}", first_s=seconds[0], second_s=seconds[1],
                median_s=sum(seconds) / 2, speedup=None if threshold is None else 1.0 + threshold * 4,
                hits=None if threshold is None else sum(trace),
                computed_steps=None if threshold is None else steps - sum(trace),
                hits_per_round=[] if threshold is None else [sum(trace)] * 2,
                hit_trace=[] if threshold is None else trace,
                residual_diff_trace=[] if threshold is None else [None] + [rng.uniform(0.05, 0.5) for _ in range(steps - 1)],
                images={"first": f"flux_{label}_p{prompt}_first.png", "second": f"flux_{label}_p{prompt}_second.png"})
    bench["stats"] = {**bench["stats"], "data": seconds, "median": info["median_s"], "rounds": 2}
    return bench


def build_run(benchmarks: int, thresholds: tuple[float, ...] = THRESHOLDS, seed: int = 0) -> dict[str, Any]:
    """One run's JSON document with ``benchmarks`` benchmarks (rounded down to whole prompts)."""
    data = json.loads(TEMPLATE.read_text(encoding="utf-8"))
    template = data["benchmarks"][0]
    steps = int(template["extra_info"]["steps"])
    prompts = max(1, benchmarks // (len(thresholds) + 1))
    rng = random.Random(seed)
    data["benchmarks"] = [_benchmark(template, threshold, prompt, steps, rng)
                          for prompt in range(prompts) for threshold in (None, *thresholds)]
    fbcache = data["machine_info"]["fbcache"]
    workload = fbcache["fingerprint"]["workload"]
    fbcache["fingerprint"]["workload"] = f"{workload}, synthetic prompt set ({prompts} prompts)"
    return data


def write_history(storage: Path, benchmarks: int, runs: int = 2, thresholds: tuple[float, ...] = THRESHOLDS) -> list[Path]:
    """``runs`` numbered run files of one fingerprint under ``storage/MACHINE``; returns their paths."""
    directory = storage / MACHINE
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for number in range(1, runs + 1):
        data = build_run(benchmarks, thresholds, seed=number)
        data["datetime"] = f"2026-12-{number:02d}T03:00:00.000000+00:00" if number <= 28 else data["datetime"]
        path = directory / f"{number:04d}_synthetic.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        written.append(path)
    return written


def write_images(images_dir: Path, run_file: Path) -> int:
    """A copy of one real image under every image name the run records (the sweep's output directory)."""
    images_dir.mkdir(parents=True, exist_ok=True)
    names = {name for bench in json.loads(run_file.read_text(encoding="utf-8"))["benchmarks"]
             for name in bench["extra_info"]["images"].values()}
    for name in names:
        shutil.copyfile(IMAGE, images_dir / name)
    return len(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.large_history", description=__doc__.splitlines()[0])
    parser.add_argument("storage", type=Path, help="history directory to create (--benchmark-storage)")
    parser.add_argument("--benchmarks", type=int, default=10_000, help="benchmarks per run (default 10000)")
    parser.add_argument("--runs", type=int, default=2, help="runs of the same fingerprint (default 2)")
    parser.add_argument("--images", type=Path, help="also write the newest run's images into this directory")
    args = parser.parse_args(argv)
    written = write_history(args.storage, args.benchmarks, args.runs)
    for path in written:
        print(path)
    if args.images is not None:
        print(f"{write_images(args.images, written[-1])} images in {args.images}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
