"""Bounds profiles: per-threshold floors for speedup and every registered image metric, in TOML.

A profile looks like::

    [profile]
    name = "tiny"
    description = "..."
    enforce_speedup = false      # true: a speedup below its floor fails; false: it is only reported
    [match]                      # what ``--fbcache-bounds auto`` matches against this run
    model = "tiny"
    quantization = "none"
    cache_backend = "diffusers"
    accelerator = "cpu"          # case-insensitive substring of the accelerator name
    steps = "28"                 # floors hold for one workload; other keys: resolution
    prompts = "prompt f0979f5e"  # the prompt (hash) or "prompt set <digest>" the floors were calibrated on;
                                 # absent: the default prompt, on which every older profile was calibrated
    [thresholds."0.1"]
    min_speedup = 1.3
    min_<metric> = 0.93          # every image metric of fbcache.metrics has its own key (max_<metric>
                                 # where lower is better); or "calibrate on the first run": not checked yet
    min_<metric>_worst = 0.85    # with a prompt set: the bound of the worst prompt
    max_peak_memory_gib = 28.5   # each benchmark's peak GPU memory of its timed rounds (not checked on a CPU)
    [thresholds."0.09/0.12"]     # a MULTI/SINGLE threshold pair (a cache that decides twice per step) has its own

Profiles are checked as a schema: an unknown key (a typo would otherwise enforce nothing), a wrong
type, or a bound outside the values its quantity can take (each metric's ``value_range``, speedup > 0)
stops the run before any model is built, naming the file, the key path and the accepted range. The keys of a threshold table come from :func:`threshold_keys` (speedup and
each registered image metric), so a new metric's floor is accepted, and its typo refused, unchanged.

Timing on a shared CPU is noise; hits and image metrics are deterministic there. So a CPU profile sets
``enforce_speedup = false``: its speedup floors are printed, never fatal, and never flake.

With a prompt set (``--fbcache-prompts``) the plain keys hold for the set as a whole: ``min_<metric>`` for
the mean over the prompts, ``min_speedup`` for the set's speedup (uncached time of the whole set over
its cached time); ``<key>_worst`` (``min_<metric>_worst``, ``max_<metric>_worst``) for every single prompt,
i.e. the worst one. A prompt is checked as soon as it is measured, the mean once the session has
measured every prompt of the threshold (a shard does not see the whole set, so it checks only the
``_worst`` floors; the merged run's mean floors are not checked yet). In a run of one prompt the mean and the worst are that prompt.
"""

from __future__ import annotations

import math
import stat
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from fbcache.config import Threshold, parse_threshold, same_threshold
from fbcache.errors import ConfigError
from fbcache.history import GIB, BenchRecord, ThresholdSummary, summarize
from fbcache.history.fingerprint import MATCH_KEYS
from fbcache.metrics import all_metrics, get, measured, selected

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

UNCALIBRATED = "calibrate on the first run"


WORST = "_worst"


@dataclass(frozen=True)
class ThresholdBound:
    min_speedup: float | None = None
    #: image-metric floors by metric name (key ``min_<name>`` in TOML; ``max_`` where lower is better),
    #: on the mean over a prompt set's prompts
    image: Mapping[str, float] = field(default_factory=dict)
    #: image-metric floors on the worst prompt (key ``min_<name>_worst``)
    worst: Mapping[str, float] = field(default_factory=dict)
    #: ceiling on each benchmark's own peak GPU memory, GiB (every prompt of a set alike)
    max_peak_memory_gib: float | None = None


def threshold_keys() -> tuple[str, ...]:
    """The keys a ``[thresholds."T"]`` table may hold: speedup and each registered metric's bound keys."""
    return ("min_speedup", PEAK_KEY, *(m.bound_key for m in all_metrics()),
            *(m.bound_key + WORST for m in all_metrics()))


