"""``fbcache tune``'s search: the fastest threshold whose hit pattern, and every one below it that the
search measured, keeps every quality floor.

**A step function, read off one generation.** A cache decides each denoising step by comparing one
number, the step's relative first-block residual difference, with the threshold, and that number
depends only on the decisions taken before it. So two thresholds that take the same decision at every
step make the same generation, and one generation's decision trace says which thresholds do: every one
strictly between the largest difference it reused (a hit) and the smallest it computed. That open
interval is the probe's hit pattern's (:attr:`Probe.interval`), whichever way the backend breaks a tie
(``diff > t`` or ``diff < t``). A trace that cannot say (a step decided without a recorded
difference once something was cached: a cache that decides without comparing) gives the probe's own
threshold alone, and the search then halves the gap down to :data:`HALVINGS` halvings of the range.

**Bisection on untimed generations.** The lowest threshold (0: nothing reused) and the upper limit
bracket the answer; each probe at the middle of the gap between the highest passing pattern and the
lowest failing one narrows it, until the two are neighbours: the passing pattern's interval ends where
the failing one's begins, so no threshold lies between them. Quality is each pattern's worst prompt;
a prompt whose known intervals already hold a threshold is not generated again, and a point the trace
already holds inside the gap is taken before a new generation is made. With several floors the search
goes on until every floor has broken (each floor's own boundary), so a rerun with any of them needs no
new generation. Bisection assumes quality falls as the threshold rises; the recommendation lies below
every pattern measured to break a floor, and every measured pattern below it keeps them.

Nothing here generates, times or prints: the verb (``fbcache/cli/tune.py``) hands in ``generate``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fbcache.errors import ConfigError, DataError
from fbcache.metrics import ImageMetric, all_metrics, amounts, get, names

#: ``Probe.hits`` as text: one character per step, as the results table's hit map writes them
COMPUTED, HIT = "#", "."
#: a gap the trace cannot close is halved until it is this fraction of the range (2**-10 of it)
HALVINGS = 10
#: the threshold step of the grid the search is measured against (docs/guide.md)
GRID_STEP = 0.01
TRACE_VERSION = 1


# ------------------------------------------------------------------------------------ floors


@dataclass(frozen=True)
class Floor:
    """The worst prompt's value of one image metric must stay on the right side of ``bound``."""

    metric: ImageMetric
    bound: float

    @property
    def key(self) -> str:
        """``min_NAME`` (``max_NAME`` where lower is better), as bounds profiles name it."""
        return self.metric.bound_key

    def breaks(self, value: float | None) -> bool:
        """A value the floor does not hold for; an unmeasured one (None) cannot show that it holds."""
        return value is None or self.metric.breaks(value, self.bound)

    def describe(self) -> str:
        return f"{self.metric.title} {'>=' if self.metric.higher_is_better else '<='} {self.bound:g}"


def floor_option(metric: ImageMetric) -> str:
    """A metric's own spelling of its floor: ``--min-NAME`` or ``--max-NAME`` (its direction decides)."""
    return f"--{'min' if metric.higher_is_better else 'max'}-{metric.name}"


def floor_value(option: str, metric: ImageMetric, raw: str) -> float:
    """A floor from user input: a finite number within the values the metric can take."""
    low, high = metric.value_range
    accepted = f"a number in [{low:g}, {high:g}]" if math.isfinite(high) else f"a finite number >= {low:g}"
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(option, raw, accepted, "not a number") from None
    if not math.isfinite(value):
        raise ConfigError(option, raw, accepted, "not finite")
    if not low <= value <= high:
        raise ConfigError(option, raw, accepted, f"outside the values {metric.title} can take")
    return value


