"""``fbcache agree``: one workload through every installed cache backend, hit maps side by side.

Each backend runs in its own ``pytest benchmarks`` subprocess with its own storage and image folder
(``WORKDIR/<backend>/``), because two backends' patches must never share a pipeline class in one
process. Or ``--saved BACKEND=STORAGE`` reads runs made earlier. The verdict: exit 0 when every
backend agrees with the first (or differs only for a documented cause), 1 on a disagreement, 2 when
the runs cannot be compared.

**The agreement.** Do cache backends that implement the same rule make the same decisions? Judged from saved runs.

Every registered first-block cache applies one rule: skip the remaining blocks when
``mean|r_t - r_last| / mean|r_last|`` of the first block's residual is within the threshold of the
last computed step's. Given one saved run per backend (same
model, workload and accelerator), this compares each backend's per-step hit map with the reference
backend's at every threshold.

Only the **first** step where two hit maps differ is judged: after it the two generations cache
different residuals and their latents part, so every later difference follows from it. That step
is explained (not a failure) only by a documented cause:

- ``strict``: the difference it compared equals the threshold. Some caches hit when
  ``diff <= threshold`` (diffusers'), others only when ``diff < threshold``.
- ``reuses every step``: from the threshold its spec names (``reuses_every_step_from``) a backend
  reuses every step after the first without comparing anything; the others still compare.
- ``near threshold``: the compared differences lie within ``near`` (relative) of the threshold, where
  kernels that round differently (bf16 on a GPU) may fall on either side.

Anything else is a disagreement, and the verdict fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fbcache import backends, markup
from fbcache.cli import output_file, write_file
from fbcache.config import ThresholdPair, parse_threshold, threshold_order
from fbcache.errors import EXIT_CLEAN, EXIT_REGRESSION, AgreementError
from fbcache.history import UNCACHED, BenchRecord
from fbcache.history.storage import Run, load_runs, run_files
from fbcache.metrics import measured

#: relative distance from the threshold within which rounding may flip a decision
DEFAULT_NEAR = 0.005


@dataclass(frozen=True)
class BackendRun:
    """One backend's saved run, and how to name it (a stand-in says so)."""

    backend: str
    run: Run

    @property
    def label(self) -> str:
        versions = (self.run.machine_info.get("fbcache") or {}).get("versions") or {}
        release = backends.standin_release(versions.get(self.backend))
        return f"{self.backend} STAND-IN {release}" if release is not None else self.backend


@dataclass(frozen=True)
class Verdict:
    """One backend against the reference at one threshold."""

    agree: bool
    #: "" when the hit maps are identical; else what the first differing step shows
    detail: str = ""

    @property
    def text(self) -> str:
        if self.agree:
            return "yes" if not self.detail else f"yes ({self.detail})"
        return f"NO: {self.detail}"


@dataclass
class Row:
    threshold: str
    backend: str
    record: BenchRecord
    verdict: Verdict | None  # None for the reference backend
    #: largest relative difference between this backend's compared residual differences and the
    #: reference's, over the steps before the hit maps part (None when nothing to compare)
    diff_gap: float | None = None


@dataclass
class Agreement:
    reference: str
    backends: list[str]
    rows: list[Row] = field(default_factory=list)
    workload: str = ""
    accelerator: str = ""

    @property
    def ok(self) -> bool:
        return all(row.verdict is None or row.verdict.agree for row in self.rows)


def _workload(run: Run) -> tuple[str, str, str, str]:
    fingerprint = run.fingerprint
    return (fingerprint.get("accelerator", ""), fingerprint.get("model", ""), fingerprint.get("quantization", ""),
            fingerprint.get("workload", ""))


def _close(a: float, b: float, near: float) -> bool:
    return abs(a - b) <= near * max(abs(b), 1e-12)


