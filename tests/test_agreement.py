"""Cross-backend agreement: the verdict on synthetic runs, and ``fbcache agree`` on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from fbcache import backends
from fbcache.backends import BackendSpec
from fbcache.cli import agree, build_parser
from fbcache.cli.agree import AgreementError, BackendRun, compare_backends, first_difference, markdown
from fbcache.history import BenchRecord
from fbcache.history.storage import Run

WORKLOAD = "8 steps, 64x64, seed 0, prompt f0979f5e"


def record(threshold: float | None, hits: str = "", diffs: list[float | None] | None = None) -> BenchRecord:
    trace = [c == "." for c in hits]
    return BenchRecord(threshold=threshold, model="tiny", quantization="none", cache_backend="x", steps=len(hits),
                       resolution="64x64", seed=0, hits=sum(trace) if hits else None, hit_trace=trace,
                       residual_diff_trace=diffs if diffs is not None else [None] + [0.3] * max(len(hits) - 1, 0))


def run(backend: str, records: list[BenchRecord], workload: str = WORKLOAD, nunchaku: str = "") -> BackendRun:
    info = {"fbcache": {"fingerprint": {"accelerator": "cpu", "model": "tiny", "quantization": "none",
                                        "cache_backend": backend, "workload": workload},
                        "versions": {"nunchaku": nunchaku} if nunchaku else {}}}
    return BackendRun(backend, Run(path=Path(f"{backend}.json"), datetime="", machine_info=info, commit_info={},
                                   records={r.label: r for r in [record(None)] + records}))


def test_identical_maps_agree_and_the_standin_is_named():
    agreement = compare_backends([run("diffusers", [record(0.5, "#..#")]), run("cache-dit", [record(0.5, "#..#")]),
                                  run("nunchaku", [record(0.5, "#..#")], nunchaku="stand-in of 1.1.0 (tests only)")])
    assert agreement.ok
    table = markdown(agreement)
    assert "nunchaku STAND-IN 1.1.0" in table and "`#..#`" in table and "all backends agree" in table
    rows = [line for line in table.splitlines() if line.startswith("|")]
    assert {line.count("|") - line.count("\\|") for line in rows} == {rows[0].count("|")}  # renders as one table


def test_a_difference_far_from_the_threshold_is_a_disagreement():
    ref, other = record(0.5, "#..#", [None, 0.3, 0.3, 0.7]), record(0.5, "#.##", [None, 0.3, 0.3, 0.7])
    verdict = first_difference(ref, other, "cache-dit")
    assert not verdict.agree and "step 2" in verdict.detail and "threshold 0.5" in verdict.detail
    agreement = compare_backends([run("diffusers", [ref]), run("cache-dit", [other])])
    assert not agreement.ok and "DISAGREEMENT" in markdown(agreement)


def test_only_the_first_differing_step_is_judged():
    """diff == threshold: diffusers hits (<=), the others do not (<); later steps follow from it."""
    ref = record(0.5, "#.....", [None, 0.3, 0.5, 0.2, 0.2, 0.2])
    other = record(0.5, "#.#.##", [None, 0.3, 0.5, 0.9, 0.1, 0.8])
    verdict = first_difference(ref, other, "nunchaku")
    assert verdict.agree and "equals the threshold" in verdict.detail


def test_rounding_near_the_threshold_and_cache_dit_at_one_are_documented_causes():
    near = first_difference(record(0.5, "#.", [None, 0.4999]), record(0.5, "##", [None, 0.5001]), "cache-dit")
    assert near.agree and "rounding" in near.detail
    too_far = first_difference(record(0.5, "#.", [None, 0.49]), record(0.5, "##", [None, 0.51]), "cache-dit")
    assert not too_far.agree
    at_one = first_difference(record(1.0, "##", [None, 1.3]), record(1.0, "#.", [None, None]), "cache-dit")
    assert at_one.agree and ">= 1" in at_one.detail
    assert not first_difference(record(1.0, "##", [None, 1.3]), record(1.0, "#.", [None, None]), "nunchaku").agree


def test_runs_of_different_workloads_are_not_compared():
    with pytest.raises(AgreementError, match="differ in accelerator, model, quantization or workload"):
        compare_backends([run("diffusers", [record(0.5, "#.")]),
                          run("cache-dit", [record(0.5, "#.")], workload="4 steps, 64x64, seed 0, prompt f0979f5e")])
    with pytest.raises(AgreementError, match="at least two"):
        compare_backends([run("diffusers", [record(0.5, "#.")])])


def test_a_backend_that_declares_a_standin_gets_its_own_agree_flag():
    """``--nunchaku-standin`` is not written anywhere: each backend that declares a stand-in gets one."""
    backends.register(BackendSpec(name="mirror", summary="test-only", create=lambda pipe, config: None,
                                  standin="a folder with a stand-in of the mirror library"))
    try:
        args = build_parser().parse_args(["agree", "--mirror-standin", "m", "--nunchaku-standin", "n"])
        given = agree.standins(args)
    finally:
        backends.unregister("mirror")
    assert given == {"mirror": Path("m"), "nunchaku": Path("n")}


@pytest.mark.integration
def test_fbcache_agree_on_tiny_across_diffusers_cache_dit_and_the_nunchaku_standin(tmp_path):
    pytest.importorskip("cache_dit")
    out = tmp_path / "agree.json"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FBCACHE_")}, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "fbcache", "agree", "--benchmarks", str(ROOT / "benchmarks"),
         "--backends", "diffusers", "cache-dit", "nunchaku",
         "--nunchaku-standin", str(ROOT / "tests" / "standins" / "nunchaku-1.1.0"), "--workdir", str(tmp_path / "w"),
         "--model", "tiny", "--steps", "8", "--rounds", "1", "--warmup-rounds", "0",
         "--thresholds", "0 0.1 0.2 0.5 0.8", "--json", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nunchaku STAND-IN 1.1.0" in done.stdout and "all backends agree" in done.stdout
    verdict = json.loads(out.read_text())
    assert verdict["ok"] and verdict["backends"] == ["diffusers", "cache-dit", "nunchaku STAND-IN 1.1.0"]
    maps: dict[str, set[str]] = {}
    for row in verdict["rows"]:
        assert row["agree"] is (None if row["backend"] == verdict["reference"] else True) and not row["detail"], row
        # each backend's map follows from the differences it compared: the first step computes, a later
        # one reuses when its difference is below the threshold
        threshold = float(row["threshold"])
        assert row["hit_trace"] == [d is not None and d < threshold for d in row["residual_diff_trace"]], row
        maps.setdefault(row["threshold"], set()).add("".join("." if h else "#" for h in row["hit_trace"]))
    assert sorted(maps, key=float) == ["0", "0.1", "0.2", "0.5", "0.8"]
    assert all(len(backends) == 1 for backends in maps.values()), f"the backends' maps differ: {maps}"
    assert maps["0"] == {"#" * 8}, "no difference is below 0: every step computes"
    assert "." in maps["0.8"].pop(), "the most-cached threshold reuses steps"
