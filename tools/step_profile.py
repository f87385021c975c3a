"""Where one generation's time goes, per part, uncached and at one threshold (issue 13's "profile it").

    python -m tools.step_profile --out DIR --threshold 0.8 model=flux-random device=cuda quant=torchao-fp8 compile=regional

Builds the model through the harness (same options as ``--fbcache-*``, given as ``name=value``),
warms up every cache state (compiling what ``compile`` asks for), then profiles one uncached and
one cached generation. Each part is a ``torch.profiler.record_function`` range opened and closed by
module hooks: every transformer call (one denoising step; ``step (hit)`` or ``step (computed)`` by
the cache's own decision), the first block (where the decision is taken), the other blocks, and the
VAE decode. Per part: calls, the host's time inside it, and its span on the GPU (first kernel start
to last kernel end of each call: the profiler's device-side copy of the range, which exists only
for calls that launched kernels). A hit step's GPU span, set against its first block's, says how
much of a cached step is the block a hit cannot skip and how much is everything around it.
Writes ``profile.json`` and ``profile.md`` (and the profiler's own table, ``profiler-<state>.txt``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from fbcache.backends import DecisionLog
from fbcache.configure import build_config
from fbcache.models import repeated_blocks
from fbcache.plugin import schedule
from fbcache.plugin.schedule import generate_once
from fbcache.plugin.session import FBCacheSession

#: the parts of a generation, in the order the tables list them
PARTS = ("generation", "step (computed)", "step (hit)", "first block", "other blocks", "vae decode")
#: the names the hooks give their ranges (steps are named hit/computed afterwards)
RANGE_NAMES = ("generation", "step", "first block", "other blocks", "vae decode")


@dataclass
class Part:
    name: str
    #: host-side calls (every call), and the host's time inside them
    calls: int
    host_ms: float
    #: device-side calls (those that launched kernels) and their summed GPU spans
    gpu_calls: int = 0
    gpu_span_ms: float = 0.0


@dataclass
class Profile:
    state: str
    hits: int
    steps: int
    wall_ms: float
    parts: list[Part]


class _Ranges:
    """Module hooks that open a profiler range before a module runs and close it after."""

    def __init__(self) -> None:
        self._open: list[Any] = []
        self._handles: list[Any] = []

    def _enter(self, name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            ctx = torch.profiler.record_function(name)
            ctx.__enter__()
            self._open.append(ctx)
        return hook

    def _exit(self, *_: Any) -> None:
        self._open.pop().__exit__(None, None, None)

    def around(self, module: Any, name: str) -> None:
        self._handles.append(module.register_forward_pre_hook(self._enter(name)))
        self._handles.append(module.register_forward_hook(self._exit))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


@contextmanager
def _wrapped_decode(vae: Any) -> Iterator[None]:
    original = vae.decode

    def decode(*args: Any, **kwargs: Any) -> Any:
        with torch.profiler.record_function("vae decode"):
            return original(*args, **kwargs)

    vae.decode = decode
    try:
        yield
    finally:
        vae.decode = original


def _is_host(event: Any) -> bool:
    """The profiler records a ``record_function`` range twice on a GPU: the host-side range and a
    device-side copy spanning its kernels (``gpu_user_annotation``). Both carry the range's name."""
    return str(getattr(event, "device_type", "")).endswith("CPU")


def _summarize(state: str, events: list[Any], log_steps: list[Any], wall_ms: float) -> Profile:
    """Per part: host time from the host-side ranges, GPU span from the device-side ones; the i-th step
    of each side is named by the cache's i-th decision."""
    totals: dict[str, Part] = {name: Part(name, 0, 0.0) for name in PARTS}
    ranges = sorted((e for e in events if e.name in RANGE_NAMES), key=lambda e: e.time_range.start)
    for host in (True, False):
        hits = iter(step.hit for step in log_steps)
        for event in (e for e in ranges if _is_host(e) == host):
            name = event.name
            if name == "step":
                name = "step (hit)" if next(hits, False) else "step (computed)"
            part = totals[name]
            if host:
                part.calls += 1
                part.host_ms += event.time_range.elapsed_us() / 1000.0
            else:
                part.gpu_calls += 1
                part.gpu_span_ms += event.time_range.elapsed_us() / 1000.0
    return Profile(state, sum(step.hit for step in log_steps), len(log_steps), wall_ms,
                   [part for part in totals.values() if part.calls or part.gpu_calls])


