"""The report reads right with real run names: long names wrap, titles fit their figure, and trend lines that
lie on top of each other stay readable (issue 21). Figures are drawn and measured, not only built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fbcache.history.storage import parse_run
from fbcache.render import plots
from fbcache.render.report import build_report

pytest.importorskip("matplotlib")

SAVED = json.loads((Path(__file__).parent / "data" / "run.json").read_text())
#: what pytest-benchmark names a run saved from a checkout with uncommitted changes
LONG_NAME = "0004_5b9aacfc40dbde7babf2e7bd015fe6566f85dcf7_20261207_213999_uncommited-changes"
LONG_TITLE = f"{LONG_NAME} (flux-random, torchao-fp8-tensor) - timing only, random weights"


def records():
    return list(parse_run(Path(f"{LONG_NAME}.json"), SAVED).records.values())


def title_overhang(figure) -> float:
    """Pixels of the figure's title outside the figure (0: it fits)."""
    figure.canvas.draw()
    box = figure._suptitle.get_window_extent(figure.canvas.get_renderer())
    return max(0.0, -box.x0, box.x1 - figure.bbox.width, box.y1 - figure.bbox.height)


@pytest.mark.parametrize("draw", [plots.tradeoff_figure, plots.hitmap_figure])
def test_a_long_run_name_fits_the_figure_title(draw):
    figure = draw(records(), LONG_TITLE)
    assert title_overhang(figure) == 0.0


def test_titles_wrap_after_underscores_and_spaces():
    assert plots.wrap_title("0004_5b9aacfc40db_20261207 (tiny, none)", 20) == "0004_5b9aacfc40db_\n20261207 (tiny,\nnone)"


def test_the_report_heading_shortens_the_commit_and_may_wrap(tmp_path):
    storage = tmp_path / "history" / "machine"
    storage.mkdir(parents=True)
    (storage / f"{LONG_NAME}.json").write_text(json.dumps(SAVED))
    run = parse_run(storage / f"{LONG_NAME}.json", SAVED)
    build_report([run], run, tmp_path / "report", None)
    heading = (tmp_path / "report" / "report.md").read_text().splitlines()[0]
    assert heading == "# fbcache report: 0004_5b9aacfc40db_20261207_213999_uncommited-changes"
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<h1>fbcache report: 0004_<wbr>5b9aacfc40db_<wbr>" in page and "overflow-wrap: anywhere" in page
    assert f"| run | {LONG_NAME} |" in (tmp_path / "report" / "report.md").read_text()


def trend(values: dict[str, list[float]]):
    points = [plots.TrendPoint(label, i, v, False) for label, series in values.items() for i, v in enumerate(series)]
    return plots.trend_figure(["r1", "r2", "r3"], points, list(values), "SSIM", "SSIM")


def test_identical_trend_lines_are_one_line_named_by_every_threshold():
    figure = trend({"0": [1.0] * 3, "0.01": [1.0] * 3, "0.05": [1.0] * 3, "0.1": [1.0] * 3, "0.5": [0.8, 0.81, 0.8]})
    [ax] = figure.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0, 0.01, 0.05, 0.1 (identical)", "0.5"]


def test_trend_lines_that_only_touch_differ_in_marker_and_line_style():
    figure = trend({"0": [1.0, 1.0, 0.99], "0.01": [1.0, 1.0, 0.98], "0.05": [1.0, 0.99, 0.98]})
    lines = figure.axes[0].get_lines()
    assert len({line.get_marker() for line in lines}) == 3
    assert len({line.get_linestyle() for line in lines}) == 3
    assert {line.get_markerfacecolor() for line in lines} == {"none"}
