"""scripts/gpu-compile.sh's CPU-side logic: its table and goals on a made-up history, its session list, and
its refusal of an unknown session before any GPU work, and the GPU scripts' wheel install (scripts/_gpu-wheels.sh).
The histories here are fake (tests only)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from fbcache.errors import EXIT_CLEAN, EXIT_USAGE
from fbcache.history import BenchRecord
from tools.gpu_compile import SESSIONS, main

QUANT = {"fp8": "torchao-fp8", "bf16": "none"}


def fake_run(history: Path, name: str, uncached: list[float], cached: list[float], compile_s: tuple[float, float],
             cache: str) -> None:
    """One run file of one session: uncached and 0.8 (26/28 hits), with first-call compile times and cache state."""
    quant, mode, _ = SESSIONS[name]
    common = dict(model="flux-random", quantization=quant, cache_backend="diffusers", steps=28,
                  resolution="1024x1024", seed=0, compile_mode=mode)
    first = BenchRecord(threshold=None, rounds_s=uncached, **common)
    second = BenchRecord(threshold=0.8, rounds_s=cached, hits=26, computed_steps=2, **common)
    second.speedup = first.median_s / second.median_s
    for record, seconds, state in ((first, compile_s[0], cache), (second, compile_s[1], None)):
        record.compile_s, record.compile_warmup_s = seconds, seconds + record.median_s
        record.compile_cache = {"state": state, "hits": 12 if state == "warm" else 0,
                                "misses": 12 if state == "cold" else 0, "bypasses": 0, "dir": "cache"}
    folder = history / name / "Linux-CPython-3.12-64bit"
    folder.mkdir(parents=True)
    machine = {"fbcache": {"accelerator": {"name": "FAKE GPU", "driver": "0", "cuda": "0"}, "model": "flux-random",
                           "versions": {"torch": "x", "diffusers": "y", "torchao": "z"},
                           "workload": {"resolution": "1024x1024", "steps": 28},
                           "fingerprint": {"accelerator": "FAKE GPU", "model": "flux-random", "quantization": quant,
                                           "cache_backend": "diffusers", "workload": "28 steps, 1024x1024, seed 0"}}}
    (folder / "0001_fake.json").write_text(json.dumps({
        "machine_info": machine, "datetime": "2026-12-08T10:00:00",
        "benchmarks": [{"name": r.label, "extra_info": r.to_extra_info()} for r in (first, second)]}))


def summary(tmp_path: Path) -> str:
    history = tmp_path / "history"
    fake_run(history, "fp8-io-cold", [3.0, 3.1], [0.50, 0.52], (150.0, 2.0), "cold")
    fake_run(history, "fp8-io-warm", [2.9, 3.0], [0.45, 0.46], (20.0, 0.5), "warm")
    fake_run(history, "fp8-regional", [3.0, 3.05], [0.80, 0.81], (10.0, 0.2), "warm")
    fake_run(history, "fp8-io-blocks", [2.70, 2.75], [0.47, 0.48], (12.0, 0.3), "partial")
    walls = tmp_path / "walls.txt"
    walls.write_text("fp8-io-cold 240 rc=0\nfp8-io-warm 80 rc=0\nbf16-io-cold skipped: 30 s of the budget left\n")
    out = tmp_path / "summary.md"
    assert main(["--history", str(history), "--walls", str(walls), "--out", str(out)]) == 0
    return out.read_text()


def test_the_rows_name_each_session_s_times_compile_and_cache(tmp_path):
    text = summary(tmp_path)
    assert text.startswith("FAKE GPU (driver 0, CUDA 0); torch x, diffusers y, torchao z; flux-random, 1024x1024, "
                           "28 steps; runs saved 2026-12-08")
    assert ("| fp8-io-warm | torchao-fp8 | regional+io | all | 2.950 [2.900-3.000] | 0.455 [0.450-0.460] (26/28) | "
            "6.48x | 20.5 | 23.9 | 80 | uncached warm (12 hits, 0 misses); 0.8 nothing compiled |") in text
    assert "| bf16-io-cold | none | regional+io | all | no saved run |" in text


def test_the_goals_are_computed_from_the_rows(tmp_path):
    text = summary(tmp_path)
    assert "- fp8 regional+io, warm vs cold compilation of the sweep: 20.5 s vs 152.0 s = 13% (met, goal <= 20%)" in text
    assert "- fp8 regional+io speedup at 0.8 (fp8-io-warm): 6.48x (met, goal >= 6x)" in text
    assert "- bf16 regional+io, warm vs cold compilation: not measured" in text


def test_overlapping_rounds_are_too_close_to_call(tmp_path):
    text = summary(tmp_path)
    assert ("- fp8 regional+io uncached vs regional uncached (goal: no slower): 1.025x: too close to call "
            "(the timed rounds' ranges overlap)") in text


def test_the_quantization_filter_line_says_which_is_faster(tmp_path):
    text = summary(tmp_path)
    assert ("- fp8 regional+io, embedders and output layers in bf16 (quant filter blocks) or fp8 (all), uncached: "
            "blocks 2.725 s, all 2.950 s: blocks faster") in text


def test_no_saved_runs_is_a_usage_error_not_a_regression(tmp_path, capsys):
    assert main(["--history", str(tmp_path), "--out", str(tmp_path / "s.md")]) == EXIT_USAGE
    assert f"no saved run in any session's storage under {tmp_path}" in capsys.readouterr().err


def test_a_corrupt_latest_run_is_named_and_the_session_s_last_good_run_is_read(tmp_path, capsys):
    summary(tmp_path)
    folder = tmp_path / "history" / "fp8-io-warm" / "Linux-CPython-3.12-64bit"
    (folder / "0002_cut.json").write_text('{"benchmarks": [')
    out = tmp_path / "again.md"
    assert main(["--history", str(tmp_path / "history"), "--out", str(out)]) == EXIT_CLEAN
    assert f"skipped {folder / '0002_cut.json'}: not valid JSON" in capsys.readouterr().err
    assert "| fp8-io-warm | torchao-fp8 | regional+io | all | 2.950 [2.900-3.000] |" in out.read_text()


def test_the_script_runs_the_tool_s_sessions_with_their_settings():
    script = (ROOT / "scripts" / "gpu-compile.sh").read_text()
    block = script.split('SESSIONS="', 1)[1].split('"', 1)[0]
    rows = [line.split() for line in block.strip().splitlines()]
    assert {row[0]: tuple(row[1:4]) for row in rows} == SESSIONS
    assert [row[0] for row in rows] == list(SESSIONS), "the same order: what each answers first"
    assert re.search(r"BUDGET_S=\$\{BUDGET_S:-(\d+)\}", script).group(1) == "520"


def test_the_script_refuses_an_unknown_session_before_any_gpu_work(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-compile.sh"), "fp8-io-cold", "fp8-max-autotune"],
                          cwd=tmp_path, capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "OUT": "out"})
    assert done.returncode == 2 and "unknown session 'fp8-max-autotune'" in done.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / ".gpu-compile").exists()


#: records each python3 call's PYTHONPATH and arguments; a pip install leaves the target folder behind
RECORDING_PYTHON = """#!/bin/sh
echo "PYTHONPATH=$PYTHONPATH ARGS=$*" >> "$CALLS"
case "$*" in *"pip install"*) mkdir -p .gpu-site ;; esac
exit 0
"""


GPU_SCRIPTS = ["gpu-compile.sh", "gpu-lpips.sh", "gpu-tune.sh", "gpu-memory.sh", "gpu-noise-experiment.sh"]


def python_calls(tmp_path: Path, script: str, **env: str) -> tuple[Path, list[str]]:
    """Run a GPU script in a checkout with one fetched wheel in .whl/, python3 and nvidia-smi stubbed (nothing
    runs on a GPU): the checkout, and each python3 call's PYTHONPATH and arguments."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for name, text in (("python3", RECORDING_PYTHON), ("nvidia-smi", "#!/bin/sh\necho FAKE GPU\n")):
        (tools / name).write_text(text)
        (tools / name).chmod(0o755)
    checkout = tmp_path / "checkout"
    (checkout / ".whl").mkdir(parents=True)
    (checkout / ".whl" / "diffusers-0-py3-none-any.whl").write_text("")
    calls = tmp_path / "calls.txt"
    subprocess.run(["bash", str(ROOT / "scripts" / script)], cwd=checkout, capture_output=True, text=True,
                   check=False, timeout=60,
                   env={"PATH": f"{tools}:/usr/bin:/bin", "OUT": "out", "CALLS": str(calls), **env})
    return checkout, calls.read_text().splitlines()