def parse_floors(entries: Iterable[str], named: Mapping[str, str | None]) -> tuple[Floor, ...]:
    """``--floor NAME=X`` entries (each possibly comma-separated) and each metric's own spelling
    (``named``: metric name -> the raw value of its ``--min-NAME``/``--max-NAME``, or None). One floor
    per metric; given both ways, the two must agree. In the registry's order."""
    own = {name: (floor_option(get(name)), raw) for name, raw in named.items()}
    found = amounts("--floor", entries, own, parse=lambda metric, option, raw: floor_value(option, metric, raw))
    return tuple(Floor(metric, found[metric.name]) for metric in all_metrics() if metric.name in found)


# ------------------------------------------------------------------------------------ probes


@dataclass(frozen=True)
class Probe:
    """One untimed generation of one prompt with the cache at one threshold: its decisions and its quality."""

    #: the prompt's index in the set (0 for a run of one prompt)
    prompt: int
    threshold: float
    #: per step: whether the cache reused the step (a hit)
    hits: tuple[bool, ...]
    #: per step: the relative residual difference the cache compared (None: nothing compared)
    diffs: tuple[float | None, ...]
    #: every registered image metric of its image against the prompt's uncached image
    metrics: Mapping[str, float | None] = field(default_factory=dict, hash=False, compare=False)

    @property
    def pattern(self) -> str:
        """The hit map: '#' computed, '.' reused, one character per step."""
        return "".join(HIT if hit else COMPUTED for hit in self.hits)

    @property
    def interval(self) -> tuple[float, float]:
        """The open interval of thresholds that give this hit pattern (see the module docstring);
        ``(threshold, threshold)`` when the trace cannot tell: a step decided without a recorded difference
        after something was cached (cache-dit compares nothing at a threshold of 0 or from 1 on), or a
        difference on the wrong side of the threshold for its decision."""
        point = (self.threshold, self.threshold)
        reused: list[float] = []
        computed: list[float] = []
        cached = False
        for hit, diff in zip(self.hits, self.diffs):
            if diff is None or math.isnan(diff):
                if hit or cached:
                    return point  # decided without comparing, with something cached: not the threshold's doing
            else:
                (reused if hit else computed).append(diff)
            cached = cached or not hit  # nothing cached before the first computed step: it compares nothing
        low, high = max(reused, default=0.0), min(computed, default=math.inf)
        if not low <= self.threshold <= high or not low < high:
            return point
        return low, high

    def covers(self, threshold: float) -> bool:
        """Whether a generation at ``threshold`` is this one."""
        low, high = self.interval
        return threshold == self.threshold or low < threshold < high

    @property
    def computed(self) -> int:
        return sum(not hit for hit in self.hits)

    def to_json(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "threshold": self.threshold, "hits": self.pattern,
                "diffs": list(self.diffs),
                "metrics": {m.name: m.to_json(self.metrics.get(m.name)) for m in all_metrics() if m.name in self.metrics}}

    @classmethod
    def from_json(cls, data: Any) -> Probe:
        """A probe from a trace file; ValueError/TypeError/KeyError for anything malformed."""
        hits = str(data["hits"])
        diffs = data["diffs"]
        if set(hits) - {HIT, COMPUTED} or not isinstance(diffs, list) or len(diffs) != len(hits):
            raise ValueError("hits must be '#'/'.' per step and diffs one number (or null) per step")
        metrics = data.get("metrics", {})
        if not isinstance(metrics, dict):
            raise TypeError("metrics must be a table")
        threshold = float(data["threshold"])
        if not math.isfinite(threshold) or threshold < 0:
            raise ValueError(f"threshold {threshold!r} is not a finite number >= 0")
        return cls(prompt=int(data["prompt"]), threshold=threshold, hits=tuple(c == HIT for c in hits),
                   diffs=tuple(None if d is None else float(d) for d in diffs),
                   metrics={name: get(name).from_json(value) for name, value in metrics.items() if name in names()})