PEAK_KEY = "max_peak_memory_gib"
#: calibrate's ceiling over the measured peak: allocator peaks barely move, so this is room for a library update
PEAK_MARGIN = 1.10


#: the workload of a profile that does not name one: every profile written before profiles named their
#: prompts was calibrated on the single default prompt ("A cute panda holding a sign that says hello
#: world"), so that is what it holds for; applying it to any other prompt or set would be a false alarm
UNSTATED_PROMPTS = "prompt f0979f5e"
#: [match] keys a profile has even when it does not write them
IMPLIED_MATCH = {"compile": "none", "prompts": UNSTATED_PROMPTS}


@dataclass(frozen=True)
class BoundsProfile:
    name: str
    source: str
    thresholds: Mapping[Threshold, ThresholdBound]
    match: Mapping[str, str] = field(default_factory=dict)
    enforce_speedup: bool = True
    description: str = ""

    def matches(self, facts: Mapping[str, str], ignore: tuple[str, ...] = ()) -> bool:
        # a profile that names no compile mode was measured eager: it never judges a compiled run
        match = {**IMPLIED_MATCH, **self.match}
        for key, wanted in match.items():
            if key in ignore:
                continue
            have = str(facts.get(key, IMPLIED_MATCH.get(key, "")))
            if key == "accelerator":
                if str(wanted).lower() not in have.lower():
                    return False
            elif have != str(wanted):
                return False
        return True

    @property
    def prompts(self) -> str:
        """The prompt or prompt set the profile was calibrated on (its floors hold for that workload only)."""
        return self.match.get("prompts", UNSTATED_PROMPTS)

    def bound_for(self, threshold: Threshold) -> ThresholdBound | None:
        for key, bound in self.thresholds.items():
            if same_threshold(key, threshold):
                return bound
        return None


@dataclass(frozen=True)
class Violation:
    threshold: Threshold
    metric: str
    measured: float
    bound: float
    enforced: bool
    profile: str
    key: str
    #: which prompts the value stands for: "" (the run's one prompt), "mean of 8 prompts", "prompt p3"
    scope: str = ""
    #: a bound on a prompt set as a whole: the prompt that broke it, the worst one (its row is marked)
    worst_prompt: int | None = None

    def message(self) -> str:
        side = "below" if self.key.startswith("min_") else "above"
        verdict = side if self.enforced else f"{side} (reported, not enforced on this profile)"
        scope = f" ({self.scope})" if self.scope else ""
        return (f"threshold {self.threshold:g}{scope}: {self.metric} {self.measured:.4f} is {verdict} "
                f"{self.key} {self.bound:g} (profile {self.profile})")


#: keys of each table; per-threshold keys are :func:`threshold_keys`, so a new metric's floor is accepted
#: (and a typo refused) without touching the parser
PROFILE_KEYS = ("name", "description", "enforce_speedup")
TOP_KEYS = ("profile", "match", "thresholds")


def _error(source: str, path: str, value: Any, accepted: str, why: str) -> ConfigError:
    """One line naming the file, the key path, what is wrong and what is accepted."""
    return ConfigError("--fbcache-bounds", value, accepted, f"{source}: {path}: {why}")


def _table(data: Any, source: str, path: str, allowed: Iterable[str]) -> Mapping[str, Any]:
    """``data`` if it is a table whose keys are all in ``allowed``."""
    allowed = tuple(allowed)
    accepted = f"keys {', '.join(allowed)} in [{path}]" if path else "tables [" + "], [".join(allowed) + "]"
    if not isinstance(data, Mapping):
        raise _error(source, path, data, accepted, "not a table")
    for key in data:
        if key not in allowed:
            raise _error(source, f"{path}.{key}" if path else key, key, accepted, "unknown key")
    return data


