"""The GPU noise experiment: unchanged runs, then real injected slowdowns, and what compare said.

    python -m tools.gpu_noise_experiment --out DIR --resolution 1024 --good 6 --bad 2 \\
        --scenario all:0.02 --scenario cached:0.02

1. ``--good`` unchanged sweeps build a history (interleaved, default settings) in ``DIR/good``;
   every one of them after the first is judged with ``fbcache compare`` (the A/A rows).
2. For each scenario ``MODE:FRACTION`` the good history is copied to ``DIR/<scenario>`` and
   ``--bad`` sweeps run with a real slowdown (tools/slowdown_plugin.py): FRACTION of the uncached
   per-step time, as GPU sleep, in every transformer forward (``all``) or only while the cache is
   on (``cached``); each is judged.
3. The table (``DIR/table.md``) lists every judged run: scenario, verdict, the alerts, the measured
   effect and MDE of the uncached time and of the 0.8 speedup.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fbcache.history.storage import run_files

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Scenario:
    mode: str
    fraction: float

    @classmethod
    def parse(cls, text: str) -> Scenario:
        mode, _, fraction = text.partition(":")
        if mode not in ("all", "cached"):
            raise argparse.ArgumentTypeError(f"scenario mode must be all or cached: {text!r}")
        try:
            value = float(fraction)
        except ValueError:
            raise argparse.ArgumentTypeError(f"scenario fraction must be a number: {text!r}") from None
        if not 0 < value < 1:
            raise argparse.ArgumentTypeError(f"scenario fraction must be in (0, 1): {text!r}")
        return cls(mode, value)

    @property
    def name(self) -> str:
        """The scenario's folder: ``all-0.02``."""
        return f"{self.mode}-{self.fraction:g}"

    @property
    def label(self) -> str:
        """The scenario in the table: ``all +2%``."""
        return f"{self.mode} +{self.fraction:.0%}"


def sweep_command(storage: Path, images: Path, args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "pytest", str(ROOT / "benchmarks"), "-p", "no:cacheprovider", "-q",
            f"--benchmark-storage=file://{storage}", "--benchmark-autosave", "--fbcache-output-dir", str(images),
            "--fbcache-model", args.model, "--fbcache-device", args.device, "--fbcache-bounds", "none",
            "--fbcache-resolution", str(args.resolution), "--fbcache-rounds", str(args.rounds),
            "--fbcache-thresholds", args.thresholds, *args.pytest_args]


def per_step_ms(run_json: dict, steps: int) -> float:
    """The uncached median time per denoising step, in ms, of a saved run."""
    uncached = next(b for b in run_json["benchmarks"] if b["extra_info"]["threshold"] is None)
    return statistics.median(uncached["extra_info"]["rounds_s"]) / steps * 1000


def _is_threshold(label: str) -> bool:
    """Threshold rows only: not 'uncached', 'all benchmarks' or the run's startup rows."""
    try:
        float(label)
    except ValueError:
        return False
    return True


def summarize(result: dict) -> dict[str, str]:
    """One table row's cells from a ``fbcache compare --json`` result."""
    rows = {row["label"]: {v["metric"]: v for v in row["verdicts"]} for row in result["rows"]}

    def cell(label: str, metric: str) -> str:
        verdict = rows.get(label, {}).get(metric)
        if verdict is None or verdict.get("effect") is None:
            return "—" if verdict is None else verdict["status"]
        mde = f", MDE {verdict['mde']:.1%}" if verdict.get("mde") is not None else ""
        return f"{verdict['status']} {verdict['effect']:+.1%}{mde}"

    alerts = sorted({f"{row['label']} {v['metric']}" for row in result["rows"] for v in row["verdicts"]
                     if v["status"] in ("regression", "changed")})
    cached = max((label for label in rows if _is_threshold(label)), key=float, default="")
    return {"verdict": "REGRESSION" if result["regression"] else "clean", "alerts": ", ".join(alerts) or "—",
            "uncached time": cell("uncached", "time"), f"{cached} speedup": cell(cached, "speedup")}


def run_cli(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    print("+ " + " ".join(command), flush=True)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run(command, env={**os.environ, "PYTHONPATH": path, **(env or {})}, cwd=cwd,
                          capture_output=True, text=True, check=False)


def latest_run(storage: Path) -> dict:
    return json.loads(run_files(storage)[-1].read_text())


def table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(no judged runs)"
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row.get(h, "") for h in header) + " |" for row in rows]
    return "\n".join(lines)


