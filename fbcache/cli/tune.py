"""``fbcache tune``: the fastest threshold that keeps quality above a floor - found by a search, proven by
a timed sweep.

    fbcache tune --min-NAME X | --max-NAME X ... [--prompts default] [--min-speedup 1.5]
                 [--bounds-out PROFILE] [--json FILE]

one floor option per registered image metric, its direction deciding min or max (listed below)

1. **Search** (:mod:`fbcache.verdicts.tune`, where the method is derived): untimed generations, bisected
   between 0 and ``--max-threshold``; each generation's decision trace gives the exact interval of
   thresholds that make its hit pattern, so the search ends when the highest pattern that keeps every
   floor and the lowest that breaks one are neighbours. Quality is the worst prompt's. Every generation
   goes into the trace file, which a rerun (other floors, another ``--max-threshold``) reads instead of
   generating again; a rerun whose trace holds every generation it needs builds no model.
2. **Proof**: the recommendation, the measured patterns just below and above it, and the uncached
   baseline, timed with the sweep's interleaved, paired rounds (:func:`fbcache.plugin.schedule.run_interleaved`).
   Each speedup is the median over rounds of uncached over cached time (over a prompt set: the set's
   sums), with its distribution-free interval (:func:`fbcache.verdicts.stats.median_interval`). A cache that
   cannot be removed, or a compiled session, cannot interleave with the uncached baseline: the search
   runs, the proof does not, and tune says so.
3. **Answer**: the recommended threshold (the middle of its pattern's interval), its speedup and
   interval, its worst-prompt quality, the next faster pattern and the floor it breaks, and every
   measured pattern (the frontier) as a table, ``frontier.md`` and ``frontier.png``; ``--json`` and
   ``--bounds-out`` (a bounds profile for the recommendation, as ``fbcache calibrate`` writes one).

Model, backend, device and the other sweep options are the sweep's (spelled without ``--fbcache-``;
``FBCACHE_*`` variables set them too). Every option and file is checked before any model is built.
Exit codes: 0 a recommendation that keeps every floor (and ``--min-speedup``), 4 none does, 2 usage
or I/O error.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbcache import markup, metrics
from fbcache.cli import add_metric_amounts, metric_amounts, output_dir, output_file, write_file
from fbcache.config import HarnessConfig, OptionSpec, parse_margin
from fbcache.configure import build_config, check_environment, option_name, options
from fbcache.errors import EXIT_CLEAN, EXIT_UNMET, MISSING, BrokenRunError, ConfigError
from fbcache.history import BenchRecord
from fbcache.history.fingerprint import match_facts
from fbcache.verdicts.bounds import calibrate
from fbcache.verdicts.stats import MedianInterval, median_interval
from fbcache.verdicts.tune import (
    GRID_STEP,
    HALVINGS,
    Floor,
    Probe,
    Search,
    Step,
    Trace,
    floor_option,
    grid_generations,
    parse_floors,
    read_trace,
    search,
    workload_differences,
)

if TYPE_CHECKING:
    import numpy as np

HELP = "find the fastest threshold that keeps quality above floors: a search, then a timed proof"
DESCRIPTION = __doc__

#: sweep options tune does not take: it searches the thresholds itself, interleaves the rounds it times,
#: runs unsharded and writes its own files and profile; it shows no breakdown or FLOPs, so it makes neither
NOT_TAKEN = ("thresholds", "shard", "bounds", "bounds_dir", "output_dir", "force_compare", "interleave", "selfcheck",
             "breakdown", "flops")
#: tune's own defaults for sweep options: five paired rounds give a 90% interval (three give 75%)
DEFAULTS = {"rounds": "5"}
#: the speedup interval's coverage
COVERAGE = 0.9
TRACE_FILE, TABLE_FILE, PLOT_FILE = "trace.json", "frontier.md", "frontier.png"
#: an interval narrower than this fraction of its threshold is said to be fragile
NARROW = 0.01


# ------------------------------------------------------------------------------------ options


def sweep_options() -> list[OptionSpec]:
    """The sweep's options tune takes: model, backend, device, steps, prompts, rounds, ... and every
    registered extension's own."""
    return [spec for spec in options() if spec.name not in NOT_TAKEN and not spec.name.startswith("calibrate")]


