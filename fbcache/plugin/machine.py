"""What the machine is, and what it was doing: every probe of the hardware and the installed stack.

**What it is** (:func:`fbcache_machine_info`): the accelerator (``torch.cuda``, ``nvidia-smi``,
``/proc/cpuinfo``), the library versions and what the chosen registry entries report about
themselves, handed to :func:`fbcache.history.fingerprint.machine_entry`, which builds the run's
``machine_info["fbcache"]`` entry and fingerprint from them.

**Machine state as evidence**: what the GPU and host were doing before and after a benchmark.

A verdict is only as good as the machine it was measured on. Clocks that dropped (thermal or power
capping), another process on the GPU, or a loaded host explain a slow run better than any code
change, so they are recorded next to the timings (``extra_info["machine_state"]``) and a change
within one run becomes a warning in the results and in ``fbcache compare``. Everything here is best
effort: a missing ``nvidia-smi`` or one that hangs (bounded by a timeout) gives fewer fields, never
a failed run.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
from functools import cache
from typing import Any

from fbcache import backends, models, quant
from fbcache.config import HarnessConfig
from fbcache.history.fingerprint import machine_entry

GPU_FIELDS = ("clocks.sm", "clocks.mem", "temperature.gpu", "power.draw", "clocks_throttle_reasons.active")
NVIDIA_SMI_TIMEOUT_S = 5.0
#: the driver query runs once per session, before any model loads; a first nvidia-smi call can be slow
DRIVER_QUERY_TIMEOUT_S = 20.0
#: changes within one run worth a warning
SM_CLOCK_CHANGE = 0.05
TEMPERATURE_CHANGE_C = 10.0
LOAD_CHANGE = 1.0


def _nvidia_smi(arguments: list[str], timeout: float = NVIDIA_SMI_TIMEOUT_S) -> list[str] | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi", *arguments], capture_output=True, text=True, timeout=timeout,
                              check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------ what the machine is


@cache
def _nvidia_driver() -> str | None:
    lines = _nvidia_smi(["--query-gpu=driver_version", "--format=csv,noheader"], DRIVER_QUERY_TIMEOUT_S)
    return lines[0] if lines else None


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
    """The stack's versions, plus whatever the chosen cache backend and quantization mode report."""
    import torch

    # every run has recorded these five since the first; a key dropped would read as a version change
    versions: dict[str, str | None] = {
        "torch": torch.__version__,
        "diffusers": _version("diffusers"),
        "transformers": _version("transformers"),
        "torchao": _version("torchao"),
        "fbcache": _version("fbcache"),
    }
    versions.update(backends.get(config.cache_backend).versions())
    versions.update(quant.get(config.quant).versions())
    return versions


def fbcache_machine_info(config: HarnessConfig) -> dict[str, Any]:
    """The ``machine_info["fbcache"]`` entry of a run, fingerprint included."""
    return machine_entry(
        config,
        accelerator=accelerator_info(config.device),
        versions=library_versions(config),
        quant_config=quant.get(config.quant).settings(config),
        compile={"mode": config.compile, "backend": models.COMPILE_BACKEND,
                 "recipe": models.compile_recipe(config.compile)},
        cache_settings=backends.get(config.cache_backend).settings(config),
        timing_only=models.source_for(config.model).timing_only,
    )


# ------------------------------------------------------------------------------------ machine state


def _number(text: str) -> float | str:
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return text


def gpu_state(index: int) -> dict[str, Any]:
    """Clocks (MHz), temperature (C), power (W) and other compute processes of GPU ``index``."""
    state: dict[str, Any] = {}
    lines = _nvidia_smi([f"--id={index}", f"--query-gpu={','.join(GPU_FIELDS)}", "--format=csv,noheader,nounits"])
    if lines:
        for name, value in zip(GPU_FIELDS, lines[0].split(",")):
            state[name] = _number(value.strip())
    apps = _nvidia_smi([f"--id={index}", "--query-compute-apps=pid", "--format=csv,noheader"])
    if apps is not None:
        others = [pid for pid in apps if pid.isdigit() and int(pid) != os.getpid()]
        state["other_gpu_processes"] = len(others)
    return state


def sample(device: str) -> dict[str, Any]:
    """One snapshot of the machine: GPU state (CUDA devices), host load average, torch threads."""
    import torch

    state: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
    try:
        state["load_average_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    if str(device).startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        state.update(gpu_state(index))
    return state


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Warnings for what moved between two snapshots of one run."""
    warnings = []

    def pair(key: str) -> tuple[float, float] | None:
        a, b = before.get(key), after.get(key)
        return (a, b) if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None

    if (sm := pair("clocks.sm")) and sm[0] > 0 and abs(sm[1] / sm[0] - 1) > SM_CLOCK_CHANGE:
        warnings.append(f"SM clock moved {sm[0]:.0f} -> {sm[1]:.0f} MHz (lock clocks: docs/runner.md)")
    if (temp := pair("temperature.gpu")) and abs(temp[1] - temp[0]) > TEMPERATURE_CHANGE_C:
        warnings.append(f"GPU temperature moved {temp[0]:.0f} -> {temp[1]:.0f} C")
    if (apps := pair("other_gpu_processes")) and max(apps) > 0:
        warnings.append(f"other processes on the GPU: {apps[0]:.0f} before, {apps[1]:.0f} after")
    if (load := pair("load_average_1m")) and abs(load[1] - load[0]) > LOAD_CHANGE:
        warnings.append(f"host load average moved {load[0]:.2f} -> {load[1]:.2f}")
    if (threads := pair("torch_threads")) and threads[0] != threads[1]:
        warnings.append(f"torch threads changed {threads[0]:.0f} -> {threads[1]:.0f}")
    return warnings


def evidence(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {"before": before, "after": after, "warnings": changes(before, after)}