def first_difference(reference: BenchRecord, other: BenchRecord, backend: str, near: float = DEFAULT_NEAR) -> Verdict:
    """Judge the first step where ``other``'s hit map differs from ``reference``'s."""
    ours, theirs = reference.hit_trace, other.hit_trace
    if len(ours) != len(theirs):
        return Verdict(False, f"{len(theirs)} decisions against {len(ours)}")
    step = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b), None)
    if step is None:
        return Verdict(True)
    # the hit map is the step's (first) decision: a MULTI/SINGLE pair's double-stream one, with its threshold
    threshold = reference.threshold.multi if isinstance(reference.threshold, ThresholdPair) \
        else float(reference.threshold or 0.0)
    compared = [trace[step] for trace in (reference.residual_diff_trace, other.residual_diff_trace)
                if step < len(trace) and trace[step] is not None]
    where = f"step {step}: reference {'hit' if ours[step] else 'computed'}, {backend} {'hit' if theirs[step] else 'computed'}"
    shown = ", ".join(f"{d:.6g}" for d in compared) or "not recorded"
    reuses = backends.get(backend).reuses_every_step_from if backend in backends.names() else None
    if reuses is not None and threshold >= reuses and theirs[step]:
        return Verdict(True, f"{where}; {backend} reuses every step at a threshold >= {reuses:g}")
    if any(d == threshold for d in compared):
        return Verdict(True, f"{where}; diff equals the threshold ({shown}): <= against <")
    if compared and all(d is not None and _close(d, threshold, near) for d in compared):
        return Verdict(True, f"{where}; diff {shown} within {near:g} of the threshold (rounding)")
    return Verdict(False, f"{where}; diff {shown}, threshold {threshold:g}")


def diff_gap(reference: BenchRecord, other: BenchRecord) -> float | None:
    """Largest relative gap between the two backends' compared differences, while their maps agree."""
    gaps = []
    for a_hit, b_hit, a, b in zip(reference.hit_trace, other.hit_trace, reference.residual_diff_trace,
                                  other.residual_diff_trace, strict=False):
        if a_hit != b_hit:
            break
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b):
            gaps.append(abs(a - b) / max(abs(a), 1e-12))
    return max(gaps) if gaps else None


def compare_backends(runs: list[BackendRun], near: float = DEFAULT_NEAR) -> Agreement:
    """Every threshold the runs share, each backend against the first (the reference)."""
    if len(runs) < 2:
        raise AgreementError(f"need runs of at least two backends, got {len(runs)}")
    workloads = {_workload(item.run) for item in runs}
    if len(workloads) != 1:
        details = "; ".join(f"{item.label}: {' | '.join(_workload(item.run))}" for item in runs)
        raise AgreementError(f"the runs differ in accelerator, model, quantization or workload ({details})")
    labels = [set(item.run.records) - {UNCACHED} for item in runs]
    shared = sorted(set.intersection(*labels), key=lambda label: threshold_order(parse_threshold("", label)))
    if not shared:
        raise AgreementError("the runs share no threshold")
    reference = runs[0]
    accelerator, _, _, workload = workloads.pop()
    agreement = Agreement(reference=reference.label, backends=[item.label for item in runs], workload=workload,
                          accelerator=accelerator)
    for label in shared:
        ref_record = reference.run.records[label]
        agreement.rows.append(Row(label, reference.label, ref_record, None))
        for item in runs[1:]:
            record = item.run.records[label]
            agreement.rows.append(Row(label, item.label, record, first_difference(ref_record, record, item.backend, near),
                                      diff_gap(ref_record, record)))
    return agreement


def _hit_map(record: BenchRecord) -> str:
    return "".join("." if hit else "#" for hit in record.hit_trace)


