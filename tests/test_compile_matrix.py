"""The GPU compile matrix's CPU-side logic: its table builder on a fake history, and its refusals.

The histories here are made up (tests only): they exercise the reader and the arithmetic, not a GPU.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import ROOT
from fbcache.errors import EXIT_USAGE
from fbcache.history import BenchRecord
from tools.compile_matrix import config_names, load, main, parse_placement, ratio

GIB = 2**30


def fake_run(history: Path, name: str, uncached_s: list[float], cached: dict[float, tuple[list[float], int]],
             compile_mode: str = "none", compile_s: float | None = None) -> None:
    """One pytest-benchmark run file of one configuration, with fbcache records in extra_info."""
    quant = {"bf16": "none", "int8wo": "torchao-int8wo", "int4wo": "torchao-int4wo", "fp8": "torchao-fp8"}[
        name.split("-")[0]]
    common = dict(model="flux-random", quantization=quant, cache_backend="diffusers", steps=28,
                  resolution="1024x1024", seed=0, compile_mode=compile_mode, peak_memory_bytes=13 * GIB)
    records = [BenchRecord(threshold=None, rounds_s=uncached_s, compile_s=compile_s,
                           compile_graphs=3 if compile_mode != "none" else None, **common)]
    for threshold, (seconds, hits) in cached.items():
        record = BenchRecord(threshold=threshold, rounds_s=seconds, hits=hits, computed_steps=28 - hits,
                             compile_graphs=0 if compile_mode != "none" else None, **common)
        record.speedup = records[0].median_s / record.median_s
        records.append(record)
    machine = {"fbcache": {"accelerator": {"name": "FAKE GPU", "driver": "0", "cuda": "0"}, "model": "flux-random",
                           "versions": {"torch": "x", "diffusers": "y", "torchao": "z"},
                           "workload": {"resolution": "1024x1024", "steps": 28},
                           "fingerprint": {"accelerator": "FAKE GPU", "model": "flux-random", "quantization": quant,
                                           "cache_backend": "diffusers", "workload": "28 steps, 1024x1024, seed 0"}}}
    folder = history / name / "Linux-CPython-3.12-64bit"
    folder.mkdir(parents=True)
    (folder / "0001_fake.json").write_text(json.dumps({
        "machine_info": machine, "datetime": "2026-11-27T10:00:00",
        "benchmarks": [{"name": r.label, "extra_info": r.to_extra_info()} for r in records]}))


def test_table_from_a_fake_history(tmp_path):
    history = tmp_path / "history"
    fake_run(history, "bf16-eager", [5.0, 5.2, 4.8], {0.5: ([2.5] * 3, 15), 0.8: ([0.625] * 3, 26)})
    fake_run(history, "fp8-regional", [3.0, 3.1, 2.9], {0.5: ([1.5] * 3, 15), 0.8: ([0.6] * 3, 26)},
             "regional", compile_s=16.9)
    fake_run(history, "int4wo-eager", [60.0], {0.8: ([5.5], 26)})
    fake_run(history, "int4wo-regional", [62.0], {0.8: ([5.6], 26)}, "regional", compile_s=15.7)
    out = tmp_path / "matrix.md"
    assert main(["--history", str(history), "--placement", "bf16-eager:0 fp8-regional:0 int4wo-eager:1",
                 "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("FAKE GPU (driver 0, CUDA 0); torch x, diffusers y, torchao z; flux-random, 1024x1024, "
                           "28 steps; runs saved 2026-11-27")
    assert "| quant | compile | uncached s | t=0.5 s (hits, speedup) | t=0.8 s (hits, speedup) | peak GiB |" in text
    assert "| bf16 | eager | 5.00 | 2.50 (15/28, 2.00x) | 0.62 (26/28, 8.00x) | 13.00 | — | GPU 0 |" in text
    assert "| fp8 | regional | 3.00 | 1.50 (15/28, 2.00x) | 0.60 (26/28, 5.00x) | 13.00 | 16.90 | GPU 0 |" in text
    assert "| int8wo | eager | no saved run |" in text
    assert "- fp8 + regional compile uncached vs bf16 eager uncached: 1.67x (met, target >= 1.4x)" in text
    assert "- int4wo + regional compile uncached vs int4wo eager uncached: 0.97x (NOT met, target >= 1x)" in text
    assert "- fp8 regional, FBCache speedup at 0.8: 5.00x (NOT met, target >= 6x)" in text
    runs = {name: load(name, history / name) for name in config_names()}
    assert ratio(runs, "int8wo-regional", "bf16-eager") is None


def test_no_saved_runs_is_a_usage_error_not_a_regression(tmp_path, capsys):
    assert main(["--history", str(tmp_path), "--out", str(tmp_path / "m.md")]) == EXIT_USAGE
    assert "| bf16 | eager | no saved run |" in (tmp_path / "m.md").read_text()
    assert f"no saved run in any configuration's storage under {tmp_path}" in capsys.readouterr().err


def test_a_file_that_is_not_an_fbcache_run_is_named_and_not_read_as_one(tmp_path, capsys):
    history = tmp_path / "history"
    fake_run(history, "bf16-eager", [5.0, 5.2, 4.8], {0.8: ([0.625] * 3, 26)})
    folder = history / "bf16-eager" / "Linux-CPython-3.12-64bit"
    (folder / "0002_other.json").write_text(json.dumps({"machine_info": {}, "benchmarks": [{"name": "t"}]}))
    assert load("bf16-eager", history / "bf16-eager").path == folder / "0001_fake.json"
    assert f"skipped {folder / '0002_other.json'}: no fbcache fingerprint" in capsys.readouterr().err


def test_placement():
    assert parse_placement("bf16-eager:0 fp8-regional:1 ") == {"bf16-eager": "GPU 0", "fp8-regional": "GPU 1"}


def test_script_refuses_an_unknown_configuration_before_any_gpu_work(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-compile-matrix.sh"), "bf16-eager", "fp8-jit"],
                          cwd=tmp_path, capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin", "OUT": "out"})
    assert done.returncode == 2
    assert "unknown compile mode in configuration 'jit'" in done.stderr
    assert not (tmp_path / "out").exists()
