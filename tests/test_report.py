"""``fbcache report`` on real saved runs: valid PNGs, an HTML page that only points at its own files,
trends only within one fingerprint, regressions marked, and missing images reported, not fatal."""

from __future__ import annotations

import json
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from PIL import Image
from plugins.faults import fill_disk

from conftest import ROOT
from fbcache.cli import main as fbcache_main
from fbcache.errors import EXIT_USAGE, MissingDependencyError
from fbcache.history.storage import Run, find_run, load_runs
from fbcache.render import plots
from fbcache.render.report import build_report, trend_alerts, trend_runs

H100 = ROOT / "tests" / "data" / "h100-2026-11-25"
TINY = ROOT / "tests" / "data" / "tiny-h100-2026-11-25"
MACHINE = "Linux-CPython-3.12-64bit"
TRENDS = ("trend-time.png", "trend-ssim.png", "trend-hits.png")


class References(HTMLParser):
    """Every src and href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.targets += [value or "" for name, value in attrs if name in ("src", "href")]


def html_targets(out_dir: Path) -> list[str]:
    parser = References()
    parser.feed((out_dir / "report.html").read_text(encoding="utf-8"))
    return parser.targets


def assert_self_contained(out_dir: Path) -> None:
    """Valid PNGs only, and the page and Markdown reference existing files inside the report only."""
    pngs = sorted(out_dir.rglob("*.png"))
    assert pngs
    for png in pngs:
        with Image.open(png) as image:
            image.verify()
    page = (out_dir / "report.html").read_text(encoding="utf-8")
    assert "://" not in page and "<script" not in page.lower()
    markdown_links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (out_dir / "report.md").read_text(encoding="utf-8"))
    for target in map(unquote, html_targets(out_dir) + markdown_links):
        assert not Path(target).is_absolute() and ".." not in Path(target).parts, target
        assert (out_dir / target).is_file(), f"{target} is referenced but not in the report"


def history(tmp_path: Path, *sources: Path) -> Path:
    """A storage directory holding copies of the given run files, numbered in the order given."""
    storage = tmp_path / "history"
    (storage / MACHINE).mkdir(parents=True)
    for number, source in enumerate(sources, start=1):
        shutil.copyfile(source, storage / MACHINE / f"{number:04d}_{source.stem.split('_', 1)[1]}.json")
    return storage


def h100_run(number: int) -> Path:
    return next((H100 / "history" / MACHINE).glob(f"{number:04d}_*.json"))


def tiny_run() -> Path:
    return next((TINY / "history" / MACHINE).glob("0001_*.json"))


def edited_run(tmp_path: Path, source: Path, edit) -> Path:
    """A copy of ``source`` with ``edit(label, extra_info, data)`` applied to each benchmark."""
    data = json.loads(source.read_text(encoding="utf-8"))
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        edit("uncached" if info["threshold"] is None else f"{info['threshold']:g}", info, data)
    target = tmp_path / f"edited-{source.name}"
    target.write_text(json.dumps(data), encoding="utf-8")
    return target


def runs_of(storage: Path) -> list[Run]:
    runs, skipped = load_runs(storage)
    assert not skipped
    return runs


# ------------------------------------------------------------------------------------ tests


def test_report_with_same_fingerprint_history(tmp_path: Path):
    storage = tmp_path / "history"
    shutil.copytree(H100 / "history", storage)
    runs = runs_of(storage)
    latest = find_run(runs, "0002")
    out = tmp_path / "report"
    written = build_report(runs, latest, out, None)
    assert sorted(written) == sorted(p for p in out.rglob("*") if p.is_file())
    assert {p.name for p in written} >= {"report.md", "report.html", "tradeoff.png", "hitmap.png", *TRENDS}
    assert_self_contained(out)
    text = (out / "report.md").read_text(encoding="utf-8")
    # the most-cached row's speedup, from the stored times: uncached median over cached median
    speedup = latest.records["uncached"].median_s / latest.records["0.8"].median_s
    assert "Timing only" in text and "flux-random" in text and f"{speedup:.2f}x" in text
    assert [r.name for r in trend_runs(runs, latest)] == [r.name for r in runs[:2]]
    assert "16 of 16 images missing" in text and not (out / "image-grid.png").exists()


def test_no_trend_without_earlier_runs_of_the_same_fingerprint(tmp_path: Path):
    """Run 3 (fp8) follows two bf16 runs: other fingerprints never make a trend, and stale trends go."""
    storage = tmp_path / "history"
    shutil.copytree(H100 / "history", storage)
    runs = runs_of(storage)
    out = tmp_path / "report"
    build_report(runs, runs[1], out, None)
    assert all((out / name).is_file() for name in TRENDS)

    written = build_report(runs, runs[2], out, None)
    assert not any((out / name).exists() for name in TRENDS)
    assert not any(p.name.startswith("trend-") for p in written)
    assert trend_runs(runs, runs[2]) == [runs[2]]
    assert "no trend yet" in (out / "report.md").read_text(encoding="utf-8")
    assert_self_contained(out)


def test_images_are_copied_and_gridded(tmp_path: Path):
    runs = runs_of(history(tmp_path, tiny_run()))
    out = tmp_path / "report"
    written = build_report(runs, runs[0], out, TINY / "images")
    copies = sorted(p.name for p in (out / "images").iterdir())
    assert copies == sorted(p.name for p in (TINY / "images").glob("*.png"))
    assert set(out / "images" / name for name in copies) <= set(written)
    assert "images/flux_t0.1_second.png" in html_targets(out)
    assert "missing" not in (out / "report.md").read_text(encoding="utf-8")
    with Image.open(out / "image-grid.png") as grid:
        assert grid.height > grid.width > 2 * plots.GRID_CELL  # 8 rows of 2 columns
    assert_self_contained(out)


def test_report_is_deterministic(tmp_path: Path):
    runs = runs_of(history(tmp_path, tiny_run()))
    first = build_report(runs, runs[0], tmp_path / "a", TINY / "images")
    second = build_report(runs, runs[0], tmp_path / "b", TINY / "images")
    assert [p.relative_to(tmp_path / "a") for p in first] == [p.relative_to(tmp_path / "b") for p in second]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_missing_and_broken_images_are_reported_not_fatal(tmp_path: Path):
    images = tmp_path / "images"
    shutil.copytree(TINY / "images", images)
    (images / "flux_t0.5_second.png").unlink()
    (images / "flux_uncached_first.png").unlink()
    (images / "flux_t0.8_first.png").write_bytes(b"not a png")
    runs = runs_of(history(tmp_path, tiny_run()))
    out = tmp_path / "report"
    build_report(runs, runs[0], out, images)

    text = (out / "report.md").read_text(encoding="utf-8")
    assert "3 of 16 images missing" in text
    for name in ("flux_t0.5_second.png", "flux_uncached_first.png", "flux_t0.8_first.png"):
        assert f"missing: {name}" in text
        assert not (out / "images" / name).exists()
    assert (out / "image-grid.png").is_file()
    assert_self_contained(out)

    nowhere = tmp_path / "not-there"
    build_report(runs, runs[0], out, nowhere)
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "16 of 16 images missing" in text and str(nowhere) in text
    assert not (out / "image-grid.png").exists()
    assert_self_contained(out)


def test_regressions_are_marked_within_one_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def worse(label: str, info: dict, data: dict) -> None:
        if label == "0.5":
            info["ssim"] -= 0.1
        if label == "0.8":
            info["hit_trace"][5] = False
            info["hits"] -= 1
            info["hits_per_round"] = [info["hits"]] * len(info["hits_per_round"])

    # tiny, then an fp8 run of another fingerprint, then tiny again, worse
    storage = history(tmp_path, tiny_run(), h100_run(3), edited_run(tmp_path, tiny_run(), worse))
    runs = runs_of(storage)
    latest = runs[2]
    series = trend_runs(runs, latest)
    assert [r.name for r in series] == [runs[0].name, runs[2].name]
    alerts = {(a.run, a.label, a.metric) for a in trend_alerts(runs, series)}
    assert alerts == {(latest.name, "0.5", "ssim"), (latest.name, "0.8", "hits")}

    drawn: dict[str, list[plots.TrendPoint]] = {}
    real = plots.trend_plot

    def spy(run_names, points, labels, path, title, ylabel):
        drawn[path.name] = list(points)
        assert len(run_names) == 2  # the fp8 run is never drawn
        return real(run_names, points, labels, path, title, ylabel)

    monkeypatch.setattr(plots, "trend_plot", spy)
    out = tmp_path / "report"
    build_report(runs, latest, out, None)
    marked = {name: {(p.run_index, p.label) for p in points if p.alert} for name, points in drawn.items()}
    assert marked == {"trend-time.png": set(), "trend-ssim.png": {(1, "0.5")}, "trend-psnr.png": set(),
                      "trend-hits.png": {(1, "0.8")}, "trend-peak-memory.png": set()}
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "0.5 ssim: **regression**" in text and "0.8 hits: **changed**" in text
    assert_self_contained(out)


def test_hostile_text_is_escaped_and_image_names_cannot_escape(tmp_path: Path):
    def hostile(label: str, info: dict, data: dict) -> None:
        data["machine_info"]["fbcache"]["workload"]["prompt"] = '<img src="x" onerror=alert(1)> | a'
        if label == "0.1":
            info["images"]["first"] = "../secret.png"

    (tmp_path / "secret.png").write_bytes((TINY / "images" / "flux_t0.1_first.png").read_bytes())
    images = tmp_path / "images"
    shutil.copytree(TINY / "images", images)
    runs = runs_of(history(tmp_path, edited_run(tmp_path, tiny_run(), hostile)))
    out = tmp_path / "report"
    build_report(runs, runs[0], out, images)

    page = (out / "report.html").read_text(encoding="utf-8")
    assert '<img src="x"' not in page and "&lt;img src=&quot;x&quot; onerror=alert(1)&gt;" in page
    assert "x" not in html_targets(out)
    assert "\\| a" in (out / "report.md").read_text(encoding="utf-8")
    assert not (out / "images" / "secret.png").exists()
    assert "missing: ../secret.png" in (out / "report.md").read_text(encoding="utf-8")
    assert_self_contained(out)


def test_missing_matplotlib_names_the_extra_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    runs = runs_of(history(tmp_path, tiny_run()))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "report"
    with pytest.raises(MissingDependencyError, match=re.escape("pip install 'fbcache[report]'")):
        build_report(runs, runs[0], out, TINY / "images")
    assert not out.exists()



def report_on_a_full_disk(tmp_path: Path, monkeypatch, capsys, full: Path) -> tuple[int, list[str]]:
    """``fbcache report`` into tmp_path/report while the disk under ``full`` is full (the first PNG fills it)."""
    fill_disk(monkeypatch, full, room=4096)
    code = fbcache_main(["report", "--storage", str(tmp_path / "history"), "--out", str(tmp_path / "report"),
                         "--images", ""])
    # the steps the report announces before it writes are progress, not errors: the error is one line
    return code, [line for line in capsys.readouterr().err.splitlines() if "error" in line]


def test_a_disk_that_fills_during_a_new_report_leaves_no_directory(tmp_path: Path, monkeypatch, capsys):
    history(tmp_path, tiny_run())
    code, err = report_on_a_full_disk(tmp_path, monkeypatch, capsys, tmp_path)
    assert (code, err) == (EXIT_USAGE, [f"fbcache report: error: cannot write the report into {tmp_path / 'report'}: "
                                        "No space left on device; nothing of it was kept"])
    assert not (tmp_path / "report").exists()


def test_a_disk_that_fills_during_a_report_keeps_the_earlier_one_whole(tmp_path: Path, monkeypatch, capsys):
    runs = runs_of(history(tmp_path, tiny_run()))
    out = tmp_path / "report"
    build_report(runs, runs[0], out, None)
    before = {p: p.read_bytes() for p in out.rglob("*")}
    code, err = report_on_a_full_disk(tmp_path, monkeypatch, capsys, out)
    assert code == EXIT_USAGE and len(err) == 1 and err[0].endswith(
        "No space left on device; nothing of it was kept (the files there are as they were)"), err
    assert {p: p.read_bytes() for p in out.rglob("*")} == before