def _bound_range(key: str) -> tuple[float, float, bool, str]:
    """(low, high, low inclusive, what) of a threshold key: speedup > 0, an image metric within its values."""
    if key == "min_speedup":
        return 0.0, math.inf, False, "speedup over uncached"
    if key == PEAK_KEY:
        return 0.0, math.inf, False, "peak GPU memory in GiB"
    metric = next(m for m in all_metrics() if key in (m.bound_key, m.bound_key + WORST))
    low, high = metric.value_range
    return low, high, True, metric.title


def _floor(value: Any, source: str, path: str) -> float | None:
    """A bound's value, checked against the range its quantity can take: a floor no run can reach (above
    the metric's largest value) would fail every run, and one no run can miss (speedup 0) would check nothing."""
    low, high, inclusive, what = _bound_range(path.rsplit(".", 1)[-1])
    span = (f"a number in [{low:g}, {high:g}]" if math.isfinite(high)
            else f"a finite number {'>=' if inclusive else '>'} {low:g}")
    accepted = f"{span} ({what}) or {UNCALIBRATED!r}"
    if isinstance(value, str) and value.strip().lower() == UNCALIBRATED:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _error(source, path, value, accepted, "not a number")
    if not math.isfinite(value):
        raise _error(source, path, value, accepted, "not finite")
    if value < low or (value == low and not inclusive):
        raise _error(source, path, value, accepted, "negative" if value < 0 else f"not above {low:g}")
    if value > high:
        raise _error(source, path, value, accepted, f"above {high:g}, which {what} never exceeds")
    return float(value)


def _threshold_key(key: str, source: str) -> Threshold:
    accepted = 'threshold keys like "0.1", or "0.09/0.12" for a MULTI/SINGLE pair: finite numbers >= 0, quoted'
    try:
        return parse_threshold("", key.strip(), accepted)
    except ConfigError as exc:
        why = "not finite and >= 0" if exc.why in ("negative", "not finite") else exc.why
        raise _error(source, f"thresholds.{key!r}", key, accepted, why) from None


def _thresholds(data: Any, source: str) -> dict[Threshold, ThresholdBound]:
    keys = threshold_keys()
    if not isinstance(data, Mapping) or not data:
        raise _error(source, "thresholds", data, f'[thresholds."T"] tables with keys {", ".join(keys)}',
                     "missing or empty: the profile would check nothing" if not data else "not a table")
    thresholds: dict[Threshold, ThresholdBound] = {}
    for key, entry in data.items():
        threshold = _threshold_key(key, source)
        where = f'thresholds."{key}"'
        entry = _table(entry, source, where, keys)
        if not entry:
            raise _error(source, where, {}, ", ".join(keys), "empty table: no floor to check")
        if any(same_threshold(threshold, t) for t in thresholds):
            raise _error(source, where, key, "one table per threshold", "the same threshold twice")
        floors = {k: _floor(v, source, f"{where}.{k}") for k, v in entry.items()}
        thresholds[threshold] = ThresholdBound(
            min_speedup=floors.get("min_speedup"),
            image={m.name: value for m in all_metrics() if (value := floors.get(m.bound_key)) is not None},
            worst={m.name: value for m in all_metrics() if (value := floors.get(m.bound_key + WORST)) is not None},
            max_peak_memory_gib=floors.get(PEAK_KEY),
        )
    return thresholds


def parse_profile(data: Mapping[str, Any], source: str) -> BoundsProfile:
    """A checked profile; ConfigError (one line: file, key path, what is accepted) on any deviation."""
    data = _table(data, source, "", TOP_KEYS)
    meta = _table(data.get("profile", {}), source, "profile", PROFILE_KEYS)
    match = _table(data.get("match", {}), source, "match", MATCH_KEYS)
    for key in ("name", "description"):
        if key in meta and (not isinstance(meta[key], str) or (key == "name" and not meta[key].strip())):
            raise _error(source, f"profile.{key}", meta[key], "a non-empty string", "wrong type")
    enforce = meta.get("enforce_speedup", True)
    if not isinstance(enforce, bool):
        raise _error(source, "profile.enforce_speedup", enforce, "true or false (unquoted)", "not a boolean")
    for key, value in match.items():
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise _error(source, f"match.{key}", value, 'a string such as "28" or "64x64"', "wrong type")
    return BoundsProfile(
        name=str(meta.get("name", Path(source).stem)),
        source=source,
        thresholds=_thresholds(data.get("thresholds"), source),
        match={k: str(v) for k, v in match.items()},
        enforce_speedup=enforce,
        description=str(meta.get("description", "")),
    )


