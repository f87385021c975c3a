"""What a sweep shows: the header line, a line per generation while it runs, and the results at the end.

**While it runs.** The interleaved schedule times every benchmark's rounds inside the first
benchmark's test, so without :class:`Progress` a sweep shows nothing for its whole length (minutes
on a GPU). Each line is written after the generation's clock stopped, never inside the timed region.
pytest captures a test's output, so lines go through its terminal reporter with capture suspended,
as its live logging does: they show in a plain ``pytest benchmarks`` run, and in ``fbcache nightly``
which streams the sweep. ``-qq`` silences them; xdist workers, which have no terminal, write none.

**At the end.** The results table (the terminal's ``fbcache`` section and ``results.md``), the
bounds verdict, the timer and compile checks, and where the history and images went.

Everything here formats what it is given; the session (:mod:`fbcache.plugin.session`) decides what.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from fbcache import explain, render
from fbcache.config import HarnessConfig, Threshold
from fbcache.history import UNCACHED, BenchRecord
from fbcache.verdicts.bounds import BoundsProfile

Write = Callable[[str], None]

#: pytest's verbosity at and below which the lines are left out (``-qq``)
SILENT_VERBOSITY = -2
RESULTS_FILE = "results.md"


class Results(Protocol):
    """What the results are made of (an :class:`~fbcache.plugin.session.FBCacheSession`)."""

    config: HarnessConfig
    records: dict[str, BenchRecord]
    profile: BoundsProfile | None
    model_load_s: float | None
    cold_start_s: float | None
    #: the untimed profiled generations and FLOPs counts after the timed rounds, and their wall seconds
    explain_generations: int
    explain_cost_s: float
    #: benchmarks that took the FLOPs count of one with the same hit at every step instead of counting
    flops_shared: int

    @property
    def notes(self) -> list[str]: ...


# ------------------------------------------------------------------------------------ while it runs


def terminal_writer(config: Any) -> Write | None:
    """Write a whole line to pytest's terminal now, capture or not; None when there is no terminal or -qq."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    worker = hasattr(config, "workerinput")  # an xdist worker's output goes nowhere
    if reporter is None or worker or config.get_verbosity() <= SILENT_VERBOSITY:
        return None
    capture = config.pluginmanager.get_plugin("capturemanager")

    def write(line: str) -> None:
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.write_line(line)  # starts a new line if pytest was in the middle of one
            reporter.flush()

    return write


def duration_text(seconds: float) -> str:
    """'45 s', '3 min 20 s', '1 h 05 min': a time left, as precise as it is worth."""
    seconds = max(0, round(seconds))
    if seconds < 1:
        return "under 1 s"
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Counts the sweep's generations and writes one line for each as it finishes."""

    def __init__(self, write: Write | None, total: int, now: Callable[[], float] = time.monotonic) -> None:
        self._write = write
        self.total = total
        self.done = 0
        self._now = now
        self._started: float | None = None

    def start(self, schedule: str = "") -> None:
        """Mark the start of the sweep's generations and say how many there are (the first call only)."""
        if self._started is not None:
            return
        self._started = self._now()
        if self._write is not None and schedule:
            self._write(f"fbcache: timing {self.total} generations ({schedule})")

    def generation(self, threshold: Threshold | None, prompt_index: int | None, warmup: bool, number: int, of: int,
                   seconds: float | None, hits: int | None = None, steps: int | None = None) -> str:
        """Count one finished generation and write its line; returns the line (written or not)."""
        self.start()
        self.done += 1
        name = UNCACHED if threshold is None else f"{threshold:g}"
        parts = [f"fbcache: {name}" + ("" if prompt_index is None else f" p{prompt_index}"),
                 f"{'warm-up' if warmup else 'round'} {number}/{of}"]
        line = " ".join(parts)
        if seconds is not None:
            line += f"  {seconds:.2f} s"
        if hits is not None and steps is not None:
            line += f"  hits {hits}/{steps}"
        line += f"  [{self.done}/{self.total}{self._left()}]"
        if self._write is not None:
            self._write(line)
        return line

    def _left(self) -> str:
        """', about 3 min 20 s left' from the mean wall time per generation so far; '' when done."""
        if self._started is None or self.done >= self.total or self.done == 0:
            return ""
        left = duration_text((self._now() - self._started) / self.done * (self.total - self.done))
        return f", {left} left" if left.startswith("under") else f", about {left} left"


# ------------------------------------------------------------------------------------ before and after


