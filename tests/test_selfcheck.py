"""``--fbcache-selfcheck``: the bare loop of the same pipeline call, timed after the uncached benchmark, whichever
schedule ran it, and the harness's overhead against it printed."""

from __future__ import annotations

import json

import pytest

from conftest import FAST, run_sweep
from fbcache.history import UNCACHED, BenchRecord

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("interleave", ["true", "false"])
def test_the_selfcheck_times_a_bare_loop_after_the_uncached_benchmark_in_either_schedule(tmp_path, interleave):
    done = run_sweep(tmp_path, *FAST, "--fbcache-thresholds", "0", "--fbcache-selfcheck", "--fbcache-interleave",
                     interleave, "--benchmark-autosave")
    assert done.returncode == 0, done.output
    benchmarks = json.loads(done.saved_runs()[0].read_text())["benchmarks"]
    records = {r.label: r for r in (BenchRecord.from_extra_info(b["extra_info"]) for b in benchmarks)}
    assert len(records[UNCACHED].bare_loop_s) == 2 and records["0"].bare_loop_s == []
    assert "self-check: recorded median vs bare loop median:" in done.output
