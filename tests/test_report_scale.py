"""``fbcache report`` on a very large run (issue 21): it finishes, says what it left out, and its output
stays bounded, however many benchmarks the run holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from fbcache import markup
from fbcache.cli import main
from fbcache.render import report as report_module
from tools.large_history import write_history, write_images

#: 100 prompts x (uncached + 3 thresholds), two runs of one fingerprint: a trend to draw
BENCHMARKS = 400
TABLE_LIMIT = 100


def test_a_large_run_is_reported_in_part_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]):
    # a lower table cap than the shipped one, so that a small history shows the capped tables too
    monkeypatch.setattr(report_module, "TABLE_LIMIT", TABLE_LIMIT)
    storage, images, out = tmp_path / "history", tmp_path / "images", tmp_path / "report"
    runs = write_history(storage, BENCHMARKS, runs=2)
    write_images(images, runs[-1])
    code = main(["report", "--storage", str(storage), "--out", str(out), "--images", str(images)])
    stderr = capsys.readouterr().err
    assert code == 0, stderr[-3000:]
    steps = re.findall(r"^fbcache report: (.*)$", stderr, re.MULTILINE)
    assert steps[0] == f"0002_synthetic: {BENCHMARKS} benchmarks; copying the images of {report_module.FIGURE_LIMIT}"
    assert steps[-1] == "writing report.md and report.html"
    assert "judging the trend of 2 runs" in steps, "each long step is announced"

    figure_prompts = report_module.FIGURE_LIMIT // 4
    markdown = (out / "report.md").read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")
    note = (f"Figures and images show {figure_prompts} of 100 prompts (p0 to p{figure_prompts - 1}), "
            f"{report_module.FIGURE_LIMIT} of {BENCHMARKS} benchmarks; the run's JSON holds every benchmark.")
    assert f"> {note}" in markdown and markup.esc(note) in html
    assert "Per-benchmark tables and the hit map show 25 of 100 prompts (p0 to p24), 100 of 400 benchmarks" in markdown
    # the set's table still covers every prompt
    assert re.search(r"^\| 0\.1 \| 100 \|", markdown, re.MULTILINE), markdown[:3000]
    per_prompt = re.findall(r"^\| (?:uncached|0\.05|0\.1|0\.2)\[p(\d+)\] \| [0-9]", markdown, re.MULTILINE)
    assert len(per_prompt) == TABLE_LIMIT and max(map(int, per_prompt)) == 24
    copied = sorted(p.name for p in (out / "images").iterdir())
    assert len(copied) == 2 * report_module.FIGURE_LIMIT and "flux_t0.2_p15_second.png" in copied
    with Image.open(out / "hitmap.png") as hitmap:
        cached_rows = report_module.FIGURE_LIMIT * 3 // 4
        assert hitmap.height <= (1.6 + cached_rows * 0.38) * 100 + 1, "one row per drawn benchmark, no more"
    assert sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) < 8_000_000


def test_capped_lists_name_how_many_more():
    assert report_module.capped(["a", "b", "c"], 2, "regressions") == ["a", "b", "... and 1 more regressions"]
    assert report_module.capped(["a", "b"], 2, "regressions") == ["a", "b"]
