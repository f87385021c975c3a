"""The quantization x compile x FBCache matrix as one Markdown table, from the runs the harness saved.

``scripts/gpu-compile-matrix.sh`` runs one ``pytest benchmarks`` session per configuration, each
with its own pytest-benchmark storage ``<history>/<quant>-<compile>/``. This reads the latest run
of each and writes one row per configuration: median seconds per threshold with hits, speedups,
peak memory and the first-call compile time, then the issue's targets computed from those rows.
Nothing is estimated: a cell without a saved run says so.

    python -m tools.compile_matrix --history .compile-matrix/history --placement "bf16-eager:0 fp8-regional:1"
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fbcache.history import GIB, UNCACHED, BenchRecord
from tools._results import emit, latest_run, stack_line

QUANTS = ("bf16", "int8wo", "int4wo", "fp8")
COMPILES = ("eager", "regional")
#: the issue's targets: (name, numerator config, denominator config, minimum ratio)
TARGETS = (
    ("fp8 + regional compile uncached vs bf16 eager uncached", "fp8-regional", "bf16-eager", 1.4),
    ("int4wo + regional compile uncached vs int4wo eager uncached", "int4wo-regional", "int4wo-eager", 1.0),
)
MIN_COMPILED_SPEEDUP_AT = (0.8, 6.0)


@dataclass
class ConfigRun:
    """The latest saved run of one configuration."""

    name: str
    path: Path
    machine: dict[str, Any]
    datetime: str
    records: dict[str, BenchRecord]

    @property
    def uncached(self) -> BenchRecord | None:
        return self.records.get(UNCACHED)


def config_names() -> list[str]:
    return [f"{quant}-{mode}" for quant in QUANTS for mode in COMPILES]


def load(name: str, storage: Path) -> ConfigRun | None:
    run = latest_run(storage)
    if run is None:
        return None
    return ConfigRun(name, run.path, run.machine_info.get("fbcache", {}), run.datetime, run.records)


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _cell(record: BenchRecord | None) -> str:
    if record is None:
        return "—"
    text = _s(record.median_s)
    if record.threshold is not None:
        hits = "—" if record.hits is None else f"{record.hits}/{record.steps}"
        speedup = "—" if record.speedup is None else f"{record.speedup:.2f}x"
        text += f" ({hits}, {speedup})"
    return text


def _gib(runs: ConfigRun) -> str:
    peaks = [r.peak_memory_bytes for r in runs.records.values() if r.peak_memory_bytes]
    return f"{max(peaks) / GIB:.2f}" if peaks else "—"


def _compile(run: ConfigRun) -> str:
    first = run.uncached
    if first is None or first.compile_mode == "none":
        return "—"
    cached_graphs = sum(r.compile_graphs or 0 for r in run.records.values() if r.threshold is not None)
    text = _s(first.compile_s)
    return text + (f" (+{cached_graphs} graphs in cached warm-ups)" if cached_graphs else "")


def thresholds_of(runs: list[ConfigRun]) -> list[str]:
    labels = {label for run in runs for label in run.records if label != UNCACHED}
    return sorted(labels, key=float)


def ratio(runs: dict[str, ConfigRun], faster: str, slower: str) -> float | None:
    a, b = runs.get(faster), runs.get(slower)
    if a is None or b is None or a.uncached is None or b.uncached is None:
        return None
    if not a.uncached.median_s or not b.uncached.median_s:
        return None
    return b.uncached.median_s / a.uncached.median_s


def table(runs: dict[str, ConfigRun], placement: dict[str, str] | None = None) -> str:
    """The matrix and the targets, as Markdown."""
    placement = placement or {}
    present = [runs[name] for name in config_names() if name in runs]
    labels = thresholds_of(present)
    header = ["quant", "compile", "uncached s", *(f"t={label} s (hits, speedup)" for label in labels),
              "peak GiB", "compile s (first call)", "GPU"]
    lines = []
    if present:
        lines += [stack_line(present[0].machine, min(r.datetime for r in present)), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in config_names():
        quant, mode = name.split("-")
        run = runs.get(name)
        if run is None:
            lines.append(f"| {quant} | {mode} | no saved run |" + " |" * (len(header) - 3))
            continue
        cells = [quant, mode, _cell(run.uncached), *(_cell(run.records.get(label)) for label in labels), _gib(run),
                 _compile(run), placement.get(name, "—")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Median of the timed rounds; speedup = uncached median / cached median of the same configuration.", ""]
    lines += targets(runs)
    return "\n".join(lines) + "\n"


def targets(runs: dict[str, ConfigRun]) -> list[str]:
    lines = []
    for text, faster, slower, minimum in TARGETS:
        value = ratio(runs, faster, slower)
        verdict = "not measured" if value is None else f"{value:.2f}x ({'met' if value >= minimum else 'NOT met'}, target >= {minimum:g}x)"
        lines.append(f"- {text}: {verdict}")
    threshold, minimum = MIN_COMPILED_SPEEDUP_AT
    for quant in QUANTS:
        run = runs.get(f"{quant}-regional")
        record = run.records.get(f"{threshold:g}") if run is not None else None
        if record is not None and record.speedup is not None:
            met = "met" if record.speedup >= minimum else "NOT met"
            lines.append(f"- {quant} regional, FBCache speedup at {threshold:g}: {record.speedup:.2f}x ({met}, target >= {minimum:g}x)")
    return lines


def parse_placement(text: str) -> dict[str, str]:
    """'bf16-eager:0 fp8-regional:1' -> {config: 'GPU 0', ...}."""
    placement = {}
    for token in text.split():
        name, _, gpu = token.partition(":")
        placement[name] = f"GPU {gpu}"
    return placement


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=Path, required=True, help="folder with one storage per configuration")
    parser.add_argument("--placement", default="", help="'config:gpu ...', for the GPU column")
    parser.add_argument("--out", type=Path, help="write the table here (default: stdout)")
    args = parser.parse_args(argv)
    runs = {}
    for name in config_names():
        run = load(name, args.history / name)
        if run is not None:
            runs[name] = run
    text = table(runs, parse_placement(args.placement))
    return emit(text, args.out, len(runs), f"any configuration's storage under {args.history}")


if __name__ == "__main__":
    raise SystemExit(main())