def _dest(spec: OptionSpec) -> str:
    return "sweep_" + spec.name


def _flag(spec: OptionSpec) -> str:
    return "--" + spec.name.replace("_", "-")


def _floor_dest(metric: metrics.ImageMetric) -> str:
    return "floor_" + metric.name.replace("-", "_")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for metric in metrics.all_metrics():
        side = "lowest" if metric.higher_is_better else "highest"
        parser.add_argument(floor_option(metric), dest=_floor_dest(metric), metavar="X",
                            help=f"the {side} {metric.title} the worst prompt may have (the same as --floor {metric.name}=X)")
    parser.add_argument("--floor", action="append", default=[], metavar="METRIC=X",
                        help="a floor on any registered image metric, its direction the metric's own "
                             "(repeatable, or comma-separated); at least one floor is needed")
    parser.add_argument("--min-speedup", metavar="X", help="the recommendation must also be this much faster than "
                        "uncached (the lower end of its interval); needs the timed proof")
    parser.add_argument("--max-threshold", default="1", metavar="T", help="the upper end of the search (1)")
    parser.add_argument("--bounds-out", metavar="PROFILE",
                        help="write a bounds profile for the recommendation here (a TOML path, e.g. "
                             "benchmarks/bounds/mine.toml), as fbcache calibrate does")
    parser.add_argument("--speedup-margin", default="0.15", metavar="FRACTION",
                        help="--bounds-out: relative margin below the measured speedup (0.15)")
    add_metric_amounts(parser, "margin", "--bounds-out: how far beyond the measured value an image metric's bound goes",
                       lambda metric: metric.margin_text(metric.calibrate_margin))
    parser.add_argument("--json", metavar="FILE", help="also write the recommendation and the frontier here")
    parser.add_argument("--out-dir", default="fbcache-tune",
                        help="where the trace, frontier.md and frontier.png go (default fbcache-tune)")
    parser.add_argument("--trace", metavar="FILE", help="the search trace to read and extend (default OUT_DIR/trace.json)")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing trace: generate every probe again")
    parser.add_argument("--untimed", action="store_true",
                        help="skip the timed proof: the recommendation from the search alone, no speedup measured")
    group = parser.add_argument_group("sweep options (as pytest's --fbcache-*; FBCACHE_* variables set them too)")
    for spec in sweep_options():
        default = DEFAULTS.get(spec.name, spec.default) or spec.default_help
        if spec.flag:
            group.add_argument(_flag(spec), dest=_dest(spec), action="store_const", const="true",
                               help=f"{spec.help_text()} (default: off)")
        else:
            group.add_argument(_flag(spec), dest=_dest(spec), metavar=spec.metavar,
                               action="append" if spec.multiple else "store",
                               help=f"{spec.help_text()} (default: {default})")


def sweep_config(args: argparse.Namespace, environ: dict[str, str] | None = None) -> tuple[HarnessConfig, dict[str, str]]:
    """The sweep options as the sweep parses them (command line, then FBCACHE_* variables, then tune's or the
    table's default), and where each came from: tune's flag or the variable."""
    environ = dict(os.environ) if environ is None else environ
    raw: dict[str, str | None] = {"shard": "off", "interleave": "true", "bounds": "none", "output_dir": args.out_dir,
                                  "breakdown": "off", "flops": "off"}
    sources = {"output_dir": "--out-dir"}
    for spec in sweep_options():
        value = getattr(args, _dest(spec), None)
        if isinstance(value, list):
            value = ",".join(value)
        sources[spec.name] = _flag(spec)
        if value is None and environ.get(spec.env) not in (None, ""):
            value, sources[spec.name] = environ[spec.env], spec.env
        raw[spec.name] = value if value is not None else DEFAULTS.get(spec.name)
    try:
        return build_config(raw), sources
    except ConfigError as exc:
        raise as_given(exc, sources) from None


