"""What makes two runs comparable: the ``machine_info["fbcache"]`` entry of a run and its fingerprint.

The entry (stored in pytest-benchmark's ``machine_info``) is computed here from what it is given:
the configuration, and what :mod:`fbcache.plugin.machine` found out about the machine and the
registries (accelerator, versions, settings). Its ``fingerprint`` names what makes two runs
comparable at all: runs with different fingerprints are never compared (unless forced) and never
mixed in a history.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from fbcache.config import HarnessConfig, threshold_to_json

FINGERPRINT_FIELDS = ("accelerator", "model", "quantization", "cache_backend", "workload")
#: fields that only some runs have (a backend with settings); absent ones do not change the id
OPTIONAL_FIELDS = ("cache_settings", "quant_config", "compile", "procedure")


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


def machine_entry(config: HarnessConfig, *, accelerator: Mapping[str, Any], versions: Mapping[str, str | None],
                  quant_config: str | None, compile: Mapping[str, Any], cache_settings: Mapping[str, Any],
                  timing_only: bool) -> dict[str, Any]:
    """The ``machine_info["fbcache"]`` entry of a run, fingerprint included.

    ``accelerator``: its ``name`` (and capability, driver, CUDA); ``quant_config``: every setting of the
    quantization applied (None: none recorded); ``compile``: mode, torch.compile backend and recipe;
    ``cache_settings``: every setting that changes the cache's behaviour.
    """
    info: dict[str, Any] = {
        "accelerator": dict(accelerator),
        "versions": dict(versions),
        "model": config.model,
        "quantization": config.quant,
        #: repr of the quantization config applied, every field included (None: nothing recorded)
        "quant_config": quant_config,
        "compile": dict(compile),
        "cache_backend": config.cache_backend,
        "cache_settings": dict(cache_settings),
        "workload": {"steps": config.steps, "resolution": config.resolution, "seed": config.seed,
                     "prompt": config.prompt},
        "timing_only": timing_only,
        "procedure": {"rounds": config.rounds, "warmup_rounds": config.warmup_rounds,
                      "thresholds": [threshold_to_json(t) for t in config.thresholds], "interleave": config.interleaved,
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
        info["fingerprint"]["compile"] = f"{config.compile} ({compile['backend']})"
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


#: fingerprint fields whose ``machine_info["fbcache"]`` entry is a table of settings: a change names the setting
DETAILED_FIELDS = ("workload", "procedure", "cache_settings")


def _shown(value: Any, limit: int = 48) -> str:
    text = "(none)" if value is None else json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fingerprint_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """What changed from one run's fingerprint to another's, as ``field: old -> new``, from their machine_info.

    For workload, procedure and cache settings the settings that changed are named (``procedure: rounds 2 -> 3``),
    not the two summary strings the fingerprint hashes.
    """
    old, new = fingerprint_of(before) or {}, fingerprint_of(after) or {}
    old_info, new_info = before.get("fbcache") or {}, after.get("fbcache") or {}
    changes = []
    for key in FINGERPRINT_FIELDS + OPTIONAL_FIELDS:
        if old.get(key) == new.get(key):
            continue
        old_detail, new_detail = old_info.get(key), new_info.get(key)
        settings = []
        if key in DETAILED_FIELDS and isinstance(old_detail, Mapping) and isinstance(new_detail, Mapping):
            settings = [f"{name} {_shown(old_detail.get(name))} -> {_shown(new_detail.get(name))}"
                        for name in sorted(set(old_detail) | set(new_detail))
                        if old_detail.get(name) != new_detail.get(name)]
        changes.append(f"{key}: " + (", ".join(settings) if settings
                                     else f"{_shown(old.get(key), 80)} -> {_shown(new.get(key), 80)}"))
    return changes
