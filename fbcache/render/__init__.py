"""The results table (the seed's columns plus speedup, hits and similarity) and the hit maps.

A run with a prompt set gets one line per threshold over the whole set (:func:`set_table`: mean and
worst prompt of every image metric, mean hits, the set's speedup), then the per-prompt lines.

A MULTI/SINGLE threshold pair decides twice per step: its hits cell shows both decisions' hits, and
its single-stream decisions get a hit map of their own (:func:`hit_map` with ``single_stream``).

"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from fbcache import explain, markup
from fbcache.history import GIB, BenchRecord, ThresholdSummary, is_prompt_set, ordered, summarize
from fbcache.metrics import ImageMetric, all_metrics, measured

PEAK_TITLE = "peak GiB"
#: said once under the table of a run without the peak column
NO_PEAK_NOTE = "Peak GPU memory: not shown: a CPU run has no GPU allocator to read."
#: the columns of a run with profiles or FLOPs counts (fbcache/explain.py)
EXPLAIN_TITLES = ["ideal ×", "efficiency", "FLOPs ×"]


def shown_metrics(records: Iterable[BenchRecord]) -> tuple[ImageMetric, ...]:
    """The image metrics the records were measured with: a metric the run did not compute gets no column."""
    return measured(r.metrics for r in records)


def columns(compiled: bool = False, peaks: bool = False, explained: bool = False,
            shown: Sequence[ImageMetric] | None = None) -> list[str]:
    """The seed's columns, then speedup and hits, then each image metric ``shown`` (None: every registered one).

    A compiled session adds ``compile (s)``: its first call in each cache state minus the timed median,
    with what the compile cache made of it (cold, warm, ...; '!' marks a finding: a cached stack compiled cold);
    a GPU run adds ``peak GiB``: each benchmark's allocator peak over its own timed generations.
    A run with profiles or FLOPs counts adds the ideal speedup, the efficiency and the FLOPs speedup.
    """
    extra = (["compile (s)"] if compiled else []) + ([PEAK_TITLE] if peaks else [])
    extra += EXPLAIN_TITLES if explained else []
    shown = all_metrics() if shown is None else shown
    return ["threshold", "1st (s)", "2nd (s)", "total (s)", "speedup", "hits/steps", *(m.title for m in shown), *extra]


def has_peaks(records: Iterable[BenchRecord]) -> bool:
    """Whether any benchmark recorded a GPU allocator peak (a CPU run has none)."""
    return any(r.peak_memory_bytes is not None for r in records)


def peak_note(records: Iterable[BenchRecord]) -> str | None:
    """The one line that says why the peak column is missing, or None when it is shown."""
    return None if has_peaks(records) else NO_PEAK_NOTE


def _gib(peak: int | None) -> str:
    return "—" if peak is None else f"{peak / GIB:.2f}"


def is_compiled(records: Iterable[BenchRecord]) -> bool:
    return any(r.compile_mode != "none" for r in records)


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _compile_cell(record: BenchRecord) -> str:
    """The first-call compile time, and whether the compile cache made it cold or warm ('31.2 cold')."""
    if record.compile_s is None:
        return "—"
    state = record.compile_cache.get("state")
    finding = " !" if record.compile_cache.get("finding") else ""
    return f"{record.compile_s:.1f}" + (f" {state}" if state else "") + finding


def row(record: BenchRecord, compiled: bool = False, peaks: bool = False,
        explanations: Mapping[str, explain.Explanation] | None = None,
        shown: Sequence[ImageMetric] | None = None) -> list[str]:
    first, second = record.first_s, record.second_s
    total = first + second if first is not None and second is not None else None
    if record.threshold is None:
        speedup, hits = "1.00 (ref)", "— (no cache)"
    else:
        speedup = "—" if record.speedup is None else f"{record.speedup:.2f}x"
        hits = "—" if record.hits is None else f"{record.hits}/{record.steps}"
        if record.single_hits is not None:
            hits += f", single-stream {record.single_hits}/{record.steps}"
        if not record.hits_consistent:
            hits += f" (varied: {sorted(set(record.hits_per_round))}"
            hits += f", single-stream {sorted(set(record.single_hits_per_round))})" if record.single_hits_per_round \
                else ")"
    label = record.label + (" !" if not record.bounds_ok else "")
    values = [m.format(record.metrics.get(m.name)) for m in (all_metrics() if shown is None else shown)]
    extra = [_compile_cell(record)] if compiled else []
    extra += [_gib(record.peak_memory_bytes)] if peaks else []
    if explanations is not None:
        found = explanations.get(record.label)
        extra += (["—"] * 3 if found is None or record.threshold is None else
                  [explain.ratio_text(found.ideal_speedup), explain.fraction_text(found.efficiency),
                   explain.ratio_text(found.flops_speedup)])
    return [label, _seconds(first), _seconds(second), _seconds(total), speedup, hits, *values, *extra]


def explanations_of(records: Iterable[BenchRecord]) -> dict[str, explain.Explanation] | None:
    """Each benchmark's explanation, or None for a run without profiles and FLOPs counts (no columns)."""
    records = list(records)
    return explain.explain(records) if explain.has_explanations(records) else None


