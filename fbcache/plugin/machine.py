"""Machine state as evidence: what the GPU and host were doing before and after a benchmark.

A verdict is only as good as the machine it was measured on. Clocks that dropped (thermal or power
capping), another process on the GPU, or a loaded host explain a slow run better than any code
change, so they are recorded next to the timings (``extra_info["machine_state"]``) and a change
within one run becomes a warning in the results and in ``fbcache compare``. Everything here is best
effort: a missing ``nvidia-smi`` or one that hangs (bounded by a timeout) gives fewer fields, never
a failed run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

GPU_FIELDS = ("clocks.sm", "clocks.mem", "temperature.gpu", "power.draw", "clocks_throttle_reasons.active")
NVIDIA_SMI_TIMEOUT_S = 5.0
#: changes within one run worth a warning
SM_CLOCK_CHANGE = 0.05
TEMPERATURE_CHANGE_C = 10.0
LOAD_CHANGE = 1.0


def _nvidia_smi(arguments: list[str]) -> list[str] | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi", *arguments], capture_output=True, text=True,
                              timeout=NVIDIA_SMI_TIMEOUT_S, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


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