def as_given(exc: ConfigError, sources: dict[str, str]) -> ConfigError:
    """The same error, naming the option as it was given to tune (``--steps``, ``FBCACHE_STEPS``), not pytest's."""
    name = option_name(exc.option)
    return exc.from_source(sources[name]) if name in sources else exc


@dataclass(frozen=True)
class Settings:
    """Every option of one tune, checked."""

    floors: tuple[Floor, ...]
    limit: float
    min_speedup: float | None
    speedup_margin: float
    margins: dict[str, float]
    out_dir: Path
    trace: Path
    json: Path | None
    bounds_out: Path | None
    #: why the proof is skipped (None: it runs)
    untimed: str | None
    fresh: bool
    config: HarnessConfig
    #: where each sweep option came from (tune's flag or an FBCACHE_* variable), for error messages
    sources: dict[str, str] = field(default_factory=dict)


def _positive(option: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(option, raw, "a finite number > 0", "not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(option, raw, "a finite number > 0", "not finite" if not math.isfinite(value) else "not above 0")
    return value


def settings(args: argparse.Namespace) -> Settings:
    """Every option checked, one line on the first problem, before any model is built."""
    floors = parse_floors(args.floor, {m.name: getattr(args, _floor_dest(m), None) for m in metrics.all_metrics()})
    if not floors:
        spellings = ", ".join(f"{floor_option(m)} X" for m in metrics.all_metrics())
        raise ConfigError("--floor", MISSING, f"at least one floor: {spellings}, or --floor METRIC=X",
                          "tune needs a quality to keep")
    limit = _positive("--max-threshold", args.max_threshold)
    min_speedup = _positive("--min-speedup", args.min_speedup) if args.min_speedup is not None else None
    margin = parse_margin("--speedup-margin", args.speedup_margin, 1.0)
    margins = metric_amounts(args, "margin", margins=True)
    out_dir = output_dir(args.out_dir, "--out-dir")
    trace = output_file(args.trace, "--trace") if args.trace else out_dir / TRACE_FILE
    json_path = output_file(args.json, "--json") if args.json else None
    bounds_out = output_file(args.bounds_out, "--bounds-out") if args.bounds_out else None
    config, sources = sweep_config(args)
    # a floor's metric is computed, as --metrics names it or not (an opt-in one is checked in preflight then)
    chosen = {m.name for m in metrics.selected(config.metrics)} | {f.metric.name for f in floors}
    config = replace(config, metrics=tuple(m.name for m in metrics.all_metrics() if m.name in chosen))
    untimed = "--untimed" if args.untimed else None if config.interleaved else untimed_reason(config)
    if min_speedup is not None and untimed is not None:
        raise ConfigError("--min-speedup", args.min_speedup, "leave it out, or run the timed proof",
                          f"nothing is timed: {untimed}")
    return Settings(floors, limit, min_speedup, margin, margins, out_dir, trace, json_path, bounds_out, untimed,
                    args.fresh, config, sources)


def untimed_reason(config: HarnessConfig) -> str:
    """Why this workload's rounds cannot be interleaved with the uncached baseline."""
    if not config.cache_removable:
        return (f"the {config.cache_backend} cache cannot be removed once applied, so its rounds cannot be "
                "interleaved with the uncached baseline")
    return f"--compile {config.compile}: switching the cache between compiled generations is not interleaved"


# ------------------------------------------------------------------------------------ the workload and its trace


def workload_identity(config: HarnessConfig, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """What makes two generations the same: the run's fingerprint but how it is timed, the CPU threads (they
    change a CPU's float sums) and the image metrics measured."""
    identity = {key: value for key, value in fingerprint.items() if key != "procedure"}
    identity["threads"] = config.threads if config.device.startswith("cpu") else None
    identity["metrics"] = [m.name for m in metrics.selected(config.metrics)]
    return identity


def read_known(settings: Settings, identity: dict[str, Any]) -> Trace:
    """The trace to extend: the file's, if it holds this workload's generations; a new one otherwise."""
    path = settings.trace
    if settings.fresh or not path.exists():
        return Trace(identity)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("--trace", str(path), "a trace this workload wrote, or --fresh", str(exc)) from None
    trace = read_trace(text, str(path))
    differences = workload_differences(trace.workload, identity)
    if differences:
        raise ConfigError("--trace", str(path), "a trace of this workload, another --trace path, or --fresh",
                          "its generations are of another workload: " + "; ".join(differences))
    return trace


# ------------------------------------------------------------------------------------ generations


class Generations:
    """The model, its cache and each prompt's uncached image, made on first use: a rerun whose trace holds
    every generation it needs builds no model."""

    def __init__(self, config: HarnessConfig, write: Callable[[str], None]) -> None:
        self.config = config
        self.write = write
        self._session: Any = None
        self._references: dict[int, np.ndarray] = {}
        #: generations made: uncached references and probes
        self.made = 0

    def prompt_index(self, prompt: int) -> int | None:
        """The sweep's prompt index (None: the run's one prompt)."""
        return prompt if self.config.prompt_set is not None else None

    @property
    def prompts(self) -> list[int]:
        return list(range(len(self.config.cases)))

    @property
    def session(self) -> Any:
        """The sweep's session (one model, one cache backend), its model loaded."""
        if self._session is None:
            import pytest

            from fbcache.plugin.session import FBCacheSession

            session = FBCacheSession(self.config, None)
            session.progress_write = self.write
            try:
                _ = session.model
            except pytest.fail.Exception as exc:  # the session's one-line load failure
                raise BrokenRunError(str(exc.msg).removeprefix("fbcache: ")) from None
            self._session = session
        return self._session

    def reference(self, prompt: int) -> np.ndarray:
        if prompt not in self._references:
            from fbcache.plugin import schedule

            self._references[prompt] = schedule.uncached_image(self.session, self.prompt_index(prompt))
            self.made += 1
            self.write(f"fbcache tune: uncached{self._suffix(prompt)} [{self.made} generations]")
        return self._references[prompt]

    def _suffix(self, prompt: int) -> str:
        return "" if self.config.prompt_set is None else f" p{prompt}"

    def probe(self, prompt: int, threshold: float) -> Probe:
        """One untimed generation with the cache at ``threshold``, measured against its uncached image."""
        from fbcache.plugin import schedule

        session = self.session
        if not session.backend.can_run_uncached or not self.config.cache_removable:
            for each in self.prompts:  # a cache that cannot be removed: every uncached image before it is applied
                self.reference(each)
        reference = self.reference(prompt)
        decisions, image = schedule.cached_image(session, threshold, self.prompt_index(prompt))
        if len(decisions) != self.config.steps:
            raise BrokenRunError(f"the cache decided {len(decisions)} times in a {self.config.steps}-step generation "
                                 f"at threshold {threshold:g}; its hooks did not see every step")
        self.made += 1
        found = Probe(prompt, threshold, tuple(d.hit for d in decisions), tuple(d.diff for d in decisions),
                      session.image_metrics(image, reference))
        shown = ", ".join(f"{m.title} {m.format(found.metrics[m.name])}" for m in metrics.measured([found.metrics]))
        self.write(f"fbcache tune: {threshold:.6g}{self._suffix(prompt)}  hits {len(found.hits) - found.computed}/"
                   f"{len(found.hits)}  {shown}  [{self.made} generations]")
        return found


# ------------------------------------------------------------------------------------ the proof


@dataclass
class Timed:
    """One threshold's timed rounds against the uncached ones timed next to them."""

    threshold: float
    #: per round, uncached over cached seconds (over a prompt set: the sums over its prompts)
    ratios: list[float]
    interval: MedianInterval | None
    #: per prompt (index as the sweep numbers it), the interleaved rounds
    rounds: dict[int | None, Any] = field(default_factory=dict)
    #: whether every timed round reused exactly the steps the search's generation reused
    same_pattern: bool = True


def prove(generations: Generations, steps: dict[float, Step]) -> tuple[dict[float, Timed], dict[int | None, Any]]:
    """The candidates (threshold -> their pattern) and the uncached baseline, in the sweep's interleaved rounds."""
    from fbcache.plugin import schedule

    session = generations.session
    config = generations.config
    session.planned_thresholds = tuple(sorted(steps))
    session.planned_prompts = tuple(generations.prompts) if config.prompt_set is not None else ()
    results = schedule.run_interleaved(session)
    keys = list(session.planned_prompts) or [None]
    uncached = {p: results[(None, p)] for p in keys}
    timed = {}
    for threshold, step in steps.items():
        mine = {p: results[(threshold, p)] for p in keys}
        ratios = [sum(uncached[p].seconds[j] for p in keys) / sum(mine[p].seconds[j] for p in keys)
                  for j in range(config.rounds)]
        patterns = {p: step.probes[p or 0].hits for p in keys}
        same = all(tuple(d.hit for d in decisions) == patterns[p]
                   for p in keys for decisions in mine[p].rounds.decisions)
        timed[threshold] = Timed(threshold, ratios, median_interval(ratios, COVERAGE), mine, same)
    return timed, uncached


def records(settings: Settings, recommended: Step, threshold: float, timed: Timed | None,
            uncached: dict[int | None, Any]) -> list[BenchRecord]:
    """The recommendation's records, per prompt (and the uncached ones it was timed against), as the sweep
    writes them: what ``calibrate`` turns into a bounds profile."""
    config = settings.config
    found = []
    for probe in recommended.probes:
        index = probe.prompt if config.prompt_set is not None else None
        case = config.case(index)
        baseline = BenchRecord(threshold=None, model=config.model, quantization=config.quant,
                               cache_backend=config.cache_backend, steps=config.steps, resolution=config.resolution,
                               seed=case.seed, warmup_rounds=config.warmup_rounds, compile_mode=config.compile,
                               prompt_index=index, prompt=None if index is None else case.text)
        record = replace(baseline, threshold=threshold, metrics=dict(probe.metrics),
                         hits=len(probe.hits) - probe.computed, computed_steps=probe.computed,
                         hit_trace=list(probe.hits), residual_diff_trace=list(probe.diffs))
        base, mine = uncached.get(index), timed.rounds.get(index) if timed is not None else None
        if mine is not None and base is not None:
            baseline.rounds_s, baseline.peak_memory_bytes = list(base.seconds), base.rounds.peak_memory_bytes
            record.rounds_s, record.paired_uncached_s = list(mine.seconds), list(base.seconds)
            record.peak_memory_bytes = mine.rounds.peak_memory_bytes
            baseline.schedule = record.schedule = "interleaved"
            paired = record.paired_speedups
            record.speedup = statistics.median(paired) if paired else None
            found.append(baseline)
        found.append(record)
    return found


# ------------------------------------------------------------------------------------ the answer


@dataclass
class Answer:
    """A finished tune: the search, what was timed, and whether the recommendation meets every requirement."""

    settings: Settings
    search: Search
    #: threshold -> its timed rounds (empty when untimed)
    timed: dict[float, Timed]
    #: generations made now (uncached ones included)
    made: int
    #: the run's ``machine_info["fbcache"]`` entry (accelerator, versions, fingerprint)
    info: dict[str, Any] = field(default_factory=dict)
    #: the recommendation's records per prompt, and the uncached ones it was timed against
    records: list[BenchRecord] = field(default_factory=list)
    #: why the recommendation does not meet the requirements (None: it does)
    unmet: str | None = None

    @property
    def limit(self) -> float:
        return self.settings.limit

    def role(self, step: Step) -> str:
        found = self.search
        roles = [(found.recommended, "recommended"), (found.faster, "next faster"), (found.slower, "next slower")]
        return next((name for each, name in roles if each is not None and each.key == step.key), "")

    def speedup(self, step: Step) -> Timed | None:
        return self.timed.get(step.threshold(self.limit))


def _interval(step: Step) -> str:
    low, high = step.interval
    return f"({low:.5g}, {high:.5g})" if low < high else f"{low:.5g} only"


def _speedup_text(timed: Timed | None) -> str:
    if timed is None or timed.interval is None:
        return "—"
    ci = timed.interval
    return f"{ci.median:.2f}x ({ci.low:.2f}-{ci.high:.2f})"


def _measured(steps: list[Step]) -> tuple[metrics.ImageMetric, ...]:
    """The image metrics the probes of ``steps`` computed (an opt-in one the run did not is left out)."""
    return metrics.measured(p.metrics for step in steps for p in step.probes)


def _quality(step: Step) -> str:
    return ", ".join(f"{m.title} {m.format(step.worst(m))}" for m in _measured([step]))


def _broken(step: Step, floors: tuple[Floor, ...]) -> str:
    return ", ".join(f"{f.describe()} ({f.metric.format(step.worst(f.metric))})" for f in step.broken(floors))


def frontier_table(answer: Answer) -> str:
    """Every measured hit pattern, by threshold: its interval, steps reused, speedups, worst prompt, broken floors."""
    shown = _measured(answer.search.steps)
    header = ["threshold", "interval", "reused", "steps/computed", "speedup (CI)",
              *(f"worst {m.title}" for m in shown), "breaks", ""]
    rows = [[f"{step.threshold(answer.limit):g}", _interval(step), f"{step.hits}/{step.steps}",
             f"{step.step_ratio:.2f}", _speedup_text(answer.speedup(step)),
             *(m.format(step.worst(m)) for m in shown),
             _broken(step, answer.search.floors) or "—", answer.role(step)] for step in answer.search.steps]
    return markup.table(header, rows)


def summary(answer: Answer) -> list[str]:
    """What the terminal shows, and frontier.md starts with."""
    settings, found = answer.settings, answer.search
    config = settings.config
    prompts = len(config.cases)
    grid = grid_generations(settings.limit, prompts) + prompts
    floors = ", ".join(f.describe() for f in found.floors)
    lines = [f"fbcache tune: {config.model}, {config.cache_backend}, {config.steps} steps, {config.resolution}, "
             f"{prompts} prompt{'s' if prompts > 1 else ''}; floors {floors} (worst prompt)",
             f"search: {answer.made} generation(s) over thresholds 0 to {settings.limit:g} (a {GRID_STEP:g} grid: "
             f"{grid}); the trace file answered {found.book.from_trace}, this search's own traces "
             f"{found.book.skipped}"]
    best = found.recommended
    if best is None:
        lines.append(f"no threshold keeps every floor: the first reused step already breaks "
                     f"{_broken(found.faster, found.floors) if found.faster is not None else 'one'}")
    else:
        low, high = best.interval
        lines.append(f"recommended threshold: {best.threshold(settings.limit):g} (every threshold in "
                     f"{_interval(best)} reuses the same {best.hits} of {best.steps} steps)")
        if (high - low) < NARROW * best.threshold(settings.limit):
            lines.append("  a narrow interval: a step this narrow may flip under another device's rounding")
        lines.append(f"  worst prompt: {_quality(best)}")
        lines.append("  " + _timing_line(answer, best))
    faster = found.faster
    if faster is not None:
        lines.append(f"next faster: {faster.threshold(settings.limit):g} {_interval(faster)}, {faster.hits}/"
                     f"{faster.steps} reused, {_timing_line(answer, faster)}; breaks {_broken(faster, found.floors)}")
    elif best is not None:
        lines.append(f"next faster: none up to --max-threshold {settings.limit:g}: every floor holds there")
    unresolved = not found.boundary.resolved
    if unresolved:
        lines.append("the cache records no difference for some of its decisions, so the boundary was bisected to "
                     f"1/{2 ** HALVINGS} of the range, not found exactly")
    if answer.unmet:
        lines.append(f"NOT MET: {answer.unmet}")
    return lines


def _timing_line(answer: Answer, step: Step) -> str:
    if answer.settings.untimed is not None:
        return f"not timed ({answer.settings.untimed}); {step.step_ratio:.2f} steps per computed step"
    timed = answer.speedup(step)
    if timed is None or timed.interval is None:
        return f"not timed; {step.step_ratio:.2f} steps per computed step"
    ci = timed.interval
    rounds = len(timed.ratios)
    text = (f"speedup {ci.median:.2f}x, {ci.coverage:.0%} interval {ci.low:.2f}-{ci.high:.2f} "
            f"({rounds} paired rounds, interleaved)")
    if not timed.same_pattern:
        text += "; its timed rounds reused other steps than the search's generation (not deterministic here)"
    return text


def to_json(answer: Answer) -> dict[str, Any]:
    """What ``--json`` writes: the recommendation, its interval, speedup and interval, worst-prompt metrics,
    the next faster pattern and every measured one."""
    found, limit = answer.search, answer.limit

    def step_json(step: Step | None) -> dict[str, Any] | None:
        if step is None:
            return None
        timed = answer.speedup(step)
        ci = timed.interval if timed is not None else None
        return {"threshold": step.threshold(limit), "interval": list(step.interval), "hits": step.hits,
                "steps": step.steps, "steps_per_computed": step.step_ratio if step.computed else None,
                "speedup": ci.median if ci else None, "speedup_ci": [ci.low, ci.high] if ci else None,
                "ci_coverage": ci.coverage if ci else None,
                "worst_prompt": {m.name: m.to_json(step.worst(m)) for m in _measured([step])},
                "breaks": [f.key for f in step.broken(found.floors)], "role": answer.role(step) or None,
                "hit_maps": [p.pattern for p in step.probes]}

    best = step_json(found.recommended)
    prompts = len(answer.settings.config.cases)
    return {
        "recommended_threshold": best["threshold"] if best else None,
        "interval": best["interval"] if best else None,
        "speedup": best["speedup"] if best else None,
        "speedup_ci": best["speedup_ci"] if best else None,
        "ci_coverage": best["ci_coverage"] if best else None,
        "worst_prompt": best["worst_prompt"] if best else None,
        "meets": answer.unmet is None, "unmet": answer.unmet, "untimed": answer.settings.untimed,
        "floors": {f.key: f.bound for f in found.floors},
        "min_speedup": answer.settings.min_speedup,
        "next_faster": step_json(found.faster),
        "frontier": [step_json(step) for step in found.steps],
        "search": {"max_threshold": limit, "generations": answer.made, "from_trace_file": found.book.from_trace,
                   "skipped_by_traces": found.book.skipped,
                   "grid_generations": grid_generations(limit, prompts) + prompts,
                   "boundary_exact": found.boundary.resolved},
    }


def judge(settings: Settings, found: Search, timed: dict[float, Timed]) -> str | None:
    """Why the recommendation does not meet the requirements; None when it does."""
    best = found.recommended
    if best is None:
        return "no threshold keeps every floor"
    if settings.min_speedup is None:
        return None
    ci = timed[best.threshold(settings.limit)].interval
    assert ci is not None  # the proof timed it
    if ci.low >= settings.min_speedup:
        return None
    if ci.high < settings.min_speedup:
        return f"its speedup {ci.median:.2f}x ({ci.low:.2f}-{ci.high:.2f}) is below --min-speedup {settings.min_speedup:g}"
    return (f"too noisy to show --min-speedup {settings.min_speedup:g}: its interval {ci.low:.2f}-{ci.high:.2f} "
            "reaches below it (more --rounds narrow it)")


# ------------------------------------------------------------------------------------ the verb


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def tune(settings: Settings, write: Callable[[str], None] = _stderr) -> Answer:
    """Search, prove, judge; the trace file is written as soon as the search ends (or breaks off)."""
    from fbcache.plugin.machine import fbcache_machine_info

    config = settings.config
    try:
        check_environment(config)
    except ConfigError as exc:
        raise as_given(exc, settings.sources) from None
    info = fbcache_machine_info(config)
    identity = workload_identity(config, info["fingerprint"])
    trace = read_known(settings, identity)
    generations = Generations(config, write)
    new: list[Probe] = []

    def generate(prompt: int, threshold: float) -> Probe:
        probe = generations.probe(prompt, threshold)
        new.append(probe)
        return probe

    try:
        found = search(generations.prompts, settings.floors, settings.limit, trace.probes, generate)
    finally:
        if new:
            settings.out_dir.mkdir(parents=True, exist_ok=True)
            write_file(settings.trace, Trace(identity, trace.probes + new).to_json(), "--trace")
    timed: dict[float, Timed] = {}
    uncached: dict[int | None, Any] = {}
    best = found.recommended
    if settings.untimed is None and best is not None:
        steps = {step.threshold(settings.limit): step for step in (found.slower, best, found.faster) if step is not None}
        timed, uncached = prove(generations, steps)
    answer = Answer(settings, found, timed, generations.made, info)
    answer.unmet = judge(settings, found, timed)
    if best is not None:
        threshold = best.threshold(settings.limit)
        answer.records = records(settings, best, threshold, timed.get(threshold), uncached)
    return answer


def bounds_profile(answer: Answer) -> str:
    """A bounds profile for the recommended threshold, as ``fbcache calibrate`` writes one from a sweep."""
    settings, config = answer.settings, answer.settings.config
    best = answer.search.recommended
    assert best is not None and settings.bounds_out is not None  # only written for a recommendation
    accelerator = answer.info["accelerator"]["name"]
    return calibrate(answer.records, settings.speedup_margin, settings.margins, name=settings.bounds_out.stem,
                     match=match_facts(answer.info), enforce_speedup=config.device.startswith("cuda"),
                     measured_on=f"{accelerator}, {config.model}, {config.quant}, {config.cache_backend}, "
                                 f"{config.steps} steps, {config.resolution}, by fbcache tune: threshold "
                                 f"{best.threshold(settings.limit):g}, in its hit pattern's interval {_interval(best)}")


def plot(answer: Answer, path: Path) -> str:
    """frontier.png, or one line saying why there is none."""
    from fbcache.errors import MissingDependencyError
    from fbcache.render.plots import FrontierPoint, frontier_plot

    found = answer.search
    metric = found.floors[0].metric
    points = []
    for step in found.steps:
        timed = answer.speedup(step)
        ci = timed.interval if timed is not None else None
        points.append(FrontierPoint(quality=step.worst(metric), step_ratio=step.step_ratio if step.computed else None,
                                    speedup=ci.median if ci else None, low=ci.low if ci else None,
                                    high=ci.high if ci else None, label=answer.role(step), holds=step.holds(found.floors)))
    config = answer.settings.config
    title = (f"fbcache tune: {config.model}, {config.cache_backend}, {config.steps} steps, {config.resolution}, "
             f"{len(config.cases)} prompt(s)")
    try:
        frontier_plot(points, metric, found.floors[0].bound, title, path)
    except MissingDependencyError as exc:
        return f"no {PLOT_FILE}: {exc}"
    return str(path)


def run(args: argparse.Namespace) -> int:
    settings_ = settings(args)
    answer = tune(settings_)
    lines = summary(answer)
    table = frontier_table(answer)
    print("\n".join(lines))
    print()
    print(table)
    out = settings_.out_dir
    out.mkdir(parents=True, exist_ok=True)
    write_file(out / TABLE_FILE, "\n".join(lines) + "\n\n" + table + "\n", "--out-dir")
    written = [str(out / TABLE_FILE)]
    plotted = plot(answer, out / PLOT_FILE)
    written += [plotted] if plotted.endswith(PLOT_FILE) else []
    if settings_.json is not None:
        import json

        write_file(settings_.json, json.dumps(to_json(answer), indent=1) + "\n", "--json")
        written.append(str(settings_.json))
    if settings_.bounds_out is not None and answer.unmet is None:  # a profile only for what meets every requirement
        write_file(settings_.bounds_out, bounds_profile(answer), "--bounds-out")
        written.append(str(settings_.bounds_out))
    if settings_.bounds_out is not None and answer.unmet is not None:
        print(f"--bounds-out {settings_.bounds_out}: not written: the recommendation does not meet the requirements")
    print(f"\nwrote {', '.join(written)}; the search trace is {settings_.trace}")
    if not plotted.endswith(PLOT_FILE):
        print(plotted)
    return EXIT_CLEAN if answer.unmet is None else EXIT_UNMET