def set_columns(peaks: bool = False, shown: Sequence[ImageMetric] | None = None) -> list[str]:
    """A prompt set's line per threshold: the set's speedup, hits over the prompts, each metric's mean and worst
    (and on a GPU the highest peak of its prompts)."""
    metrics = [title for m in (all_metrics() if shown is None else shown)
               for title in (f"{m.title} mean", f"{m.title} worst")]
    return ["threshold", "prompts", "mean time (s)", "speedup", "hits mean (min-max)/steps", *metrics,
            *([f"{PEAK_TITLE} max"] if peaks else [])]


def set_row(summary: ThresholdSummary, peaks: bool = False, shown: Sequence[ImageMetric] | None = None) -> list[str]:
    mean = summary.mean_median_s
    if summary.threshold is None:
        speedup, hits = "1.00 (ref)", "— (no cache)"
    else:
        speedup = "—" if summary.speedup is None else f"{summary.speedup:.2f}x"
        hits = "—" if summary.hits_mean is None else (
            f"{summary.hits_mean:.1f} ({summary.hits_min}-{summary.hits_max})/{summary.steps}")
    label = summary.label + (" !" if not all(r.bounds_ok for r in summary.records) else "")
    metrics = [m.format(value) for m in (all_metrics() if shown is None else shown)
               for value in (summary.metrics[m.name].mean, summary.metrics[m.name].worst)]
    found = [r.peak_memory_bytes for r in summary.records if r.peak_memory_bytes is not None]
    extra = [_gib(max(found) if found else None)] if peaks else []
    return [label, str(summary.prompts), _seconds(mean), speedup, hits, *metrics, *extra]


def results(records: Iterable[BenchRecord]) -> tuple[list[str], list[list[str]]]:
    """The main table: one line per benchmark, or per threshold over a prompt set."""
    records = list(records)
    peaks, shown = has_peaks(records), shown_metrics(records)
    if is_prompt_set(records):
        return set_columns(peaks, shown), [set_row(s, peaks, shown) for s in summarize(records)]
    compiled, explained = is_compiled(records), explanations_of(records)
    return (columns(compiled, peaks, explained is not None, shown),
            [row(r, compiled, peaks, explained, shown) for r in ordered(records)])


def prompt_legend(records: Iterable[BenchRecord]) -> list[str]:
    """'p3 (seed 0): "a red fox ..."' for every prompt of a set that the records cover."""
    seen = {r.prompt_index: r for r in records if r.prompt_index is not None}
    return [f"p{index} (seed {seen[index].seed}): {seen[index].prompt}" for index in sorted(seen)]


def markdown_table(records: Iterable[BenchRecord], per_prompt: Iterable[BenchRecord] | None = None) -> str:
    """The results table; with a prompt set, the per-threshold table, then every prompt's line and the prompts
    (``per_prompt``: only these records' lines and prompts, for a report that bounds its size)."""
    records = list(records)
    listed = records if per_prompt is None else list(per_prompt)
    compiled, peaks, explained = is_compiled(records), has_peaks(records), explanations_of(records)
    shown = shown_metrics(records)
    text = markup.table(*results(records))
    notes = [peak_note(records), None if explained is not None else explain.NOT_MEASURED_NOTE]
    text += "".join(f"\n\n{note}" for note in notes if note is not None)
    if is_prompt_set(records):
        text += ("\n\nPer prompt:\n\n" + markup.table(columns(compiled, peaks, explained is not None, shown),
                                                          [row(r, compiled, peaks, explained, shown)
                                                           for r in ordered(listed)])
                 + "\n\nPrompts:\n\n" + "\n".join(f"- {markup.cell(line)}" for line in prompt_legend(listed)))
    return text


#: what the second hit map shows, where a run has MULTI/SINGLE pairs
SINGLE_STREAM_MAP = "the single-stream decision of each MULTI/SINGLE pair (after the first single-stream block)"


def hit_map(records: Iterable[BenchRecord], single_stream: bool = False) -> str:
    """One line per threshold, one character per denoising step: '#' computed, '.' cache hit. The step's
    decision (a pair's double-stream one); with ``single_stream``, each pair's second decision instead."""
    lines = []
    for record in ordered(records):
        trace, hits = (record.single_hit_trace, record.single_hits) if single_stream else \
            (record.hit_trace, record.hits)
        if record.threshold is None or not trace:
            continue
        steps = "".join("." if hit else "#" for hit in trace)
        lines.append(f"{record.label:>8}  {steps}  {hits}/{record.steps} hits")
    return "\n".join(lines)


def residual_ranges(records: Iterable[BenchRecord], single_stream: bool = False) -> str:
    """Range of the relative first-block residual difference per threshold (what the cache compared); with
    ``single_stream``, of each MULTI/SINGLE pair's first single-stream block."""
    lines = []
    for record in ordered(records):
        trace = record.single_residual_diff_trace if single_stream else record.residual_diff_trace
        diffs = [d for d in trace if d is not None]
        if record.threshold is not None and diffs:
            lines.append(f"{record.label:>8}  min {min(diffs):.3f}  median {sorted(diffs)[len(diffs) // 2]:.3f}"
                         f"  max {max(diffs):.3f}")
    return "\n".join(lines)
