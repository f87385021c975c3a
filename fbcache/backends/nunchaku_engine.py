"""Which ``nunchaku`` is installed, and can this GPU run it? Answered without loading any weights.

Three different things answer to ``import nunchaku``:

- the real engine (nunchaku-tech/nunchaku), installed from its GitHub release wheels;
- an unrelated PyPI project of the same name (piece-wise linear segmentation), which
  ``pip install nunchaku`` gives you;
- fbcache's test stand-in (``tests/standins/nunchaku``), which mimics the engine's caching API on
  plain diffusers blocks so the adapter code can be tested on CPU. It is never the real engine.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = (
    "install the real engine from its release wheels (https://github.com/nunchaku-tech/nunchaku/releases), "
    "choosing the wheel for your Python, torch and CUDA versions; `pip install nunchaku` installs an unrelated "
    "package"
)

#: SVDQuant 4-bit kernels by GPU architecture (compute capability as "major minor")
SUPPORTED_SM: dict[str, str] = {"75": "int4", "80": "int4", "86": "int4", "89": "int4", "120": "fp4", "121": "fp4"}


@dataclass(frozen=True)
class NunchakuEngine:
    status: str  # "real", "standin", "unrelated" or "absent"
    version: str = ""

    @property
    def label(self) -> str:
        """What the history records as the nunchaku version."""
        return {
            "real": self.version or "unknown",
            "standin": "stand-in (tests only, not the real engine)",
            "unrelated": f"unrelated PyPI package {self.version}".strip(),
            "absent": "not installed",
        }[self.status]


def detect() -> NunchakuEngine:
    """Classify ``nunchaku`` by its files, importing it only if it has the engine's layout."""
    spec = importlib.util.find_spec("nunchaku")
    if spec is None or not spec.submodule_search_locations:
        return NunchakuEngine("absent")
    package_dir = Path(list(spec.submodule_search_locations)[0])
    try:
        version = importlib.metadata.version("nunchaku")
    except importlib.metadata.PackageNotFoundError:
        version = ""
    if not (package_dir / "caching").is_dir():
        return NunchakuEngine("unrelated", version)
    module = importlib.import_module("nunchaku")
    if getattr(module, "__fbcache_standin__", False):
        return NunchakuEngine("standin", getattr(module, "__version__", ""))
    return NunchakuEngine("real", version or getattr(module, "__version__", ""))


def precision_for_capability(capability: tuple[int, int]) -> str:
    """'int4' or 'fp4' for this GPU; raises ValueError where the engine has no 4-bit kernels."""
    sm = f"{capability[0]}{capability[1]}"
    if sm not in SUPPORTED_SM:
        supported = ", ".join(f"sm_{k} ({v})" for k, v in SUPPORTED_SM.items())
        raise ValueError(f"nunchaku has no kernels for sm_{sm}; it supports {supported}")
    return SUPPORTED_SM[sm]
