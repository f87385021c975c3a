"""scripts/gpu-compile.sh's table: cold vs warm compilation, and regional+io against regional, from saved runs.

The script runs one ``pytest benchmarks`` session per entry of :data:`SESSIONS`, each with its own
pytest-benchmark storage ``<history>/<name>/`` and all sharing one ``--fbcache-compile-cache``
directory, and writes each session's wall time (process start to exit) to a walls file. This reads the
latest run of each and writes one row per session, then the issue's goals computed from those rows. A
session without a saved run says so; nothing is estimated. Two times are "too close to call" when their
timed rounds' ranges overlap.

    python -m tools.gpu_compile --history .gpu-compile/history --walls walls.txt --out summary.md
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fbcache.history import UNCACHED, BenchRecord
from tools._results import emit, latest_run, stack_line

#: name -> (quantization, compile mode, quantization filter); in the script's order
SESSIONS: dict[str, tuple[str, str, str]] = {
    "fp8-io-cold": ("torchao-fp8", "regional+io", "all"),  # first process on an empty compile cache
    "fp8-io-warm": ("torchao-fp8", "regional+io", "all"),  # second process, same stack, same cache
    "fp8-regional": ("torchao-fp8", "regional", "all"),  # the regional baseline (blocks warm from fp8-io-cold)
    "bf16-io-cold": ("none", "regional+io", "all"),  # bf16 on the same cache (its graphs differ from fp8's)
    "bf16-regional": ("none", "regional", "all"),  # the bf16 regional baseline
    "fp8-io-blocks": ("torchao-fp8", "regional+io", "blocks"),  # fp8 blocks, bf16 embedders and output layers
    "bf16-io-warm": ("none", "regional+io", "all"),  # second bf16 process
}
#: the issue's goals
WARM_FRACTION = 0.20
SPEEDUP_AT = (0.8, 6.0)


@dataclass
class Session:
    name: str
    machine: dict[str, Any]
    datetime: str
    records: dict[str, BenchRecord]
    wall_s: float | None = None

    @property
    def uncached(self) -> BenchRecord | None:
        return self.records.get(UNCACHED)

    def at(self, threshold: float) -> BenchRecord | None:
        return self.records.get(f"{threshold:g}")

    @property
    def compile_s(self) -> float | None:
        """The sweep's compilation: every benchmark's first call minus its timed median, summed."""
        values = [r.compile_s for r in self.records.values() if r.compile_s is not None]
        return sum(values) if values else None

    @property
    def first_calls_s(self) -> float | None:
        values = [r.compile_warmup_s for r in self.records.values() if r.compile_warmup_s is not None]
        return sum(values) if values else None

    def cache(self) -> str:
        """Each benchmark's first-call cache outcome, e.g. 'uncached cold (0 hits, 12 misses); 0.8 nothing compiled'."""
        parts = []
        for record in sorted(self.records.values(), key=lambda r: -1.0 if r.threshold is None else r.threshold):
            entry = record.compile_cache
            found = entry.get("state")
            parts.append(f"{record.label} " + ("nothing compiled" if found is None else
                                               f"{found} ({entry.get('hits')} hits, {entry.get('misses')} misses)"))
        return "; ".join(parts)


def load(name: str, storage: Path) -> Session | None:
    run = latest_run(storage)
    if run is None:
        return None
    return Session(name, run.machine_info.get("fbcache", {}), run.datetime, run.records)


