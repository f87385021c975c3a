"""Both stages of a MULTI/SINGLE threshold pair wherever hits show: the report's hit map PNG and hits trend,
``fbcache compare``'s hits column (Markdown and JSON) and ``fbcache xreport``'s hits columns. A run without
pairs shows exactly what it showed before."""

from __future__ import annotations

from test_threshold_pairs import pair_record, record

from fbcache.render import plots

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
