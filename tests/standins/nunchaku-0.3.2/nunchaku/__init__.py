"""STAND-IN for nunchaku 0.3.2, for fbcache's CPU tests only. It is NOT nunchaku (see README.md).

Only the caching layer is mirrored, on plain diffusers Flux blocks. fbcache recognises the stand-in
by ``__fbcache_standin__`` and records it as a stand-in, never as nunchaku. (The real package does
not import ``__version__`` here; read it from ``nunchaku.__version__`` the module, see README.)
"""

from .__version__ import __version__

__fbcache_standin__ = True

__all__ = ["NunchakuFluxTransformer2dModel", "__version__"]


class NunchakuFluxTransformer2dModel:
    """Name-compatible placeholder: SVDQuant loading needs the real engine and a GPU."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        raise RuntimeError("the nunchaku stand-in cannot load SVDQuant weights; install the real engine")