def read_walls(path: Path | None) -> dict[str, float]:
    """'NAME SECONDS RC' per line, as the script writes them."""
    walls: dict[str, float] = {}
    if path is None or not path.is_file():
        return walls
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            try:
                walls[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return walls


def _s(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _rounds(record: BenchRecord | None) -> str:
    if record is None or not record.rounds_s:
        return "—"
    text = f"{record.median_s:.3f}"
    if len(record.rounds_s) > 1:
        text += f" [{min(record.rounds_s):.3f}-{max(record.rounds_s):.3f}]"
    if record.threshold is not None and record.hits is not None:
        text += f" ({record.hits}/{record.steps})"
    return text


TOO_CLOSE = "too close to call (the timed rounds' ranges overlap)"


def medians(a: BenchRecord | None, b: BenchRecord | None) -> tuple[float, float, bool] | None:
    """Both records' timed-round medians and whether their rounds' ranges overlap (then too close to call);
    None when either was not measured."""
    if a is None or b is None or a.median_s is None or b.median_s is None:
        return None
    overlap = min(a.rounds_s) <= max(b.rounds_s) and min(b.rounds_s) <= max(a.rounds_s)
    return a.median_s, b.median_s, overlap


def faster_or_equal(candidate: BenchRecord | None, baseline: BenchRecord | None) -> str:
    """Is candidate no slower than baseline: 'met', 'NOT met', or too close to call (round ranges overlap)."""
    measured = medians(candidate, baseline)
    if measured is None:
        return "not measured"
    new, old, overlap = measured
    if overlap:
        return f"{old / new:.3f}x: {TOO_CLOSE}"
    return f"{old / new:.3f}x ({'met' if old >= new else 'NOT met'}: {new:.3f} s vs {old:.3f} s)"


def which_faster(blocks: BenchRecord | None, whole: BenchRecord | None) -> str:
    """The quantization filter's question, no goal: which of the two is faster, or too close to call."""
    measured = medians(blocks, whole)
    if measured is None:
        return "not measured"
    fewer, every, overlap = measured
    text = f"blocks {fewer:.3f} s, all {every:.3f} s"
    return text + (f": {TOO_CLOSE}" if overlap else ": blocks faster" if fewer < every else ": all faster")


def table(sessions: dict[str, Session]) -> str:
    threshold = SPEEDUP_AT[0]
    lines = []
    present = [sessions[name] for name in SESSIONS if name in sessions]
    if present:
        lines += [stack_line(present[0].machine, min(s.datetime for s in present)), ""]
    header = ["session", "quant", "compile", "quant filter", "uncached s [rounds]", f"{threshold:g} s [rounds] (hits)",
              f"speedup at {threshold:g}", "compile s (sweep)", "first calls s", "process wall s", "compile cache"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, (quant, mode, quant_filter) in SESSIONS.items():
        session = sessions.get(name)
        if session is None:
            lines.append(f"| {name} | {quant} | {mode} | {quant_filter} | no saved run |" + " |" * (len(header) - 5))
            continue
        cached = session.at(threshold)
        speedup = "—" if cached is None or cached.speedup is None else f"{cached.speedup:.2f}x"
        cells = [name, quant, mode, quant_filter, _rounds(session.uncached), _rounds(cached), speedup,
                 _s(session.compile_s, 1), _s(session.first_calls_s, 1), _s(session.wall_s, 0), session.cache()]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Medians of the timed rounds, [fastest-slowest]; speedup = uncached median / cached median of the "
              "same session; compile s = every benchmark's first call minus its timed median, summed.", ""]
    return "\n".join(lines + goals(sessions)) + "\n"


def goals(sessions: dict[str, Session]) -> list[str]:
    threshold, minimum = SPEEDUP_AT
    lines = ["Goals (issue 26):"]
    for quant in ("fp8", "bf16"):
        cold, warm = sessions.get(f"{quant}-io-cold"), sessions.get(f"{quant}-io-warm")
        if cold is not None and warm is not None and cold.compile_s and warm.compile_s is not None:
            fraction = warm.compile_s / cold.compile_s
            verdict = "met" if fraction <= WARM_FRACTION else "NOT met"
            lines.append(f"- {quant} regional+io, warm vs cold compilation of the sweep: {warm.compile_s:.1f} s vs "
                         f"{cold.compile_s:.1f} s = {fraction:.0%} ({verdict}, goal <= {WARM_FRACTION:.0%})")
        else:
            lines.append(f"- {quant} regional+io, warm vs cold compilation: not measured")
        for name in (f"{quant}-io-warm", f"{quant}-io-cold"):
            record = sessions[name].at(threshold) if name in sessions else None
            if record is not None and record.speedup is not None:
                verdict = "met" if record.speedup >= minimum else "NOT met"
                lines.append(f"- {quant} regional+io speedup at {threshold:g} ({name}): {record.speedup:.2f}x "
                             f"({verdict}, goal >= {minimum:g}x)")
                break
        else:
            lines.append(f"- {quant} regional+io speedup at {threshold:g}: not measured")
        new = sessions.get(f"{quant}-io-warm") or sessions.get(f"{quant}-io-cold")
        old = sessions.get(f"{quant}-regional")
        lines.append(f"- {quant} regional+io uncached vs regional uncached (goal: no slower): "
                     + faster_or_equal(new.uncached if new else None, old.uncached if old else None))
    blocks, whole = sessions.get("fp8-io-blocks"), sessions.get("fp8-io-warm") or sessions.get("fp8-io-cold")
    for label, pick in (("uncached", lambda s: s.uncached), (f"at {threshold:g}", lambda s: s.at(threshold))):
        lines.append(f"- fp8 regional+io, embedders and output layers in bf16 (quant filter blocks) or fp8 (all), "
                     f"{label}: " + which_faster(pick(blocks) if blocks else None, pick(whole) if whole else None))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=Path, required=True, help="folder with one storage per session")
    parser.add_argument("--walls", type=Path, help="the script's 'NAME SECONDS RC' lines")
    parser.add_argument("--out", type=Path, help="write the table here (default: stdout)")
    args = parser.parse_args(argv)
    walls = read_walls(args.walls)
    sessions = {}
    for name in SESSIONS:
        session = load(name, args.history / name)
        if session is not None:
            session.wall_s = walls.get(name)
            sessions[name] = session
    text = table(sessions)
    return emit(text, args.out, len(sessions), f"any session's storage under {args.history}")


if __name__ == "__main__":
    raise SystemExit(main())
