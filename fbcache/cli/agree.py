"""``fbcache agree``: one workload through every installed cache backend, hit maps side by side.

Each backend runs in its own ``pytest benchmarks`` subprocess with its own storage and image folder
(``WORKDIR/<backend>/``), because two backends' patches must never share a pipeline class in one
process. Or ``--saved BACKEND=STORAGE`` reads runs made earlier. The verdict is
:mod:`fbcache.verdicts.agreement`'s: exit 0 when every backend agrees with the first (or differs
only for a documented cause), 1 on a disagreement, 2 when the runs cannot be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from fbcache import backends
from fbcache.cli.common import output_file, write_file
from fbcache.errors import EXIT_CLEAN, EXIT_REGRESSION
from fbcache.history.storage import load_runs, run_files
from fbcache.verdicts.agreement import DEFAULT_NEAR, AgreementError, BackendRun, compare_backends, markdown, to_json

HELP = ("run one workload through every installed cache backend and compare their hit maps; "
        "exit 0 agree, 1 disagree, 2 error")
DESCRIPTION = __doc__

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
    agreement = compare_backends(runs, near=args.near)  # AgreementError: exit 2 (cli/main.py)
    table = markdown(agreement)
    if skipped:
        table += "\n\nnot compared: " + "; ".join(skipped)
    print(table)
    if markdown_path is not None:
        write_file(markdown_path, table + "\n", "--markdown")
    if json_path is not None:
        write_file(json_path, json.dumps({**to_json(agreement), "skipped": skipped}, indent=2), "--json")
    return EXIT_CLEAN if agreement.ok else EXIT_REGRESSION