def load_profile(path: Path) -> BoundsProfile:
    """A profile file; UTF-8 with or without a byte-order mark (editors on Windows write one)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("--fbcache-bounds", str(path), "a readable TOML bounds profile",
                          str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    return parse_profile(data, str(path))


def _not_a_file(path: Path) -> str | None:
    """What ``path`` is when it exists but is no regular file (reading /dev/zero would never end)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    kind = {stat.S_ISDIR: "a directory", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
            stat.S_ISFIFO: "a named pipe", stat.S_ISSOCK: "a socket"}
    return next((name for test, name in kind.items() if test(mode)), "not a regular file")


def resolve_profile(spec: str, search_dir: Path, facts: Mapping[str, str]) -> BoundsProfile | None:
    """``auto``: the one shipped profile whose [match] fits (several: refused); ``none``; a name; or a path."""
    value = spec.strip()
    if value.lower() == "none":
        return None
    shipped = sorted(search_dir.glob("*.toml")) if search_dir.is_dir() else []
    if value.lower() == "auto":
        matching = [p for p in (load_profile(path) for path in shipped) if p.match and p.matches(facts)]
        if len(matching) > 1:
            names = ", ".join(f"{p.name} ({Path(p.source).name})" for p in matching)
            raise ConfigError("--fbcache-bounds", spec, "one profile: --fbcache-bounds NAME, a TOML path, or none",
                              f"{len(matching)} profiles in {search_dir} match this run: {names}")
        return matching[0] if matching else None
    path = Path(value).expanduser()
    if path.is_file():
        return load_profile(path)
    named = search_dir / f"{value}.toml"
    if named.is_file():
        return load_profile(named)
    names = ", ".join(p.stem for p in shipped) or "(none shipped)"
    accepted = f"auto, none, a TOML path, or one of: {names}"
    what = _not_a_file(path) or _not_a_file(named)
    if what is not None:
        raise ConfigError("--fbcache-bounds", spec, accepted, f"{what}, not a profile file")
    raise ConfigError("--fbcache-bounds", spec, accepted, "no such profile")


def other_workload(search_dir: Path, facts: Mapping[str, str]) -> str | None:
    """Why ``auto`` found no profile when one fits this run in all but its prompts: the profiles
    calibrated on another prompt or set, in one line (None when there is no such profile)."""
    shipped = sorted(search_dir.glob("*.toml")) if search_dir.is_dir() else []
    near = [p for p in (load_profile(path) for path in shipped) if p.match and p.matches(facts, ignore=("prompts",))]
    if not near:
        return None
    calibrated = "; ".join(f"{p.name} ({Path(p.source).name}) was calibrated on {p.prompts}" for p in near)
    return (f"no profile matches this workload ({facts.get('prompts', UNSTATED_PROMPTS)}): {calibrated}; "
            "calibrate one on it with --fbcache-calibrate")


def check_measured(profile: BoundsProfile, chosen: Iterable[str]) -> None:
    """A profile that bounds an image metric the run would not compute (``chosen``: --fbcache-metrics, empty for
    the defaults) is refused: its bound would go unchecked."""
    computed = tuple(m.name for m in selected(chosen))
    for bound in profile.thresholds.values():
        for name in [*bound.image, *bound.worst]:
            if name not in computed:
                metric = get(name)
                raise ConfigError("--fbcache-metrics", ",".join(computed),
                                  f"{','.join((*computed, name))}, or another profile (--fbcache-bounds)",
                                  f"profile {profile.name} bounds {name} ({metric.bound_key}), which this run "
                                  "would not compute")