def markdown(agreement: Agreement) -> str:
    """Per threshold, one row per backend: hit map, hits, speedup, every image metric, and the verdict."""
    shown = measured(row.record.metrics for row in agreement.rows)  # an opt-in metric no backend computed: no column
    titles = [m.title for m in shown]
    header = ["threshold", "backend", "hit map", "hits", "speedup", *titles, "max diff gap", "agree"]
    rows = []
    for row in agreement.rows:
        record = row.record
        rows.append([row.threshold, row.backend, f"`{_hit_map(record)}`",
                     f"{record.hits}/{len(record.hit_trace)}" if record.hits is not None else "—",
                     f"{record.speedup:.2f}x" if record.speedup else "—",
                     *(m.format(record.metrics.get(m.name)) for m in shown),
                     "—" if row.diff_gap is None else f"{row.diff_gap:.1e}",
                     "reference" if row.verdict is None else row.verdict.text])
    lines = [f"Cross-backend agreement ({agreement.accelerator}; {agreement.workload}); reference: "
             f"{agreement.reference}. Hit map: '#' computed, '.' cache hit.", "", markup.table(header, rows)]
    lines += ["", "all backends agree" if agreement.ok else "DISAGREEMENT beyond the documented causes (docs/guide.md, "
              "\"Cache backends\")"]
    return "\n".join(lines)


def to_json(agreement: Agreement) -> dict[str, Any]:
    return {
        "reference": agreement.reference, "backends": agreement.backends, "ok": agreement.ok,
        "workload": agreement.workload, "accelerator": agreement.accelerator,
        "rows": [{"threshold": row.threshold, "backend": row.backend, "hit_trace": row.record.hit_trace,
                  "hits": row.record.hits, "speedup": row.record.speedup,
                  **{m.name: m.to_json(row.record.metrics.get(m.name)) for m in measured([row.record.metrics])},
                  "residual_diff_trace": row.record.residual_diff_trace, "diff_gap": row.diff_gap,
                  "agree": None if row.verdict is None else row.verdict.agree,
                  "detail": None if row.verdict is None else row.verdict.detail} for row in agreement.rows],
    }


HELP = ("run one workload through every installed cache backend and compare their hit maps; "
        "exit 0 agree, 1 disagree, 2 error")
#: ``fbcache agree --help``: the verb's part of the docstring, not the agreement's rules
DESCRIPTION = __doc__.split("\n\n**The agreement.**")[0] + "\n"

#: options handed to every backend's sweep unchanged, as --fbcache-<name>
PASSED = ("model", "thresholds", "steps", "resolution", "seed", "rounds", "warmup_rounds", "device", "quant")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backends", nargs="+", help="backends to run, the first is the reference "
                        "(default: every installed one, diffusers first)")
    for spec in backends.all_backends():
        if spec.standin:  # declared by the backend: --<name>-standin DIR
            parser.add_argument(f"--{spec.name}-standin", metavar="DIR", dest=_standin_dest(spec.name),
                                help=spec.standin)
    parser.add_argument("--saved", nargs="+", metavar="BACKEND=STORAGE", default=[],
                        help="compare the newest run in each storage instead of running sweeps")
    parser.add_argument("--workdir", default="fbcache-agree", help="per-backend storage, images and logs")
    parser.add_argument("--benchmarks", default="benchmarks", help="path of the benchmark suite")
    for name in PASSED:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, help=f"passed on as --fbcache-{name.replace('_', '-')}")
    parser.add_argument("--pytest-args", default="", help="more pytest arguments for every sweep, one quoted string")
    parser.add_argument("--near", type=float, default=DEFAULT_NEAR,
                        help="relative distance from the threshold where rounding explains a flip (0.005)")
    parser.add_argument("--markdown", help="also write the table here")
    parser.add_argument("--json", help="also write the verdict here")


def _standin_dest(backend: str) -> str:
    return "standin_" + backend.replace("-", "_")


def standins(args: argparse.Namespace) -> dict[str, Path]:
    """Backend -> the stand-in folder given for it (``--<backend>-standin DIR``)."""
    return {spec.name: Path(folder) for spec in backends.all_backends()
            if spec.standin and (folder := getattr(args, _standin_dest(spec.name), None))}


