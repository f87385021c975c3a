"""``fbcache xreport``: the newest run of each accelerator side by side, from separate histories.

Uses the real tiny histories in tests/data, copied from docs/results (the same workload on an H100 and on
a 2-core CPU, so two fingerprints), plus a copy of the H100 run renamed to another GPU, as a third runner would save it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

from conftest import ROOT
from fbcache.cli.xreport import build_xreport
from fbcache.history.storage import load_runs

CPU = ROOT / "tests" / "data" / "tiny-cpu-2026-11-25" / "history"
H100 = ROOT / "tests" / "data" / "tiny-h100-2026-11-25" / "history"
FLUX_H100 = ROOT / "tests" / "data" / "h100-2026-11-25" / "history"


def _hits(storage: Path) -> dict[str, int | None]:
    runs, _ = load_runs(storage)
    return {label: record.hits for label, record in runs[-1].records.items()}


def _row(markdown: str, label: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_two_fingerprints_side_by_side(tmp_path):
    written, groups, skipped = build_xreport([CPU, H100], tmp_path / "out")
    assert not skipped
    assert len(groups) == 1, "same model and workload on two accelerators is one table"
    accelerators = [c.accelerator for c in groups[0].columns]
    assert accelerators == ["NVIDIA H100 80GB HBM3", "cpu: AMD EPYC"]
    assert len({c.run.fingerprint_id for c in groups[0].columns}) == 2
    text = written[0].read_text(encoding="utf-8")
    header = _row(text, "threshold")
    assert header[1:6] == [f"NVIDIA H100 80GB HBM3: {q}" for q in ("time (s)", "speedup", "SSIM", "PSNR", "hits")]
    row = _row(text, "0.1")
    cpu_hits, h100_hits = _hits(CPU)["0.1"], _hits(H100)["0.1"]
    assert row[5] == f"{h100_hits}/28" and row[10] == f"{cpu_hits}/28"
    runs, _ = load_runs(CPU)
    record = runs[-1].records["0.1"]
    assert row[7] == f"{record.speedup:.2f}x" and row[8] == f"{record.ssim:.4f}"
    assert _row(text, "uncached")[2] == "1.00 (ref)"


def test_a_third_runner_and_other_workloads(tmp_path):
    """A directory of downloaded artifacts (one history per runner) is searched recursively."""
    artifacts = tmp_path / "histories"
    shutil.copytree(CPU, artifacts / "fbcache-history-cpu")
    shutil.copytree(H100, artifacts / "fbcache-history-h100")
    shutil.copytree(FLUX_H100, artifacts / "fbcache-history-h100-flux")
    copy = artifacts / "fbcache-history-l40s"
    shutil.copytree(H100, copy)
    for path in copy.rglob("*.json"):
        data = json.loads(path.read_text())
        data["machine_info"]["fbcache"]["accelerator"]["name"] = "NVIDIA L40S"
        data["machine_info"]["fbcache"]["fingerprint"]["accelerator"] = "NVIDIA L40S"
        path.write_text(json.dumps(data))
    done = subprocess.run([sys.executable, "-m", "fbcache", "xreport", "--storage", str(artifacts),
                           "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "3 accelerator(s)" in done.stdout
    text = (tmp_path / "out" / "xreport.md").read_text(encoding="utf-8")
    tiny = text.split("## model tiny")[1].split("## ")[0]
    assert "NVIDIA L40S: hits" in tiny and "cpu: AMD EPYC: hits" in tiny
    flux = text.split("## model flux-random")
    assert len(flux) == 3, "flux-random bf16 and fp8 are two workloads: two more tables"
    assert "Only one accelerator ran this workload." in flux[1]
    assert "Timing only" in text, "a random-weights run carries its warning"
    page = (tmp_path / "out" / "xreport.html").read_text(encoding="utf-8")
    parser = HTMLParser()
    parser.feed(page)
    assert page.count("<table>") == 4 and "<script" not in page


def test_no_runs_is_a_data_error(tmp_path):
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, "-m", "fbcache", "xreport", "--storage", str(tmp_path / "empty")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "no fbcache runs" in done.stderr