@dataclass(frozen=True)
class Step:
    """One hit pattern of the whole prompt set: each prompt's probe at one threshold."""

    probes: tuple[Probe, ...]
    #: the thresholds known to give every prompt its probe's pattern (:meth:`Book.span`, intersected)
    interval: tuple[float, float]

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(p.pattern for p in self.probes)

    @property
    def exact(self) -> bool:
        """Whether every prompt's trace gives its pattern a whole interval (not a probed threshold alone)."""
        return all(p.interval[0] < p.interval[1] for p in self.probes)

    def worst(self, metric: ImageMetric) -> float | None:
        """The worst prompt's value (None when a prompt lacks it)."""
        values = [p.metrics.get(metric.name) for p in self.probes]
        if any(v is None for v in values):
            return None
        known = [v for v in values if v is not None]
        return min(known) if metric.higher_is_better else max(known)

    def broken(self, floors: Sequence[Floor]) -> list[Floor]:
        return [f for f in floors if f.breaks(self.worst(f.metric))]

    def holds(self, floors: Sequence[Floor]) -> bool:
        return not self.broken(floors)

    @property
    def steps(self) -> int:
        return sum(len(p.hits) for p in self.probes)

    @property
    def computed(self) -> int:
        return sum(p.computed for p in self.probes)

    @property
    def hits(self) -> int:
        return self.steps - self.computed

    @property
    def step_ratio(self) -> float:
        """Steps over computed steps: the speedup if reused steps cost nothing (an upper bound, untimed)."""
        return self.steps / self.computed if self.computed else math.inf

    def threshold(self, limit: float) -> float:
        """The threshold to ship for this pattern: the middle of its interval (the part below ``limit``),
        rounded to the fewest decimals that keep it in the interval's middle half, so neither numerical
        noise nor a rounded copy lands on a neighbour. A pattern known at one point only: that point."""
        low, high = self.interval
        if not low < high or low >= limit:
            return max(p.threshold for p in self.probes)
        high = min(high, limit)
        return shortest_inside(low + (high - low) / 4, high - (high - low) / 4)


def shortest_inside(low: float, high: float) -> float:
    """The number with the fewest decimals in [low, high], nearest its middle."""
    middle = (low + high) / 2
    for decimals in range(0, 18):
        value = round(middle, decimals)
        if low <= value <= high:
            return value
    return middle


# ------------------------------------------------------------------------------------ the trace


@dataclass
class Trace:
    """Every probe of one workload so far: what a rerun reads instead of generating again."""

    #: what makes generations the same (:func:`fbcache.cli.tune.workload_identity`): model, backend,
    #: its settings, steps, resolution, prompts and seeds, accelerator, threads, image metrics
    workload: dict[str, Any]
    probes: list[Probe] = field(default_factory=list)

    def to_json(self) -> str:
        """JSON with one probe per line: a rerun's new probes show as new lines in a diff."""
        head = json.dumps({"fbcache_tune_trace": TRACE_VERSION, "workload": self.workload}, sort_keys=True)
        probes = ",\n  ".join(json.dumps(p.to_json(), sort_keys=True) for p in self.probes)
        return f'{head[:-1]},\n "probes": [\n  {probes}\n ]}}\n'


def read_trace(text: str, source: str) -> Trace:
    """A trace file's probes; DataError naming the file for anything but a trace this version wrote."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("fbcache_tune_trace") != TRACE_VERSION:
            raise ValueError(f"not an fbcache tune trace of version {TRACE_VERSION}")
        workload = data["workload"]
        if not isinstance(workload, dict) or not isinstance(data["probes"], list):
            raise TypeError("workload must be a table and probes a list")
        return Trace(workload, [Probe.from_json(p) for p in data["probes"]])
    except (ValueError, TypeError, KeyError) as exc:
        raise DataError(f"--trace {source}: unreadable trace ({type(exc).__name__}: {exc}); remove it or pass "
                        "--fresh") from None


def workload_differences(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``key: saved -> now`` for every setting that differs."""
    return [f"{key}: {saved.get(key)!r} -> {now.get(key)!r}" for key in sorted(set(saved) | set(now))
            if saved.get(key) != now.get(key)]


