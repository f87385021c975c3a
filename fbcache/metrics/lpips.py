"""LPIPS against the uncached image: torchmetrics' ``LearnedPerceptualImagePatchSimilarity`` with the
AlexNet backbone (``net_type="alex"``, inputs in [0, 1]), as the SVDQuant engine's own tests judge a cached
FLUX image. 0 for identical images; lower is better. Opt-in: name it in ``--fbcache-metrics``.

Its weights are read from disk, never downloaded during a run:

- the backbone, torchvision's ImageNet AlexNet (:data:`BACKBONE`), from ``--fbcache-lpips-weights DIR``
  (``FBCACHE_LPIPS_WEIGHTS``), else from the torch hub cache (``torch.hub.get_dir()/checkpoints``, where
  torchvision itself looks);
- the LPIPS linear layers, ``lpips_models/alex.pth``, which torchmetrics ships inside its wheel.

Preflight checks both files (and that torchvision imports) before any model is built, and names the one
command that fetches the backbone. The network is built once per session, after the clock, and kept on
the CPU between comparisons: it moves to the run's device for each one and back, so no timed round's
peak GPU memory holds it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fbcache.config import HarnessConfig, OptionSpec
from fbcache.errors import BrokenRunError, ConfigError
from fbcache.metrics import ImageMetric, check_pair

#: torchvision's file name for ``AlexNet_Weights.IMAGENET1K_V1`` (its URL's last part, hash prefix included)
BACKBONE = "alexnet-owt-7be5be79.pth"
NET: Literal["alex"] = "alex"
#: fetches the backbone into DIR, on a machine with internet (torchvision knows the address)
FETCH = ("python -c \"import torch, torchvision; torch.hub.download_url_to_file("
         f"torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url, '{{dir}}/{BACKBONE}')\"")


def _directory(option: str, raw: str) -> Path:
    return Path(raw).expanduser().resolve()


WEIGHTS = OptionSpec("lpips_weights", f"directory holding LPIPS's AlexNet backbone {BACKBONE} (read, never "
                     "downloaded)", "", "DIR", nightly=True, default_help="the torch hub cache, TORCH_HOME/hub/checkpoints",
                     parse=_directory)


def hub_checkpoints() -> Path:
    """Where torchvision looks for (and would download) its pretrained weights."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_dir(config: HarnessConfig) -> Path:
    given = config.option(WEIGHTS)
    return given if given is not None else hub_checkpoints()


def linear_layers() -> Path | None:
    """The LPIPS linear layers shipped in torchmetrics' wheel (None without torchmetrics)."""
    spec = importlib.util.find_spec("torchmetrics")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "functional" / "image" / "lpips_models" / f"{NET}.pth"


def _others() -> str:
    from fbcache.metrics import names

    return f"names from {', '.join(n for n in names() if n != 'lpips')}"


def preflight(config: HarnessConfig) -> None:
    """torchvision imports, and both weight files are on disk; else one line naming what is missing."""
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # a torchvision built for another torch fails here, not only with ImportError
        import torch

        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ConfigError("--fbcache-metrics", "lpips", _others(),
                          f"torchvision does not import ({first}): install the torchvision release built for "
                          f"torch {torch.__version__}") from None
    layers = linear_layers()
    if layers is None or not layers.is_file():
        raise ConfigError("--fbcache-metrics", "lpips", _others(),
                          f"torchmetrics has no LPIPS linear layers at {layers}: pip install 'torchmetrics>=1.3'")
    folder = weights_dir(config)
    if not (folder / BACKBONE).is_file():
        raise ConfigError(WEIGHTS.cli, str(folder), f"a directory holding {BACKBONE}",
                          f"LPIPS needs its AlexNet backbone {BACKBONE} there and nothing is downloaded during a "
                          f"run; on a machine with internet: {FETCH.format(dir=folder)}")
    try:
        build(folder)  # kept for the session: a file that is no AlexNet state dict is refused now, not after the sweep
    except Exception as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ConfigError(WEIGHTS.cli, str(folder), f"a directory holding torchvision's {BACKBONE}",
                          f"{BACKBONE} there does not load as torchvision's AlexNet: {first[:200]}") from None


