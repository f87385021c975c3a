"""What the history must know about a run: accelerator, library versions, model and fingerprint.

The ``fbcache`` entry that :func:`fbcache_machine_info` returns is stored in pytest-benchmark's
``machine_info``. Its ``fingerprint`` names what makes two runs comparable at all: runs with
different fingerprints are never compared (unless forced) and never mixed in a history.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import shutil
import subprocess
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the history verbs read fingerprints without building a harness (no torch import)
    from fbcache.config.harness import HarnessConfig

FINGERPRINT_FIELDS = ("accelerator", "model", "quantization", "cache_backend", "workload")
#: fields that only some runs have (a backend with settings); absent ones do not change the id
OPTIONAL_FIELDS = ("cache_settings", "quant_config", "compile", "procedure")


@cache
def _nvidia_driver() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def accelerator_info(device: str) -> dict[str, Any]:
    import torch

    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        major, minor = torch.cuda.get_device_capability(index)
        return {
            "name": torch.cuda.get_device_name(index),
            "capability": f"sm_{major}{minor}",
            "driver": _nvidia_driver(),
            "cuda": torch.version.cuda,
        }
    return {"name": f"cpu: {_cpu_name()}", "capability": None, "driver": None, "cuda": None}


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def library_versions(config: HarnessConfig) -> dict[str, str | None]:
    """The stack's versions, plus whatever the chosen cache backend reports about itself."""
    import torch

    from fbcache import backends

    versions: dict[str, str | None] = {
        "torch": torch.__version__,
        "diffusers": _version("diffusers"),
        "transformers": _version("transformers"),
        "torchao": _version("torchao"),
        "fbcache": _version("fbcache"),
    }
    versions.update(backends.get(config.cache_backend).versions())
    if config.quant == "nunchaku":
        from fbcache.backends.nunchaku_engine import detect

        versions["nunchaku"] = detect().label
    return versions


def workload_key(config: HarnessConfig) -> str:
    """Steps, resolution, seed and the prompt's hash, or the prompt set's digest (prompts and seeds).

    A shard of a set has the whole set's key: the shards of one sweep and an unsharded run of it compare.
    """
    head = f"{config.steps} steps, {config.resolution}, seed {config.seed}"
    if config.prompt_set is not None:
        return f"{head}, prompt set {config.prompt_set.digest} ({len(config.prompt_set.cases)} prompts)"
    return f"{head}, prompt {prompt_id(config.prompt)}"


def prompt_id(prompt: str) -> str:
    """Short hash of one prompt's text, as the fingerprint and bounds profiles name it."""
    return hashlib.sha256(prompt.encode()).hexdigest()[:8]


def prompts_fact(workload: Mapping[str, Any]) -> str | None:
    """What a run generates from, as a bounds profile's ``[match] prompts`` names it: "prompt f0979f5e"
    (one prompt, its hash) or "prompt set e7f6b640" (a set, its digest of prompts and seeds)."""
    prompt_set = workload.get("prompt_set")
    if isinstance(prompt_set, Mapping) and prompt_set.get("digest"):
        return f"prompt set {prompt_set['digest']}"
    prompt = workload.get("prompt")
    return f"prompt {prompt_id(prompt)}" if isinstance(prompt, str) else None


def procedure_key(config: HarnessConfig) -> str:
    """How the numbers were taken: rounds, the thresholds timed together, the schedule, CPU threads.

    These change the timings without any code change (interleaving eight benchmarks heats a GPU
    differently from interleaving two), so runs that differ here are a different history; runs saved
    before this field existed keep theirs. Library versions are deliberately *not* here: a torch
    upgrade that slows the sweep is exactly what the nightly job must catch, so a version change
    stays in the same history and is named in the compare's notes instead.
    """
    thresholds = " ".join(f"{t:g}" for t in config.thresholds)
    threads = "default" if config.threads is None or not config.device.startswith("cpu") else str(config.threads)
    schedule = "interleaved" if config.interleaved else "sequential"
    clock = ", CPU clock" if config.clock == "cpu" else ""  # wall-clock runs keep the ids they had
    return (f"{config.rounds} rounds + {config.warmup_rounds} warm-up, {schedule}, thresholds {thresholds}, "
            f"threads {threads}{clock}")