# ------------------------------------------------------------------------------------ the search

#: ``generate(prompt, threshold)``: one untimed generation of that prompt with the cache at that threshold
Generate = Callable[[int, float], Probe]


class Book:
    """The probes known so far, per prompt, and the steps made of them; generates what is missing."""

    def __init__(self, prompts: Sequence[int], known: Iterable[Probe], generate: Generate) -> None:
        self.prompts = list(prompts)
        self.probes: dict[int, list[Probe]] = {p: [] for p in self.prompts}
        for probe in known:
            if probe.prompt in self.probes:
                self.probes[probe.prompt].append(probe)
        self._given = {id(p) for probes in self.probes.values() for p in probes}
        self._generate = generate
        #: probes generated in this search, in order
        self.new: list[Probe] = []
        #: generations a probe of the given trace answered (a rerun)
        self.from_trace = 0
        #: generations a probe of this search answered: a prompt whose interval already held the threshold
        self.skipped = 0
        #: every step evaluated, by pattern
        self.steps: dict[tuple[str, ...], Step] = {}
        #: every threshold evaluated, in order
        self.asked: list[float] = []

    def span(self, probe: Probe) -> tuple[float, float]:
        """The thresholds known to give this probe's pattern: its interval, widened to every probe of the same
        prompt and pattern (between two thresholds with one pattern, bisection takes that pattern to hold)."""
        same = [p.interval for p in self.probes[probe.prompt] if p.hits == probe.hits]
        return min(low for low, _ in same), max(high for _, high in same)

    def known(self, prompt: int, threshold: float) -> Probe | None:
        for probe in self.probes[prompt]:
            low, high = self.span(probe)
            if probe.threshold == threshold or low < threshold < high:
                return probe
        return None

    def covered(self, threshold: float) -> bool:
        return all(self.known(p, threshold) is not None for p in self.prompts)

    def at(self, threshold: float) -> Step:
        """Every prompt's generation at ``threshold``: known, or generated now."""
        self.asked.append(threshold)
        probes = []
        for prompt in self.prompts:
            probe = self.known(prompt, threshold)
            if probe is None:
                probe = self._generate(prompt, threshold)
                self.probes[prompt].append(probe)
                self.new.append(probe)
            elif id(probe) in self._given:
                self.from_trace += 1
            else:
                self.skipped += 1
            probes.append(probe)
        spans = [self.span(p) for p in probes]
        step = Step(tuple(probes), (max(low for low, _ in spans), min(high for _, high in spans)))
        earlier = self.steps.get(step.key)
        if earlier is not None:  # the same pattern again: the first probes, the interval as known now
            step = Step(earlier.probes, step.interval)
        self.steps[step.key] = step
        return step

    def current(self, step: Step | None) -> Step | None:
        """The step of this pattern with its interval as known now (later probes may have widened it)."""
        return None if step is None else self.steps.get(step.key, step)

    def known_points(self) -> list[float]:
        """Thresholds at which every prompt's generation is known: each known probe's own, and the middle of
        its interval."""
        points = set()
        for probes in self.probes.values():
            for probe in probes:
                points.add(probe.threshold)
                low, high = self.span(probe)
                if low < high and math.isfinite(high):
                    points.add((low + high) / 2)
        return sorted(t for t in points if self.covered(t))


@dataclass(frozen=True)
class Boundary:
    """Where one criterion stops holding: the highest passing pattern and the failing pattern above it."""

    #: the highest measured pattern that holds, below every measured one that breaks (None: even the bottom breaks)
    holds: Step | None
    #: the lowest measured pattern that breaks, above ``holds`` (None: every pattern up to the limit holds)
    breaks: Step | None

    @property
    def resolved(self) -> bool:
        """Whether the two are neighbours: no threshold between them gives another pattern."""
        if self.holds is None or self.breaks is None:
            return True
        return self.holds.interval[1] >= self.breaks.interval[0]