@contextlib.contextmanager
def _offline_hub(folder: Path) -> Iterator[None]:
    """torch.hub resolves the backbone to ``folder``'s file, and any download attempt is an error."""
    import torch

    previous = torch.hub.get_dir()
    download = torch.hub.download_url_to_file

    def refuse(url: str, *args: Any, **kwargs: Any) -> None:
        raise BrokenRunError(f"LPIPS tried to download {url}: its weights must be on disk ({WEIGHTS.cli})")

    with tempfile.TemporaryDirectory(prefix="fbcache-lpips-hub-") as scratch:
        hub = previous
        if folder.resolve() != (Path(previous) / "checkpoints").resolve():
            hub = scratch  # a hub whose checkpoints/ holds the given file, where torchvision looks for it
            (Path(hub) / "checkpoints").mkdir()
            os.symlink(folder.resolve() / BACKBONE, Path(hub) / "checkpoints" / BACKBONE)
        torch.hub.set_dir(hub)
        torch.hub.download_url_to_file = refuse
        try:
            yield
        finally:
            torch.hub.download_url_to_file = download
            torch.hub.set_dir(previous)


_BUILT: dict[Path, Any] = {}


def build(folder: Path) -> Any:
    """torchmetrics' LPIPS (AlexNet, inputs in [0, 1]) from the backbone in ``folder``, on the CPU, eval mode;
    built once per folder and process (preflight's serves the session)."""
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    key = folder.resolve()
    if key not in _BUILT:
        with _offline_hub(key):
            _BUILT[key] = LearnedPerceptualImagePatchSimilarity(net_type=NET, normalize=True).eval()
    return _BUILT[key]


class Scorer:
    """LPIPS of RGB uint8 images on one device; the network waits on the CPU between calls."""

    def __init__(self, folder: Path, device: str = "cpu") -> None:
        self.metric = build(folder)
        self.device = device

    def __call__(self, image: np.ndarray, reference: np.ndarray) -> float:
        import torch

        check_pair(image, reference)
        metric = self.metric.to(self.device)
        try:
            with torch.no_grad():
                metric.update(_tensor(image, self.device), _tensor(reference, self.device))
                return float(metric.compute())
        finally:
            metric.reset()
            self.metric = metric.to("cpu")


def _tensor(image: np.ndarray, device: str) -> Any:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1], as torchvision's ToTensor gives a PNG."""
    import torch

    return torch.tensor(image, device=device).permute(2, 0, 1)[None].float() / 255.0  # a copy: PIL's arrays are read-only


def prepare(config: HarnessConfig) -> Callable[[np.ndarray, np.ndarray], float]:
    """The session's LPIPS: weights from the run's directory, computed on the run's device."""
    return Scorer(weights_dir(config), config.device)


def lpips(image: np.ndarray, reference: np.ndarray) -> float:
    """LPIPS on the CPU with the backbone in the torch hub cache (a run uses :func:`prepare`)."""
    return Scorer(hub_checkpoints())(image, reference)


# lower is better; 0 for identical images. Opt-in: it needs torchvision and a backbone on disk, and the default
# sweep stays as fast as it is. calibrate: measured x 1.15, the margin the SVDQuant engine's tests allow.
METRIC = ImageMetric(name="lpips", title="LPIPS", compute=lpips, tolerance=0.02, calibrate_margin=0.15,
                     relative_margin=True, higher_is_better=False, default=False,
                     requires={"torchmetrics": "pip install 'fbcache[lpips]'",
                               "torchvision": "pip install the torchvision release built for your torch"},
                     options=(WEIGHTS,), preflight=preflight, prepare=prepare)