def fbcache_machine_info(config: HarnessConfig) -> dict[str, Any]:
    """The ``machine_info["fbcache"]`` entry of a run, fingerprint included."""
    from fbcache import backends
    from fbcache.models import compile as compile_modes
    from fbcache.models.quantization import config_repr

    accelerator = accelerator_info(config.device)
    quant_config = config_repr(config.quant)
    info: dict[str, Any] = {
        "accelerator": accelerator,
        "versions": library_versions(config),
        "model": config.model,
        "quantization": config.quant,
        #: repr of the torchao config applied, every field included (None: no torchao quantization)
        "quant_config": quant_config,
        "compile": {"mode": config.compile, "backend": compile_modes.BACKEND,
                    "recipe": compile_modes.describe(config.compile)},
        "cache_backend": config.cache_backend,
        "cache_settings": backends.get(config.cache_backend).settings(config),
        "workload": {"steps": config.steps, "resolution": config.resolution, "seed": config.seed,
                     "prompt": config.prompt},
        "timing_only": config.timing_only,
        "procedure": {"rounds": config.rounds, "warmup_rounds": config.warmup_rounds,
                      "thresholds": list(config.thresholds), "interleave": config.interleaved,
                      "threads": config.threads if config.device.startswith("cpu") else None,
                      "clock": config.clock},
    }
    if config.prompt_set is not None:
        info["workload"]["prompt_set"] = config.prompt_set.describe()
    if config.shard is not None:  # not in the fingerprint: `fbcache merge` drops it from the merged run
        info["shard"] = {**config.shard.describe(), "device": config.device}
    info["fingerprint"] = {
        "accelerator": accelerator["name"],
        "model": config.model,
        "quantization": config.quant,
        "cache_backend": config.cache_backend,
        "workload": workload_key(config),
        "procedure": procedure_key(config),
    }
    if info["cache_settings"]:
        info["fingerprint"]["cache_settings"] = json.dumps(info["cache_settings"], sort_keys=True)
    # absent for bf16 and eager runs, so their fingerprints (and histories) stay what they were
    if quant_config is not None:
        info["fingerprint"]["quant_config"] = quant_config
    if config.compile != "none":
        info["fingerprint"]["compile"] = f"{config.compile} ({compile_modes.BACKEND})"
    return info


#: the facts :func:`match_facts` can return: the keys a bounds profile's ``[match]`` may use
MATCH_KEYS = ("model", "quantization", "compile", "cache_backend", "accelerator", "steps", "resolution", "prompts")


def match_facts(info: Mapping[str, Any]) -> dict[str, str]:
    """What a bounds profile's ``[match]`` is compared with, from a run's ``machine_info["fbcache"]``.

    The one place these facts are built: the plugin (live run), ``--fbcache-calibrate`` and
    ``fbcache calibrate`` (saved run) all read them from the same entry.
    """
    accelerator = str((info.get("accelerator") or {}).get("name", ""))
    workload = info.get("workload") or {}
    facts = {"model": info.get("model"), "quantization": info.get("quantization"),
             "compile": (info.get("compile") or {}).get("mode", "none"),
             "cache_backend": info.get("cache_backend"),
             "accelerator": "cpu" if accelerator.startswith("cpu") else accelerator,
             "steps": workload.get("steps"), "resolution": workload.get("resolution"),
             "prompts": prompts_fact(workload)}
    assert tuple(facts) == MATCH_KEYS
    return {key: str(value) for key, value in facts.items() if value not in (None, "")}


def fingerprint_of(machine_info: Mapping[str, Any]) -> dict[str, str] | None:
    """The fingerprint stored in a run's machine_info, or None for a run fbcache did not write."""
    entry = machine_info.get("fbcache") if isinstance(machine_info, Mapping) else None
    fingerprint = entry.get("fingerprint") if isinstance(entry, Mapping) else None
    return dict(fingerprint) if isinstance(fingerprint, Mapping) else None


def fingerprint_id(fingerprint: Mapping[str, str]) -> str:
    """A short stable id, for grouping runs in a history."""
    fields = {k: fingerprint.get(k) for k in FINGERPRINT_FIELDS}
    fields.update({k: fingerprint[k] for k in OPTIONAL_FIELDS if k in fingerprint})
    payload = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def fingerprint_differences(current: Mapping[str, str] | None, other: Mapping[str, str] | None) -> list[str]:
    """Human-readable field differences; a missing fingerprint is itself a difference."""
    if current is None or other is None:
        return ["fingerprint: missing (a run that fbcache did not write)"]
    return [f"{key}: {other.get(key)!r} (saved) vs {current.get(key)!r} (now)"
            for key in FINGERPRINT_FIELDS + OPTIONAL_FIELDS if current.get(key) != other.get(key)]
