"""A prompt-set sweep sharded over 2 processes by torchrun, merged, against the same sweep unsharded.

Runs on CPU: torchrun starts two ``pytest benchmarks`` processes (RANK 0 and 1 of WORLD_SIZE 2),
each measures its half of the set with its own uncached baselines and saves its own run under
``shards/R-of-2``; ``fbcache merge`` makes one run file of them. Hits are deterministic, so the
merged run must have exactly the unsharded run's hits, step by step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_sweep
from fbcache.history.storage import run_files

pytestmark = pytest.mark.integration
PROMPTS = ["a red circle at the top left", "a big blue square in the center",
           "A cute panda holding a sign that says hello world"]
SWEEP = ["--fbcache-steps", "8", "--fbcache-thresholds", "0 0.5", "--fbcache-rounds", "1",
         "--fbcache-warmup-rounds", "0", "--benchmark-autosave", "--fbcache-bounds", "none"]
ENV = {"OMP_NUM_THREADS": "1"}


def _environment() -> dict[str, str]:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), **ENV}
    return {k: v for k, v in environment.items() if not k.startswith("FBCACHE_")}


def fbcache(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fbcache", *args], cwd=cwd, env=_environment(),
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> Path:
    """The unsharded sweep, then the same sweep sharded over 2 processes, in one storage."""
    base = tmp_path_factory.mktemp("sharding")
    prompts = base / "set.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    single = run_sweep(base, "--fbcache-prompts", str(prompts), *SWEEP, env=ENV)
    assert single.returncode == 0, single.output
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--no-python",
               sys.executable, "-m", "pytest", str(ROOT / "benchmarks"), "-p", "no:cacheprovider", "-q",
               f"--benchmark-storage=file://{base / 'history'}", "--fbcache-output-dir", str(base / "images"),
               "--fbcache-prompts", str(prompts), *SWEEP]
    done = subprocess.run(command, cwd=base, env=_environment(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shard 0/2 (torchrun): prompts p0, p2 on cpu" in done.stdout
    assert "shard 1/2 (torchrun): prompts p1 on cpu" in done.stdout
    return base


def test_shards_save_apart_and_merge_into_one_run_with_identical_hits(sweeps):
    storage = sweeps / "history"
    [single_path] = run_files(storage)
    shards = sorted(storage.glob("shards/*-of-2"))
    assert [s.name for s in shards] == ["0-of-2", "1-of-2"]
    assert (sweeps / "images" / "results-shard1-of-2.md").is_file()

    alone = fbcache("merge", str(shards[0]), "--out", str(storage), cwd=sweeps)
    assert alone.returncode == 2 and "missing ranks [1]" in alone.stderr
    assert len(run_files(storage)) == 1, "a refused merge writes nothing"

    merged = fbcache("merge", *map(str, shards), "--out", str(storage), cwd=sweeps)
    assert merged.returncode == 0, merged.stderr
    merged_path = run_files(storage)[-1]
    assert merged_path.name.endswith("_merged.json") and merged_path.parent == single_path.parent

    single, union = json.loads(single_path.read_text()), json.loads(merged_path.read_text())
    assert sorted(b["name"] for b in union["benchmarks"]) == sorted(b["name"] for b in single["benchmarks"])
    assert union["machine_info"]["fbcache"]["fingerprint"] == single["machine_info"]["fbcache"]["fingerprint"]
    assert "shard" not in union["machine_info"]["fbcache"]
    startups = [json.loads(run_files(shard)[-1].read_text())["fbcache_startup"] for shard in shards]
    assert union["fbcache_startup"] == {key: max(s[key] for s in startups) for key in ("model_load_s", "cold_start_s")}
    alone_hits = {b["name"]: (b["extra_info"]["hits"], b["extra_info"]["hit_trace"]) for b in single["benchmarks"]}
    for bench in union["benchmarks"]:
        shard = bench["extra_info"]["shard"]
        assert shard["world_size"] == 2 and shard["device"] == "cpu" and shard["gpu_name"].startswith("cpu")
        assert shard["rank"] == bench["extra_info"]["prompt_index"] % 2
        assert (bench["extra_info"]["hits"], bench["extra_info"]["hit_trace"]) == alone_hits[bench["name"]]

    compared = fbcache("compare", "--storage", str(storage), "--latest", merged_path.stem,
                       "--baseline", single_path.stem, "--json", str(sweeps / "compare.json"), cwd=sweeps)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    result = json.loads((sweeps / "compare.json").read_text())
    hits = [v["status"] for row in result["rows"] for v in row["verdicts"] if v["metric"] == "hits"]
    assert len(hits) == 6 and set(hits) == {"ok"}, "2 thresholds x 3 prompts"

    # pytest-benchmark's own CLI (the `pytest-benchmark` console script)
    cli = "import sys; from pytest_benchmark.cli import main; sys.argv[0] = 'pytest-benchmark'; main()"
    by_pytest_benchmark = subprocess.run([sys.executable, "-c", cli, "compare", str(single_path), str(merged_path)],
                                         cwd=sweeps, capture_output=True, text=True)
    assert by_pytest_benchmark.returncode == 0, by_pytest_benchmark.stderr
    assert "test_threshold[t0.5-p2]" in by_pytest_benchmark.stdout + by_pytest_benchmark.stderr