def timing_header(c: HarnessConfig) -> str:
    """How fbcache really times its benchmarks; pytest-benchmark's header shows its own defaults, which it does not use."""
    clock = "time.process_time (the process's CPU time)" if c.clock == "cpu" else "time.perf_counter (wall time)"
    schedule = ("interleaved (round 1 of every benchmark, then round 2, ...)" if c.interleaved
                else "sequential (each benchmark's rounds back to back)")
    threads = f", torch threads {c.threads}" if c.device.startswith("cpu") and c.threads else ""
    return (f"fbcache: timer={clock}, rounds={c.rounds} (+{c.warmup_rounds} untimed warm-up) per benchmark, "
            f"{schedule}{threads}; pytest-benchmark's defaults above (timer, min_rounds, warmup) do not apply "
            "to fbcache benchmarks (see --fbcache-clock, --fbcache-rounds, --fbcache-interleave)")


def results_file(harness: HarnessConfig) -> str:
    """``results.md``; each shard of a sharded sweep writes its own (they share the output directory)."""
    shard = harness.shard
    return RESULTS_FILE if shard is None else f"results-shard{shard.rank}-of-{shard.world_size}.md"


def results_markdown(fb: Results) -> str:
    records = list(fb.records.values())
    parts = [render.markdown_table(records), "", "Hits per step ('#' computed, '.' cache hit):", "```",
             render.hit_map(records), "```", "", "Relative first-block residual difference per step:", "```",
             render.residual_ranges(records), "```"]
    single_stream = render.hit_map(records, single_stream=True)
    if single_stream:
        parts += ["", f"Hits per step of {render.SINGLE_STREAM_MAP}:", "```", single_stream, "```",
                  "", "Its relative residual difference per step:", "```", render.residual_ranges(records, True), "```"]
    section = explain.markdown_section(records, clock_text(fb.config))
    if section:
        parts += ["", "Why this speedup:", "", section]
    if fb.notes:
        parts += [""] + [f"> {note}" for note in fb.notes]
    warnings = sorted({w for r in records for w in (r.machine_state or {}).get("warnings", [])})
    if warnings:
        parts += ["", "Machine state changed during the run (timings may not be comparable):"]
        parts += [f"- warning: {w}" for w in warnings]
    findings = compile_cache_findings(render.ordered(records))
    if findings:
        parts += ["", "Compile cache (a warm start expected, a cold compilation found):"]
        parts += [f"- finding: {f}" for f in findings]
    return "\n".join(parts) + "\n"


def timing_checks(fb: Results) -> list[str]:
    lines = []
    agreements = [r.timer_agreement_pct for r in fb.records.values() if r.timer_agreement_pct is not None]
    if agreements:
        lines.append(f"timer check: host timer vs CUDA events differ by at most {max(agreements):.3f}% "
                     f"over {sum(len(r.cuda_event_s) for r in fb.records.values())} timed generations")
    uncached = fb.records.get(UNCACHED)
    if uncached is not None and uncached.overhead_pct is not None:
        lines.append(f"self-check: recorded median vs bare loop median: {uncached.overhead_pct:+.2f}% "
                     f"({len(uncached.rounds_s)} vs {len(uncached.bare_loop_s)} uncached generations)")
    return lines


def compile_lines(fb: Results) -> list[str]:
    """Where compilation went: the first call of each cache state, untimed; none in timed rounds."""
    records = [r for r in render.ordered(fb.records.values()) if r.compile_warmup_s is not None]
    if not records:
        return []
    states = ", ".join(f"{r.label} {r.compile_warmup_s:.1f} s ({r.compile_graphs} new graphs)" for r in records)
    first = records[0]
    compile_s = "—" if first.compile_s is None else f"{first.compile_s:.1f} s"
    return [f"compile: {fb.config.compile}; first call of each cache state, untimed: {states}",
            f"compile: first-call compile time {compile_s} ({first.label}: first call minus timed median); "
            f"no compilation during the timed rounds of {len(records)} benchmark(s)"] + compile_cache_lines(records)


def _lookups(record: BenchRecord) -> str:
    entry = record.compile_cache
    if entry.get("state") is None:
        return f"{record.label} nothing compiled"
    return (f"{record.label} {entry['state']} ({entry.get('hits', 0)} hits, {entry.get('misses', 0)} misses"
            + (f", {entry['bypasses']} bypassed" if entry.get("bypasses") else "") + ")")


