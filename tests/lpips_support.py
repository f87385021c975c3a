"""LPIPS in the tests: torchvision made importable, generated backbone weights, and no network.

- :func:`use_torchvision`: torchvision as installed, else from the folder ``scripts/test`` fills
  (``<venv>/fbcache-torchvision``, or ``FBCACHE_TEST_TORCHVISION``), which holds torchvision and the
  ``lpips`` package outside the tests' environment. PyPI's torchvision is built against the CUDA build of
  torch: beside the CPU build its compiled operators do not load, and its import stops at the first
  operator it registers a fake for (``torchvision::nms``). Only then are those two operators' schemas
  declared here, so its Python part (AlexNet among it) imports; no test uses its compiled operators.
- :func:`write_backbone`: an AlexNet state dict of torchvision's shapes, seeded random, under the name
  torchvision's pretrained file has: what a test can have where no pretrained weights can be fetched.
- :func:`refuse_network`: every connection to a host other than this machine fails, so code that tried to
  download a weight breaks instead of passing. ``-p plugins.offline_lpips`` does this and
  :func:`use_torchvision` in a ``pytest benchmarks`` subprocess.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

#: the operators torchvision registers fakes for at import, unguarded (torchvision/_meta_registrations.py)
_OPERATORS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
              "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
_LIBRARIES: list[Any] = []


def side_folder() -> Path:
    return Path(os.environ.get("FBCACHE_TEST_TORCHVISION") or Path(sys.prefix) / "fbcache-torchvision")


def _declare_operators() -> None:
    import torch

    if _LIBRARIES:
        return
    library = torch.library.Library("torchvision", "DEF")
    for schema in _OPERATORS:
        library.define(schema)
    _LIBRARIES.append(library)  # a Library removes its definitions when it is collected


def _forget_torchvision() -> None:
    """A failed import leaves the submodules it had imported behind; the next import starts afresh."""
    for module in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[module]


def use_torchvision() -> str | None:
    """Make ``import torchvision`` and ``import lpips`` work; None, or why they cannot."""
    import importlib

    folder = side_folder()
    if folder.is_dir() and str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
        importlib.invalidate_caches()
    try:
        import torchvision  # noqa: F401
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        _forget_torchvision()
        _declare_operators()
        import torchvision  # noqa: F401
    except ImportError:
        return f"torchvision is not installed, and {folder} does not hold it (scripts/test fills it)"
    return None


def write_backbone(folder: Path, seed: int = 0) -> Path:
    """A seeded random AlexNet state dict under torchvision's pretrained file name, in ``folder``."""
    import torch
    import torchvision

    from fbcache.metrics.lpips import BACKBONE

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    path = folder / BACKBONE
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


class NetworkRefused(OSError):
    """A connection to a host that is not this machine: a test run must not download anything."""


def refuse_network() -> None:
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1")) \
                or self.family == socket.AF_UNIX:
            return real_connect(self, address)
        raise NetworkRefused(f"connection to {address!r} refused: nothing is downloaded during a test run")

    socket.socket.connect = connect  # type: ignore[method-assign]
