"""Progress while a sweep runs (issue 21): one terminal line per generation, with the time left,
written after its clock stopped, through pytest's capture; streamed live by ``fbcache nightly``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, STEPS, run_sweep, subprocess_env
from fbcache.history.storage import run_files
from fbcache.plugin.display import Progress, duration_text

#: one progress line: label, prompt, warm-up or round n/of, seconds, hits, [done/total...]
LINE = re.compile(r"^fbcache: (?P<label>uncached|[0-9.]+)(?: p(?P<prompt>\d+))? (?P<kind>warm-up|round) "
                  r"(?P<number>\d+)/(?P<of>\d+)  (?P<seconds>[0-9.]+) s(?:  hits (?P<hits>\d+)/(?P<steps>\d+))?"
                  r"  \[(?P<done>\d+)/(?P<total>\d+)(?P<left>, .* left)?\]$", re.MULTILINE)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_each_generation_is_one_line_with_its_fields_and_the_time_left():
    written: list[str] = []
    clock = FakeClock()
    progress = Progress(written.append, total=4, now=clock)
    progress.start("2 benchmarks x (1 warm-up + 1 rounds), interleaved")
    clock.now = 30.0
    progress.generation(None, None, True, 1, 1, 0.5)
    clock.now = 40.0
    progress.generation(0.12, 3, False, 2, 3, 0.414, 17, 28)
    clock.now = 60.0
    progress.generation(0.12, 3, False, 3, 3, 0.4, 17, 28)
    progress.generation(0.12, 3, False, 3, 3, 0.4, 17, 28)
    assert written == [
        "fbcache: timing 4 generations (2 benchmarks x (1 warm-up + 1 rounds), interleaved)",
        "fbcache: uncached warm-up 1/1  0.50 s  [1/4, about 1 min 30 s left]",
        "fbcache: 0.12 p3 round 2/3  0.41 s  hits 17/28  [2/4, about 40 s left]",
        "fbcache: 0.12 p3 round 3/3  0.40 s  hits 17/28  [3/4, about 20 s left]",
        "fbcache: 0.12 p3 round 3/3  0.40 s  hits 17/28  [4/4]",
    ]


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "under 1 s"), (59, "59 s"), (200, "3 min 20 s"),
                                               (3900, "1 h 05 min")])
def test_time_left_is_as_precise_as_it_is_worth(seconds, text):
    assert duration_text(seconds) == text


CAPTURED_TEST = '''
from fbcache.plugin.display import terminal_writer

def test_writes_while_captured(request):
    print("CAPTURED-PRINT")
    write = terminal_writer(request.config)
    if write is not None:
        write("PROGRESS-LINE")
'''


def _pytest_in(tmp_path: Path, *args: str) -> str:
    (tmp_path / "test_captured.py").write_text(CAPTURED_TEST, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "pytest", "test_captured.py", "-p", "no:cacheprovider", *args],
                          cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_lines_pass_through_pytest_capture_but_not_print(tmp_path: Path):
    output = _pytest_in(tmp_path)
    assert re.search(r"^PROGRESS-LINE$", output, re.MULTILINE), output
    assert "CAPTURED-PRINT" not in output, "the test's own output is still captured"


def test_minus_qq_silences_the_lines(tmp_path: Path):
    assert "PROGRESS-LINE" not in _pytest_in(tmp_path, "-qq")


@pytest.mark.integration
def test_a_sweep_shows_one_line_per_generation_written_outside_the_timed_region(tmp_path: Path):
    prompts = tmp_path / "two.txt"
    prompts.write_text("a red fox in the snow\na bowl of ramen\n", encoding="utf-8")
    done = run_sweep(tmp_path, "--fbcache-steps", str(STEPS), "--fbcache-rounds", "2", "--fbcache-warmup-rounds", "1",
                     "--fbcache-thresholds", "0.5", "--fbcache-prompts", str(prompts), "--fbcache-clock", "cpu",
                     "--benchmark-autosave", "-p", "plugins.progress_probes", env={"FBCACHE_TEST_PROBE": "burn"})
    assert done.returncode == 0, done.output[-3000:]
    lines = [m.groupdict() for m in LINE.finditer(done.output)]
    seen = sorted((line["label"], line["prompt"], line["kind"], line["number"], line["of"]) for line in lines)
    expected = sorted((label, prompt, kind, str(number), str(of)) for label in ("uncached", "0.5") for prompt in "01"
                      for kind, of in (("warm-up", 1), ("round", 2)) for number in range(1, of + 1))
    assert seen == expected, done.output[-3000:]
    assert [line["done"] for line in lines] == [str(n) for n in range(1, 13)]
    assert {line["total"] for line in lines} == {"12"}
    assert all(line["left"] for line in lines[:-1]) and lines[-1]["left"] is None
    assert all(line["hits"] is None for line in lines if line["label"] == "uncached")
    records = {(b["extra_info"]["threshold"], b["extra_info"]["prompt_index"]): b["extra_info"]
               for b in done.last_run()["benchmarks"]}
    for prompt in (0, 1):
        rounds = [line for line in lines if line["label"] == "0.5" and line["prompt"] == str(prompt)
                  and line["kind"] == "round"]
        shown = [int(line["hits"]) for line in sorted(rounds, key=lambda line: line["number"])]
        assert shown == records[(0.5, prompt)]["hits_per_round"], "each round's line shows that round's hits"
        assert {line["steps"] for line in rounds} == {str(STEPS)}
    # the probe burned a second of CPU after each timed line of uncached p0: none of it was timed
    assert max(records[(None, 0)]["rounds_s"]) < 1.0, records[(None, 0)]["rounds_s"]


@pytest.mark.integration
def test_nightly_streams_the_sweep_while_it_runs(tmp_path: Path):
    """The sweep is held at its end until the test opens a gate: what nightly showed by then, it streamed."""
    gate = tmp_path / "gate"
    env = subprocess_env({"FBCACHE_TEST_PROBE": "gate", "FBCACHE_TEST_GATE": str(gate)})
    env["GITHUB_STEP_SUMMARY"] = str(tmp_path / "summary.md")
    command = [sys.executable, "-m", "fbcache", "nightly", "--storage", str(tmp_path / "history"),
               "--report-dir", str(tmp_path / "report"), "--images", str(tmp_path / "images"),
               "--steps", str(STEPS), "--rounds", "2", "--thresholds", "0.5", "--pytest-args", "-p plugins.progress_probes"]
    shown: list[bytes] = []
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as child:
        assert child.stdout is not None
        fd = child.stdout.fileno()
        reader = threading.Thread(target=lambda: shown.extend(iter(lambda: os.read(fd, 4096), b"")), daemon=True)
        reader.start()
        deadline = time.monotonic() + 300
        while b"[100%]" not in b"".join(shown) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        while_running = b"".join(shown).decode(errors="replace")
        saved_while_running = run_files(tmp_path / "history")
        gate.touch()
        child.wait(timeout=300)
        reader.join(timeout=60)
    output = b"".join(shown).decode(errors="replace")
    assert child.returncode == 0, output[-3000:]
    assert saved_while_running == [], "the sweep was still running (held before saving)"
    assert "[100%]" in while_running, "pytest's unfinished line of test results reached the terminal"
    lines = [m.groupdict() for m in LINE.finditer(while_running)]
    assert [line["done"] for line in lines] == ["1", "2", "3", "4", "5", "6"], while_running[-3000:]
    assert "fbcache nightly: report" in output and len(run_files(tmp_path / "history")) == 1
    assert json.loads(run_files(tmp_path / "history")[0].read_text())["benchmarks"], "nightly still saved the run"