def sweep_and_judge(label: str, storage: Path, out: Path, args: argparse.Namespace, index: int,
                    env: dict[str, str] | None = None) -> dict[str, str] | None:
    before = len(run_files(storage))
    done = run_cli(sweep_command(storage, out / "images", args), env, cwd=out)
    (out / "logs").mkdir(exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9.+]+", "-", label).strip("-") + f"-{index}"
    (out / "logs" / f"{stem}.log").write_text(done.stdout + done.stderr)
    saved = len(run_files(storage)) > before
    if done.returncode not in (0, 1) or not saved:
        raise SystemExit(f"sweep {label} {index} failed ({done.returncode}); see {out}/logs/{stem}.log")
    result = judge_prefix(storage, run_files(storage)[-1], out / "logs" / f"{stem}.json")
    if result["baseline"].startswith("nothing"):
        return None
    return {"run": f"{label} #{index}", **summarize(result)}


def judge_prefix(storage: Path, run: Path, out_json: Path) -> dict:
    """``fbcache compare`` of one saved run against the runs before it (later runs play no part)."""
    done = run_cli([sys.executable, "-m", "fbcache", "compare", "--storage", str(storage),
                    "--latest", run.stem, "--json", str(out_json)])
    if done.returncode not in (0, 1):
        raise SystemExit(f"fbcache compare failed ({done.returncode}):\n{done.stderr}")
    return json.loads(out_json.read_text())


def rejudge(out: Path) -> list[dict[str, str]]:
    """Judge again every run an earlier experiment saved in ``out``, with today's verdict code.

    The GPU time is spent once; the histories keep the measurements, so a change of the judge can
    be checked against real GPU noise and real injected slowdowns on any machine.
    """
    rows: list[dict[str, str]] = []
    good = run_files(out / "good" / "history")
    scratch = out / "rejudge"
    scratch.mkdir(exist_ok=True)
    for index, run in enumerate(good[1:], start=2):
        result = judge_prefix(out / "good" / "history", run, scratch / f"aa-{index}.json")
        if not result["baseline"].startswith("nothing"):
            rows.append({"run": f"A/A #{index}", **summarize(result)})
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and (p / "history").is_dir() and p.name != "good"):
        scenario = Scenario.parse(folder.name.replace("-", ":", 1))
        for index, run in enumerate(run_files(folder / "history")[len(good):], start=1):
            result = judge_prefix(folder / "history", run, scratch / f"{folder.name}-{index}.json")
            rows.append({"run": f"{scenario.label} #{index}", **summarize(result)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--good", type=int, default=6)
    parser.add_argument("--bad", type=int, default=2)
    parser.add_argument("--scenario", type=Scenario.parse, action="append", default=[])
    parser.add_argument("--model", default="flux-random")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--thresholds", default="0 0.5 0.8")
    parser.add_argument("--pytest-args", nargs="*", default=[])
    parser.add_argument("--rejudge", action="store_true",
                        help="run nothing: judge the histories already in --out again and rewrite its table")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if args.rejudge:
        head = (out / "table.md").read_text().split("\n\n")[0] if (out / "table.md").exists() else str(out.name)
        text = head + "\n\n" + table(rejudge(out)) + "\n"
        (out / "table.md").write_text(text)
        print(text)
        return 0
    args.pytest_args = [*args.pytest_args, "--fbcache-steps", str(args.steps)]
    out.mkdir(parents=True, exist_ok=True)
    good = out / "good"
    rows = [row for i in range(args.good)
            if (row := sweep_and_judge("A/A", good / "history", out, args, i + 1)) is not None]
    step_ms = per_step_ms(latest_run(good / "history"), args.steps)
    for scenario in args.scenario:
        storage = out / scenario.name / "history"
        shutil.rmtree(storage, ignore_errors=True)
        shutil.copytree(good / "history", storage)
        env = {"FBCACHE_SLOWDOWN": f"{scenario.mode}:{scenario.fraction * step_ms:.4f}"}
        args.pytest_args = [*args.pytest_args, "-p", "tools.slowdown_plugin"]
        for i in range(args.bad):
            row = sweep_and_judge(scenario.label, storage, out, args, i + 1, env)
            if row is not None:
                rows.append(row)
        args.pytest_args = args.pytest_args[:-2]
    text = (f"{args.model}, {args.resolution}x{args.resolution}, {args.steps} steps, {args.rounds} rounds, "
            f"thresholds {args.thresholds}; injected: fraction of the uncached per-step time "
            f"({step_ms:.1f} ms) per transformer forward\n\n" + table(rows) + "\n")
    (out / "table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
