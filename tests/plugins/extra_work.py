"""Test hook: every transformer forward also multiplies two ``FBCACHE_TEST_EXTRA_WORK`` x that square matrices
(``-p plugins.extra_work``): real arithmetic the FLOPs count sees, as a change that adds work to each step
would (tools/slowdown_plugin.py's CPU delay is a busy loop, which adds time and no FLOPs)."""

from __future__ import annotations

import os
from typing import Any


def pytest_configure(config: Any) -> None:
    size = int(os.environ.get("FBCACHE_TEST_EXTRA_WORK", "0") or 0)
    if size <= 0:
        return
    import torch
    from diffusers import FluxTransformer2DModel

    original = FluxTransformer2DModel.forward

    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        weight = next(self.parameters())
        extra = torch.ones(size, size, dtype=weight.dtype, device=weight.device)
        torch.mm(extra, extra)
        return original(self, *args, **kwargs)

    FluxTransformer2DModel.forward = forward
