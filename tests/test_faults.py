"""Faults at the edges of a sweep, end to end: a disk that fills while the run is saved, and malformed
files in the storage that ``--benchmark-compare`` reads. Each ends in one line; the history stays whole."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import FAST, MODEL, run_sweep
from fbcache.history.storage import run_files

pytestmark = pytest.mark.integration

SWEEP = ("--fbcache-model", MODEL, *FAST, "--fbcache-thresholds", "0.5", "--fbcache-bounds", "none")


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """One saved run that later sweeps of the same workload append to or compare with (copy it)."""
    base = tmp_path_factory.mktemp("first")
    result = run_sweep(base, *SWEEP, "--benchmark-autosave")
    assert result.returncode == 0, result.output
    return result


def copy_history(first, tmp_path: Path) -> Path:
    shutil.copytree(first.storage, tmp_path / "history")
    return tmp_path / "history"


def snapshot(storage: Path) -> dict[str, bytes]:
    return {str(p.relative_to(storage)): p.read_bytes() for p in storage.rglob("*") if p.is_file()
            and p.name != ".fbcache.lock"}


@pytest.mark.xdist_group("faults-first")
def test_a_disk_that_fills_during_the_save_leaves_the_history_as_it_was(first, sweep, tmp_path):
    storage = copy_history(first, tmp_path)
    before = snapshot(storage)
    result = sweep(*SWEEP, "--benchmark-autosave", plugins=("plugins.faults",),
                   env={"FBCACHE_TEST_FAULT": "disk-full", "FBCACHE_TEST_FULL_DIR": str(storage)})
    assert result.returncode == 3, result.output
    assert "Traceback" not in result.output and "INTERNALERROR" not in result.output, result.output
    not_saved = [line for line in result.output.splitlines() if "NOT saved" in line]
    assert len(not_saved) == 1 and "No space left on device" in not_saved[0], result.output
    assert "| 0.5 |" in result.output, "the results table is still printed"
    assert snapshot(storage) == before, "nothing partial, nothing lost"


MALFORMED = [
    ("median-string", lambda data: data["benchmarks"][0]["stats"].update(median="fast"), "stats.median = 'fast'"),
    ("machine-info-missing", lambda data: data.pop("machine_info"), "no fbcache fingerprint"),
]


@pytest.mark.xdist_group("faults-first")
@pytest.mark.parametrize("edit, fragment", [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_benchmark_compare_skips_a_malformed_run_with_one_warning(first, sweep, tmp_path, edit, fragment):
    storage = copy_history(first, tmp_path)
    [good] = run_files(storage)
    data = json.loads(good.read_text())
    edit(data)
    bad = good.with_name("0002_malformed.json")
    bad.write_text(json.dumps(data))
    result = sweep(*SWEEP, "--benchmark-compare")
    assert result.returncode == 0, result.output
    warnings = [line for line in result.output.splitlines() if str(bad) in line]
    assert len(warnings) == 1 and "skipped" in warnings[0] and fragment in warnings[0], result.output
    assert f"Comparing against benchmarks from: {good.parent.name}/{good.name}" in result.output
