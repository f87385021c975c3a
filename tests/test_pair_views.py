"""Both stages of a MULTI/SINGLE threshold pair wherever hits show: the report's hit map PNG and hits trend,
``fbcache compare``'s hits column (Markdown and JSON) and ``fbcache xreport``'s hits columns. A run without
pairs shows exactly what it showed before."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from test_threshold_pairs import pair_record, record

from fbcache.cli.xreport import build_groups, group_table
from fbcache.history import BenchRecord
from fbcache.history.storage import Run
from fbcache.render import plots
from fbcache.render.report import _trend_figures, trend_alerts
from fbcache.verdicts import CompareResult, markdown
from fbcache.verdicts.judge import judge_series

SINGLE = [False, True, True, False]


def pair_records() -> list:
    return [record(None), record(0.1, hits=1, hit_trace=[False, True, False, False]), pair_record(SINGLE)]


def single_records() -> list:
    return [record(None), record(0.1, hits=1, hit_trace=[False, True, False, False]),
            record(0.2, hits=2, hit_trace=[False, True, True, False])]


def panels(figure) -> list:
    """The hit map's image panels (not their twin axes, which carry the hit counts)."""
    return [ax for ax in figure.axes if ax.images]


def test_the_hit_map_png_draws_each_pairs_single_stream_decision_in_a_second_panel():
    figure = plots.hitmap_figure(pair_records(), "t")
    top, bottom = panels(figure)
    assert [t.get_text() for t in top.get_yticklabels()] == ["0.09/0.12", "0.1"]
    assert [t.get_text() for t in bottom.get_yticklabels()] == ["0.09/0.12"]
    assert bottom.get_title() == plots.SINGLE_STREAM_PANEL
    assert bottom.images[0].get_array().tolist() == [[0.0, 1.0, 1.0, 0.0]]
    twins = [ax for ax in figure.axes if not ax.images]
    assert [t.get_text() for t in twins[1].get_yticklabels()] == ["2/4"]


def test_the_hit_map_png_of_a_run_without_pairs_keeps_its_one_panel():
    figure = plots.hitmap_figure(single_records(), "t")
    [panel] = panels(figure)
    assert (len(figure.axes), panel.get_title()) == (2, "")
    assert panel.images[0].get_array().tolist() == [[0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]]


# ------------------------------------------------------------------------------------ compare


def run_of(number: int, records: list[BenchRecord], accelerator: str = "gpu") -> Run:
    return Run(Path(f"{number:04d}_synthetic.json"), f"2026-12-0{number}T00:00:00",
               {"fbcache": {"fingerprint": {"accelerator": accelerator}}}, {}, {r.label: r for r in records})


def hits_cells(result: CompareResult) -> dict[str, str]:
    """The hits column of compare's Markdown table, by threshold."""
    lines = [line for line in markdown(result).splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return {cells[0]: cells[header.index("hits")] for line in lines[2:]
            if (cells := [cell.strip() for cell in line.strip("|").split("|")])}


def test_compare_shows_a_pairs_single_stream_hits_now_and_base_in_markdown_and_json():
    later = [*pair_records()[:2], pair_record([False, True, False, False])]
    result = judge_series([run_of(1, pair_records()), run_of(2, later)])[-1]
    assert hits_cells(result) == {"0.1": "1 / 1", "0.09/0.12": "1 / 1, single-stream 1 / 2"}
    [row] = [row for row in json.loads(result.to_json())["rows"] if row["label"] == "0.09/0.12"]
    assert [v["single"] for v in row["verdicts"] if v["metric"] == "hits"] == [[1, 2]]
    assert CompareResult.from_json(result.to_json()).row("0.09/0.12").verdict("hits").single == [1, 2]


def test_compare_of_a_pairs_first_run_has_no_single_stream_baseline_yet():
    result = judge_series([run_of(1, pair_records())])[-1]
    assert hits_cells(result)["0.09/0.12"] == "1 / —, single-stream 2 / —"


def test_compare_of_runs_without_pairs_keeps_its_hits_column_and_json_keys():
    result = judge_series([run_of(1, single_records()), run_of(2, single_records())])[-1]
    assert hits_cells(result) == {"0.1": "1 / 1", "0.2": "2 / 2"}
    keys = {key for row in json.loads(result.to_json())["rows"] for v in row["verdicts"] for key in v}
    assert keys == {"metric", "status", "latest", "baseline", "detail", "effect", "mde", "since", "interval",
                    "runs_needed"}


# ------------------------------------------------------------------------------------ xreport


def xreport_hits(runs: list[Run]) -> dict[str, list[str]]:
    """Each accelerator's hits cell per threshold of the one workload table."""
    [group] = build_groups(runs)
    header, rows = group_table(group)
    columns = [i for i, name in enumerate(header) if name.endswith(": hits")]
    return {row[0]: [row[i] for i in columns] for row in rows}


def test_xreport_shows_a_pairs_single_stream_hits_beside_its_double_stream_hits():
    later = [*pair_records()[:2], pair_record([False, True, False, False])]
    hits = xreport_hits([run_of(1, pair_records(), "gpu A"), run_of(2, later, "gpu B")])
    assert hits == {"uncached": ["—", "—"], "0.09/0.12": ["1/4, single-stream 2/4", "1/4, single-stream 1/4"],
                    "0.1": ["1/4", "1/4"]}


def test_xreport_shows_a_prompt_sets_mean_single_stream_hits():
    prompts = [replace(pair_record(SINGLE), prompt_index=0), replace(pair_record([True] * 4), prompt_index=1)]
    assert xreport_hits([run_of(1, prompts)])["0.09/0.12"] == ["1.0/4, single-stream 3.0/4"]


def test_xreport_of_runs_without_pairs_keeps_its_hits_cells():
    hits = xreport_hits([run_of(1, single_records(), "gpu A"), run_of(2, single_records(), "gpu B")])
    assert hits == {"uncached": ["—", "—"], "0.1": ["1/4", "1/4"], "0.2": ["2/4", "2/4"]}


# ------------------------------------------------------------------------------------ trend


def trend_points(monkeypatch, tmp_path, runs: list[Run]) -> dict[str, list[tuple[str, int, float, bool]]]:
    """The points of each trend figure the report draws for these runs, by file name."""
    drawn: dict[str, list[tuple[str, int, float, bool]]] = {}

    def capture(names, points, labels, path, title, ylabel):
        drawn[path.name] = [(p.label, p.run_index, p.value, p.alert) for p in points]
        return path

    monkeypatch.setattr(plots, "trend_plot", capture)
    _trend_figures(runs, trend_alerts(runs, runs), tmp_path)
    return drawn


def test_the_report_trends_a_pairs_single_stream_hits_ringed_where_they_changed(monkeypatch, tmp_path):
    later = [*pair_records()[:2], pair_record([False, True, False, False])]
    drawn = trend_points(monkeypatch, tmp_path, [run_of(1, pair_records()), run_of(2, later)])
    assert drawn["trend-single-hits.png"] == [("0.09/0.12", 0, 2.0, False), ("0.09/0.12", 1, 1.0, True)]


def test_the_report_of_runs_without_pairs_draws_only_the_hits_trend_it_drew_before(monkeypatch, tmp_path):
    drawn = trend_points(monkeypatch, tmp_path, [run_of(1, single_records()), run_of(2, single_records())])
    assert drawn == {"trend-hits.png": [("0.1", 0, 1.0, False), ("0.2", 0, 2.0, False), ("0.1", 1, 1.0, False),
                                        ("0.2", 1, 2.0, False)]}