def installed_backends(given: dict[str, Path]) -> list[str]:
    """Registered backends whose library can run here, or that were given a stand-in."""
    return [spec.name for spec in backends.all_backends() if spec.name in given or spec.installed()]


def sweep(backend: str, args: argparse.Namespace, workdir: Path) -> tuple[int, str, Path]:
    """One backend's ``pytest benchmarks`` in a subprocess; (exit code, output, its storage)."""
    storage = (workdir / backend / "history").resolve()
    images = (workdir / backend / "images").resolve()
    storage.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pytest", args.benchmarks, "-p", "no:cacheprovider", "-q",
               "--benchmark-autosave", f"--benchmark-storage=file://{storage}", f"--fbcache-output-dir={images}",
               f"--fbcache-cache-backend={backend}", "--fbcache-bounds=none"]
    command += [f"--fbcache-{name.replace('_', '-')}={value}" for name in PASSED
                if (value := getattr(args, name)) not in (None, "")]
    command += shlex.split(args.pytest_args or "")
    env = dict(os.environ)
    standin = standins(args).get(backend)
    if standin is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(standin.resolve()), env.get("PYTHONPATH", "")) if p)
    print(f"fbcache agree: {shlex.join(command)}", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    output = done.stdout + done.stderr
    write_file(workdir / f"{backend}.log", output, "--workdir")
    return done.returncode, output, storage


def _newest(storage: Path, backend: str) -> BackendRun:
    runs, skipped = load_runs(storage)
    for message in skipped:
        print(f"fbcache agree: warning: {message}", file=sys.stderr)
    if not runs:
        raise AgreementError(f"{backend}: no fbcache run in {storage}")
    return BackendRun(backend, runs[-1])


def collect(args: argparse.Namespace) -> tuple[list[BackendRun], list[str]]:
    """The runs to compare, and a line for each backend that could not give one."""
    if args.saved:
        pairs = [item.split("=", 1) for item in args.saved]
        if any(len(pair) != 2 for pair in pairs):
            raise AgreementError("--saved takes BACKEND=STORAGE")
        return [_newest(Path(storage), backend) for backend, storage in pairs], []
    chosen = args.backends or installed_backends(standins(args))
    unknown = [name for name in chosen if name not in backends.names()]
    if unknown:
        raise AgreementError(f"unknown backend(s) {', '.join(unknown)}; registered: {', '.join(backends.names())}")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    runs, skipped = [], []
    for backend in chosen:
        before = set(run_files(workdir / backend / "history"))
        code, output, storage = sweep(backend, args, workdir)
        if not set(run_files(storage)) - before:
            error = next((line.strip() for line in output.splitlines() if line.startswith("ERROR")), "")
            if code != 4:  # not refused before building a model: the sweep broke
                raise AgreementError(f"{backend}: the sweep broke (pytest exit {code}), no run saved; "
                                     f"see {workdir / f'{backend}.log'}")
            skipped.append(f"{backend}: refused ({error or 'usage error'})")
            continue
        runs.append(_newest(storage, backend))
    return runs, skipped


def run(args: argparse.Namespace) -> int:
    # checked before any sweep, so a typo costs a one-line error, not the sweeps' results
    markdown_path = output_file(args.markdown, "--markdown") if args.markdown else None
    json_path = output_file(args.json, "--json") if args.json else None
    runs, skipped = collect(args)
    for line in skipped:
        print(f"fbcache agree: {line}", file=sys.stderr)
    agreement = compare_backends(runs, near=args.near)  # AgreementError: exit 2 (cli/__init__.py)
    table = markdown(agreement)
    if skipped:
        table += "\n\nnot compared: " + "; ".join(skipped)
    print(table)
    if markdown_path is not None:
        write_file(markdown_path, table + "\n", "--markdown")
    if json_path is not None:
        write_file(json_path, json.dumps({**to_json(agreement), "skipped": skipped}, indent=2), "--json")
    return EXIT_CLEAN if agreement.ok else EXIT_REGRESSION