def profile_generation(generate: Callable[[], Any], device: str, log: DecisionLog, state: str) -> tuple[Profile, str]:
    """One generation under the profiler; the ranges come from hooks installed by the caller."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if schedule.is_cuda(device):
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    schedule.synchronize(device)
    log.start_generation()
    with torch.profiler.profile(activities=activities) as prof:
        started = time.perf_counter()
        with torch.profiler.record_function("generation"):
            generate()
            schedule.synchronize(device)
        wall_ms = (time.perf_counter() - started) * 1000.0
    steps = log.finish_generation()
    table = prof.key_averages().table(sort_by="self_cuda_time_total" if schedule.is_cuda(device) else "self_cpu_time_total",
                                      row_limit=40)
    return _summarize(state, list(prof.events()), steps, wall_ms), table


def render(profiles: list[Profile], title: str) -> str:
    lines = [f"# {title}", "",
             "| state | hits | wall (ms) | part | calls | host (ms) | host per call (ms) | calls on GPU "
             "| GPU span (ms) | GPU span per call (ms) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for profile in profiles:
        for part in profile.parts:
            hits = f"{profile.hits}/{profile.steps}" if profile.steps else "—"
            lines.append(f"| {profile.state} | {hits} | {profile.wall_ms:.1f} | {part.name} "
                         f"| {part.calls} | {part.host_ms:.1f} | {part.host_ms / max(part.calls, 1):.2f} "
                         f"| {part.gpu_calls} | {part.gpu_span_ms:.1f} | {part.gpu_span_ms / max(part.gpu_calls, 1):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threshold", type=float, required=True)
    parser.add_argument("options", nargs="*", help="harness options as name=value (model=flux-random ...)")
    args = parser.parse_args(argv)
    raw: dict[str, str | bool | None] = {}
    for item in args.options:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"harness options are name=value, got {item!r}")
        raw[name.replace("-", "_")] = value
    config = build_config(raw)
    args.out.mkdir(parents=True, exist_ok=True)
    session = FBCacheSession(config, profile=None)  # loads the model as a sweep does (threads, quant, compile)
    pipe = session.model.pipe
    log = DecisionLog()

    def generate() -> Any:
        return generate_once(session, torch.Generator("cpu").manual_seed(config.seed))

    def cached() -> Any:
        session.backend.enable(args.threshold, log)
        try:
            return generate()
        finally:
            session.backend.disable()

    states = (("uncached", generate), (f"threshold {args.threshold:g}", cached))
    warmup_s = {}
    for state, run in states:  # untimed: compiles what each cache state needs
        started = time.perf_counter()
        run()
        schedule.synchronize(config.device)
        warmup_s[state] = round(time.perf_counter() - started, 3)

    ranges = _Ranges()
    transformer = pipe.transformer
    blocks = repeated_blocks(transformer)
    # a step's name ("hit"/"computed") is known only after its first block decided: every step opens a
    # plain "step" range, and _summarize names them from the decisions, in call order
    ranges.around(transformer, "step")
    ranges.around(blocks[0], "first block")
    for block in blocks[1:]:
        ranges.around(block, "other blocks")
    profiles, tables = [], {}
    try:
        with _wrapped_decode(pipe.vae):
            for state, run in states:
                profile, tables[state] = profile_generation(run, config.device, log, state)
                profiles.append(profile)
    finally:
        ranges.remove()

    device_name = torch.cuda.get_device_name(config.device) if schedule.is_cuda(config.device) else "CPU"
    title = (f"{config.model} {config.resolution}, {config.steps} steps, quant {config.quant}, compile "
             f"{config.compile}, {device_name}, {time.strftime('%Y-%m-%d', time.gmtime())}")
    (args.out / "profile.md").write_text(render(profiles, title))
    (args.out / "profile.json").write_text(json.dumps(
        {"title": title, "warmup_s": warmup_s, "profiles": [asdict(p) for p in profiles]}, indent=2))
    for state, table in tables.items():
        (args.out / f"profiler-{state.replace(' ', '-')}.txt").write_text(table)
    print(render(profiles, title))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