def _image_violations(profile: BoundsProfile, threshold: Threshold, floors: Mapping[str, float],
                      values: Mapping[str, float | None], suffix: str, scope: str) -> list[Violation]:
    found = []
    for metric in all_metrics():
        floor, value = floors.get(metric.name), values.get(metric.name)
        if floor is not None and value is not None and metric.breaks(value, floor):
            found.append(Violation(threshold, metric.name, value, floor, True, profile.name,
                                   metric.bound_key + suffix, scope))
    return found


def _speedup_violation(profile: BoundsProfile, threshold: Threshold, bound: ThresholdBound, speedup: float | None,
                       scope: str) -> list[Violation]:
    if bound.min_speedup is None or speedup is None or speedup >= bound.min_speedup:
        return []
    return [Violation(threshold, "speedup", speedup, bound.min_speedup, profile.enforce_speedup, profile.name,
                      "min_speedup", scope)]


def _peak_violation(profile: BoundsProfile, record: BenchRecord, bound: ThresholdBound, scope: str) -> list[Violation]:
    """A benchmark's own peak GPU memory over its ceiling; a CPU run has no peak and is not checked."""
    if bound.max_peak_memory_gib is None or record.peak_memory_bytes is None or record.threshold is None:
        return []
    peak = record.peak_memory_bytes / GIB
    if peak <= bound.max_peak_memory_gib:
        return []
    return [Violation(record.threshold, "peak memory GiB", peak, bound.max_peak_memory_gib, True, profile.name,
                      PEAK_KEY, scope)]


def check(profile: BoundsProfile, record: BenchRecord) -> list[Violation]:
    """Every bound one benchmark breaks; empty when it keeps them all (or has none).

    A prompt of a set is held to the ``_worst`` floors only (the mean is :func:`check_set`'s); the one
    prompt of a run without a set is its own mean and worst, so every floor applies to it.
    """
    if record.threshold is None:
        return []
    bound = profile.bound_for(record.threshold)
    if bound is None:
        return []
    if record.prompt_index is not None:
        scope = f"prompt p{record.prompt_index}"
        return (_image_violations(profile, record.threshold, bound.worst, record.metrics, WORST, scope)
                + _peak_violation(profile, record, bound, scope))
    return (_image_violations(profile, record.threshold, bound.image, record.metrics, "", "")
            + _image_violations(profile, record.threshold, bound.worst, record.metrics, WORST, "")
            + _speedup_violation(profile, record.threshold, bound, record.speedup, "")
            + _peak_violation(profile, record, bound, ""))


def _worst_prompt(records: Iterable[BenchRecord], metric: str) -> int | None:
    """The prompt with the worst value of ``metric`` ("speedup" or an image metric's name)."""
    if metric == "speedup":
        values = {r.prompt_index: r.speedup for r in records if r.speedup is not None}
        better_high = True
    else:
        [image] = [m for m in all_metrics() if m.name == metric]
        values = {r.prompt_index: v for r in records if (v := r.metrics.get(metric)) is not None}
        better_high = image.higher_is_better
    if not values:
        return None
    pick = min if better_high else max
    return pick(values, key=lambda index: values[index])


def check_set(profile: BoundsProfile, summary: ThresholdSummary) -> list[Violation]:
    """The floors on a prompt set as a whole: image metrics on the mean, speedup on the set's speedup.
    Each violation names the worst prompt: the one that pulled the set below its bound."""
    if summary.threshold is None:
        return []
    bound = profile.bound_for(summary.threshold)
    if bound is None:
        return []
    scope = f"mean of {summary.prompts} prompts"
    means = {name: value.mean for name, value in summary.metrics.items()}
    found = (_image_violations(profile, summary.threshold, bound.image, means, "", scope)
             + _speedup_violation(profile, summary.threshold, bound, summary.speedup, f"{summary.prompts} prompts"))
    named = []
    for violation in found:
        worst = _worst_prompt(summary.records, violation.metric)
        scope = violation.scope + ("" if worst is None else f", worst p{worst}")
        named.append(replace(violation, scope=scope, worst_prompt=worst))
    return named


