"""Stand-in for nunchaku.utils: the precision choice, with the engine's rule (fp4 on sm_120, else int4)."""

from __future__ import annotations

import torch


def get_precision(precision: str = "auto", device="cuda", pretrained_model_name_or_path=None) -> str:
    assert precision in ("auto", "int4", "fp4")
    if precision != "auto":
        return precision
    device = torch.device(device) if isinstance(device, str) else device
    major, minor = torch.cuda.get_device_capability(0 if device.index is None else device.index)
    return "fp4" if f"{major}{minor}" == "120" else "int4"