@pytest.mark.parametrize("script", GPU_SCRIPTS)
def test_a_gpu_script_installs_the_fetched_wheels_first_on_its_path(tmp_path, script):
    """scripts/_gpu-wheels.sh: the wheels in .whl/ go to .gpu-site/, ahead of the checkout on PYTHONPATH."""
    checkout, lines = python_calls(tmp_path, script)
    installs = [line for line in lines if "pip install" in line]
    assert len(installs) == 1 and "--target .gpu-site .whl/" in installs[0], lines
    later = lines[lines.index(installs[0]) + 1:]
    assert later and all(line.startswith(f"PYTHONPATH={checkout}/.gpu-site:{checkout} ") for line in later), lines


@pytest.mark.parametrize("script", GPU_SCRIPTS)
def test_a_gpu_script_leaves_the_wheels_out_with_skip_wheels(tmp_path, script):
    checkout, lines = python_calls(tmp_path, script, SKIP_WHEELS="1")
    assert lines and all(line.startswith(f"PYTHONPATH={checkout} ") for line in lines), lines


def heredoc(script: str, opener: str) -> str:
    """The Python a GPU script feeds to ``python3 -`` on the line that starts with ``opener``."""
    text = (ROOT / "scripts" / script).read_text()
    return text.split(opener, 1)[1].split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]


@pytest.mark.parametrize(("script", "opener", "argument", "row"), [
    ("gpu-memory.sh", 'python3 - "$HISTORY"', "history", "| bf16 | 0.8 | 26 | 24.84 |"),
    ("gpu-explain.sh", 'python3 - "$WORK/history"', "history", "| 0.8 | 26/28 | 0.672 |"),
    ("gpu-lpips.sh", 'python3 - "$WORK" > "$OUT/lpips-cost.md"', ".", "| bf16 | 0.8 | 26 | 24.838 | - |"),
])
def test_a_gpu_script_s_table_names_a_cut_run_file_and_reads_the_whole_ones(tmp_path, script, opener, argument, row):
    """The real H100 history of tests/data, plus a run file cut short: it is named and the table still comes."""
    storage = tmp_path / "history" / "bf16"
    shutil.copytree(ROOT / "tests" / "data" / "h100-2026-11-25" / "history", storage)
    cut = next(storage.iterdir()) / "0099_cut.json"
    cut.write_text('{"benchmarks": [')
    done = subprocess.run([sys.executable, "-", str(tmp_path / argument)], input=heredoc(script, opener), cwd=ROOT,
                          capture_output=True, text=True, check=False, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert f"skipped {cut}: not valid JSON" in done.stderr and row in done.stdout, (done.stdout[-2000:], done.stderr[-2000:])