def compile_cache_lines(records: list[BenchRecord]) -> list[str]:
    """Where the compile caches were, what each first call found in them, and every finding."""
    cached = [r for r in records if r.compile_cache]
    if not cached:
        return []
    where = cached[0].compile_cache.get("dir") or "torch's default (the system temp directory; see --fbcache-compile-cache)"
    return ([f"compile cache: {where}: " + ", ".join(_lookups(r) for r in cached)]
            + [f"compile cache FINDING: {finding}" for finding in compile_cache_findings(records)])


def compile_cache_findings(records: list[BenchRecord]) -> list[str]:
    """Benchmarks whose first call compiled cold although the compile cache held their stack."""
    return [r.compile_cache["finding"] for r in records if r.compile_cache.get("finding")]


def results_lines(fb: Results, bound_failures: int, bounds_note: str | None) -> list[str]:
    """The terminal's results: the run's settings, the table, the bounds verdict and the checks."""
    c = fb.config
    lines = [f"model {c.model} | quantization {c.quant} | compile {c.compile} | cache {c.cache_backend} | {c.steps} steps | "
             f"{c.resolution} | device {c.device} | rounds {c.rounds} (+{c.warmup_rounds} warm-up, "
             f"{'interleaved' if c.interleaved else 'sequential'})"
             + (f" | torch threads {c.threads}" if c.device.startswith("cpu") and c.threads else "")
             + (" | CPU clock (process time)" if c.clock == "cpu" else "")
             + (f" | model loaded once in {fb.model_load_s:.1f} s" if fb.model_load_s is not None else "")
             + (f" | first generation (cold start) {fb.cold_start_s:.2f} s" if fb.cold_start_s is not None else "")]
    if c.prompt_set is not None:
        lines.append(f"prompt set {c.prompt_set.name} ({len(c.cases)} prompts, digest {c.prompt_set.digest})"
                     + (f" | shard {c.shard.rank}/{c.shard.world_size} ({c.shard.origin}): prompts "
                        f"{', '.join(f'p{i}' for i in c.shard_indices)} on {c.device}" if c.shard is not None else ""))
    lines += results_markdown(fb).splitlines()
    if fb.profile is not None:
        kept = not bound_failures
        lines.append(f"bounds: profile {fb.profile.name} ({fb.profile.source}): "
                     + ("all enforced bounds kept" if kept else f"{bound_failures} benchmark(s) broke a bound"))
        for record in render.ordered(fb.records.values()):
            for message in record.bounds.get("reported", []):
                lines.append(f"  note: {message}")
    else:
        lines.append(f"bounds: none: {bounds_note}" if bounds_note else "bounds: none (no profile matched; see --fbcache-bounds)")
    return lines + timing_checks(fb) + compile_lines(fb) + explain_lines(fb)


def clock_text(c: HarnessConfig) -> str:
    """What the profiled generations' parts were timed with."""
    if c.device.startswith("cuda"):
        return "parts timed with CUDA events"
    return "parts timed with " + ("the process's CPU time" if c.clock == "cpu" else "the wall clock")


def explain_lines(fb: Results) -> list[str]:
    """What the untimed generations after the timed rounds cost, and how to leave them out."""
    if not (fb.explain_generations or fb.flops_shared):
        return []
    c = fb.config
    what = " and ".join(name for name, on in (("a profiled generation", c.breakdown), ("a FLOPs count", c.flops)) if on)
    shared = (f" ({fb.flops_shared} FLOPs count{'' if fb.flops_shared == 1 else 's'} taken from a benchmark with the same hit at every step)"
              if fb.flops_shared else "")
    return [f"untimed after each benchmark's rounds: {what}; {fb.explain_generations} generations{shared}, "
            f"{fb.explain_cost_s:.1f} s in all (--fbcache-breakdown off and --fbcache-flops off leave them out)"]


def terminal_summary(terminalreporter: Any, fb: Results, bound_failures: int, bounds_note: str | None,
                     refusal: str | None, saved_path: Path | None, unwritten: list[str]) -> None:
    """The ``fbcache`` section: results, whether the history kept the run, files not written, where images went."""
    write = terminalreporter.write_line
    terminalreporter.section("fbcache")
    if fb.records:
        for line in results_lines(fb, bound_failures, bounds_note):
            write(line)
    if refusal:
        write(f"history: NOT saved: {refusal}", red=True)
    elif saved_path is not None:
        marks = (["bounds broken"] if bound_failures else []) + \
            (["compile cache missed"] if compile_cache_findings(list(fb.records.values())) else [])
        marked = f" (marked: {'; '.join(marks)})" if marks else ""
        write(f"history: saved {saved_path}{marked}")
    for line in unwritten:
        write(line, red=True)
    if fb.records:
        write(f"images and {results_file(fb.config)}: {fb.config.output_dir}")