def bisect(book: Book, low: Step, high: Step, passes: Callable[[Step], bool], limit: float) -> Boundary:
    """The boundary of ``passes`` between ``low`` and ``high`` (see the module docstring)."""
    if not passes(low):
        return Boundary(None, low)
    if passes(high):
        return Boundary(high, None)
    smallest = limit / 2**HALVINGS
    for _ in range(64):  # halvings of a double: past them the gap cannot shrink
        edge_low, edge_high = low.interval[1], high.interval[0]
        if edge_low >= edge_high or edge_high - edge_low <= smallest and not (low.exact and high.exact):
            return Boundary(book.current(low), book.current(high))
        middle = (edge_low + edge_high) / 2
        inside = [t for t in book.known_points() if edge_low < t < edge_high]
        step = book.at(min(inside, key=lambda t: abs(t - middle)) if inside else middle)
        if step.interval[1] <= edge_low or step.interval[0] >= edge_high:
            # no progress: the traces disagree with each other (a generation that is not deterministic)
            return Boundary(book.current(low), book.current(high))
        if passes(step):
            low = step
        else:
            high = step
    return Boundary(book.current(low), book.current(high))


@dataclass
class Search:
    floors: tuple[Floor, ...]
    limit: float
    #: every floor together: the recommendation and the next faster pattern
    boundary: Boundary
    #: each floor alone, by its key (``min_NAME``), when there are several
    per_floor: dict[str, Boundary]
    book: Book

    @property
    def steps(self) -> list[Step]:
        """Every pattern measured, by threshold."""
        return sorted(self.book.steps.values(), key=lambda s: (s.interval[0], s.interval[1]))

    @property
    def recommended(self) -> Step | None:
        """The pattern to ship: it and every measured one below it keep every floor, and it reuses a step."""
        step = self.book.current(self.boundary.holds)
        return step if step is not None and step.hits > 0 else None

    @property
    def slower(self) -> Step | None:
        """The measured pattern just below the recommendation that still reuses a step (its slower neighbour)."""
        best = self.recommended
        if best is None:
            return None
        below = [s for s in self.steps if s.interval[1] <= best.interval[0] and s.hits > 0]
        return below[-1] if below else None

    @property
    def faster(self) -> Step | None:
        """The next pattern above the recommendation: it breaks a floor."""
        return self.book.current(self.boundary.breaks)

    def generations(self) -> int:
        return len(self.book.new)


def search(prompts: Sequence[int], floors: Sequence[Floor], limit: float, known: Iterable[Probe],
           generate: Generate) -> Search:
    """The boundary of every floor together, then of each floor alone, from 0 to ``limit``."""
    book = Book(prompts, known, generate)
    bottom, top = book.at(0.0), book.at(limit)
    floors = tuple(floors)
    boundary = bisect(book, bottom, top, lambda s: s.holds(floors), limit)
    per_floor: dict[str, Boundary] = {}
    if len(floors) > 1:
        start = boundary.holds if boundary.holds is not None else bottom
        for floor in floors:
            above = [s for s in book.steps.values() if s.interval[0] >= start.interval[1] and not s.holds((floor,))]
            high = min(above, key=lambda s: s.interval[0]) if above else top
            per_floor[floor.key] = bisect(book, start, high, _holding(floor), limit)
    return Search(floors, limit, boundary, per_floor, book)


def _holding(floor: Floor) -> Callable[[Step], bool]:
    return lambda step: step.holds((floor,))


def grid_generations(limit: float, prompts: int) -> int:
    """Generations of a :data:`GRID_STEP` grid over [0, limit] for every prompt (the uncached ones not counted)."""
    return (int(math.floor(limit / GRID_STEP + 1e-9)) + 1) * prompts
