"""Which ``nunchaku`` is installed, which release, and can this GPU run it? Answered without weights.

Three different things answer to ``import nunchaku``:

- the real engine (nunchaku-tech/nunchaku), installed from its GitHub release wheels;
- an unrelated PyPI project of the same name (piece-wise linear segmentation), which
  ``pip install nunchaku`` gives you;
- fbcache's test stand-ins (``tests/standins/nunchaku-<version>``), which mirror one release's
  caching layer on plain diffusers blocks so the adapter can be tested on a CPU. Never the engine.

The engine's release is read from ``nunchaku/__version__.py`` (``nunchaku/__init__.py`` does not
import it); the wheel's metadata says e.g. ``1.1.0+torch2.7``, and the unrelated PyPI package
answers that query too, so it is only a fallback.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = (
    "install the real engine from its release wheels (https://github.com/nunchaku-tech/nunchaku/releases), "
    "choosing the wheel for your Python, torch and CUDA versions; `pip install nunchaku` installs an unrelated "
    "package"
)

#: SVDQuant 4-bit kernels by GPU architecture (compute capability as "major minor")
SUPPORTED_SM: dict[str, str] = {"75": "int4", "80": "int4", "86": "int4", "89": "int4", "120": "fp4", "121": "fp4"}

#: the oldest release whose cache takes a new threshold on the same pipeline (nunchaku PR #577)
MIN_SUPPORTED = (0, 3, 2)


@dataclass(frozen=True)
class NunchakuEngine:
    status: str  # "real", "standin", "unrelated" or "absent"
    version: str = ""

    @property
    def label(self) -> str:
        """What the history records as the nunchaku version."""
        return {
            "real": self.version or "unknown",
            "standin": f"stand-in of {self.version or 'an unknown release'} (tests only, not the real engine)",
            "unrelated": f"unrelated PyPI package {self.version}".strip(),
            "absent": "not installed",
        }[self.status]

    @property
    def release(self) -> tuple[int, int, int] | None:
        return parse_release(self.version)


def parse_release(version: str) -> tuple[int, int, int] | None:
    """``"1.1.0+torch2.7"`` -> (1, 1, 0); ``"1.2.0dev"`` -> (1, 2, 0); None when there is no X.Y.Z."""
    match = re.match(r"\s*v?(\d+)\.(\d+)\.(\d+)", version or "")
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def _declared_version() -> str:
    """``nunchaku/__version__.py``'s ``__version__``, or "" when the package has none."""
    try:
        return str(importlib.import_module("nunchaku.__version__").__version__)
    except (ImportError, AttributeError):
        return ""


def detect() -> NunchakuEngine:
    """Classify ``nunchaku`` by its files, importing it only if it has the engine's layout."""
    spec = importlib.util.find_spec("nunchaku")
    if spec is None or not spec.submodule_search_locations:
        return NunchakuEngine("absent")
    package_dir = Path(list(spec.submodule_search_locations)[0])
    try:
        wheel_version = importlib.metadata.version("nunchaku")
    except importlib.metadata.PackageNotFoundError:
        wheel_version = ""
    if not (package_dir / "caching").is_dir():
        return NunchakuEngine("unrelated", wheel_version)
    module = importlib.import_module("nunchaku")
    declared = _declared_version()
    if getattr(module, "__fbcache_standin__", False):
        return NunchakuEngine("standin", declared)
    return NunchakuEngine("real", declared or wheel_version)


def unsupported_release(version: str) -> str | None:
    """Why fbcache cannot sweep thresholds with this release's cache, or None when it can."""
    release = parse_release(version)
    if release is None:
        return f"cannot read nunchaku's release from nunchaku/__version__.py (got {version!r})"
    if release >= MIN_SUPPORTED:
        return None
    shown = ".".join(map(str, release))
    if release < (0, 3, 0):
        why = "re-applying its cache keeps the first threshold for every later one"
    else:
        why = "re-applying its cache for the next threshold crashes (nunchaku #437)"
    return f"nunchaku {shown} is not supported: {why}; upgrade to nunchaku >= 0.3.2"


def precision_for_capability(capability: tuple[int, int]) -> str:
    """'int4' or 'fp4' for this GPU; raises ValueError where the engine has no 4-bit kernels."""
    sm = f"{capability[0]}{capability[1]}"
    if sm not in SUPPORTED_SM:
        supported = ", ".join(f"sm_{k} ({v})" for k, v in SUPPORTED_SM.items())
        raise ValueError(f"nunchaku has no kernels for sm_{sm}; it supports {supported}")
    return SUPPORTED_SM[sm]
