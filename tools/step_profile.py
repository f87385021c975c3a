"""Where one generation's time goes, uncached and at one threshold, outside a sweep: the harness's own
profiled generation (``--fbcache-breakdown``, fbcache/explain.py), called by hand.

    python -m tools.step_profile --out DIR --threshold 0.8 model=flux-random device=cuda quant=torchao-fp8 compile=regional

Builds the model through the harness (same options as ``--fbcache-*``, given as ``name=value``), makes one
untimed generation per cache state (compiling what ``compile`` asks for), then profiles one uncached and one
cached generation. Writes ``profile.json`` (each generation's parts, as a sweep's records keep them) and
``profile.md`` (the breakdown table a sweep's results.md shows).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from fbcache import explain, markup
from fbcache.configure import build_config
from fbcache.history import BenchRecord
from fbcache.plugin import schedule
from fbcache.plugin.session import FBCacheSession


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
    pipe, backend = session.model.pipe, session.backend

    def generate() -> Any:
        return schedule.generate_once(session, torch.Generator("cpu").manual_seed(config.seed))

    # untimed, one per cache state: compiles what each needs, and a NaN image stops the tool here
    schedule.uncached_image(session)
    schedule.cached_image(session, args.threshold)
    states: tuple[float | None, ...] = (None, args.threshold)
    records = [BenchRecord(state, config.model, config.quant, config.cache_backend, config.steps, config.resolution,
                           config.seed, compile_mode=config.compile,
                           profile=explain.breakdown(pipe, backend, state, generate, config.device,
                                                     schedule.clock(config.clock)))
               for state in states]
    device = torch.cuda.get_device_name(config.device) if schedule.is_cuda(config.device) else "CPU"
    title = (f"{config.model} {config.resolution}, {config.steps} steps, quant {config.quant}, compile "
             f"{config.compile}, {device}, {time.strftime('%Y-%m-%d', time.gmtime())}")
    table = markup.table(explain.BREAKDOWN_HEADER, explain.breakdown_rows(records))
    (args.out / "profile.md").write_text(f"# {title}\n\n{table}\n")
    (args.out / "profile.json").write_text(json.dumps(
        {"title": title, "profiles": {record.label: record.profile for record in records}}, indent=2))
    print(f"{title}\n\n{table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
