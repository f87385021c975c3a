"""Stand-in for nunchaku 0.3.2's ``get_precision``: "auto" is fp4 on sm_120, int4 on any other GPU."""

from __future__ import annotations

import warnings

import torch

FP4_SM = ("120",)


def get_precision(precision: str = "auto", device: str | torch.device = "cuda",
                  pretrained_model_name_or_path: str | None = None) -> str:
    assert precision in ("auto", "int4", "fp4")
    if precision == "auto":
        device = torch.device(device)
        major, minor = torch.cuda.get_device_capability(device.index or 0)
        precision = "fp4" if f"{major}{minor}" in FP4_SM else "int4"
    other = {"int4": "fp4", "fp4": "int4"}[precision]
    if pretrained_model_name_or_path is not None and other in str(pretrained_model_name_or_path):
        warnings.warn(f"the name says {other} but the model is loaded as {precision}")  # the engine only warns too
    return precision