def calibrate(
    records: Iterable[BenchRecord],
    speedup_margin: float,
    metric_margins: Mapping[str, float],
    name: str,
    match: Mapping[str, str],
    enforce_speedup: bool,
    measured_on: str,
) -> str:
    """A TOML profile: each bound is the measured value with the stated margin (worse by that much, or that
    fraction where the metric's margin is relative); metrics the run did not compute get none.

    ``metric_margins`` replaces a metric's own ``calibrate_margin`` (the user's, by metric name).
    """
    records = list(records)
    computed = measured(r.metrics for r in records)
    margins = {m.name: metric_margins.get(m.name, m.calibrate_margin) for m in computed}
    lines = [
        f"# Calibrated by fbcache from a measured run on {measured_on}, {date.today().isoformat()}.",
        f"# min_speedup = measured speedup x (1 - {speedup_margin:g}); image metrics: measured value, worse by "
        + ", ".join(f"{m.name} {m.margin_text(margins[m.name])}" for m in computed) + ".",
        "[profile]",
        f"name = {_toml_str(name)}",
        f"description = {_toml_str('calibrated from ' + measured_on)}",
        f"enforce_speedup = {'true' if enforce_speedup else 'false'}",
        "",
        "[match]",
    ]
    lines += [f"{key} = {_toml_str(value)}" + (f"  # {_workload_note(records)}" if key == "prompts" else "")
              for key, value in match.items()]
    for summary in summarize(records):
        if summary.threshold is None:
            continue
        lines += ["", f"[thresholds.\"{summary.threshold:g}\"]"]
        if summary.speedup is not None:
            lines.append(f"min_speedup = {round(summary.speedup * (1 - speedup_margin), 3)}  "
                         f"# measured {summary.speedup:.3f}")
        # a set: the plain key floors the mean, <key>_worst the worst prompt; one prompt: the plain key only
        sides = [("", "mean" if summary.prompts > 1 else "")] + ([(WORST, "worst")] if summary.prompts > 1 else [])
        for metric in computed:
            for suffix, which in sides:
                aggregate = summary.metrics[metric.name]
                value = aggregate.worst if suffix else aggregate.mean
                if value is None or math.isinf(value) or (metric.relative_margin and value == 0):
                    continue  # identical to uncached: no floor to leave room under (nor room as a fraction of 0)
                bound = metric.bound_from(value, margins[metric.name])
                note = f"measured {which + ' ' if which else ''}{metric.format(value)}"
                if metric.relative_margin:
                    note += f" {metric.margin_text(margins[metric.name])}"
                lines.append(f"{metric.bound_key}{suffix} = {round(bound, metric.decimals)}  # {note}")
        peaks = [r.peak_memory_bytes for r in summary.records if r.peak_memory_bytes is not None]
        if peaks:  # a GPU run; a CPU run has no allocator peak to bound
            peak = max(peaks) / GIB
            lines.append(f"{PEAK_KEY} = {round(peak * PEAK_MARGIN, 2)}  # measured {peak:.2f} GiB x "
                         f"{PEAK_MARGIN:g}: allocator peaks barely move between runs; the 10% is room for a library update")
    return "\n".join(lines) + "\n"


def _workload_note(records: list[BenchRecord]) -> str:
    """What ``[match] prompts`` means, written beside it: auto applies the profile to that workload only."""
    prompts = {r.prompt_index for r in records if r.prompt_index is not None}
    return f"calibrated on this set of {len(prompts)} prompts only" if prompts else "calibrated on this prompt only"


def _toml_str(value: str) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
