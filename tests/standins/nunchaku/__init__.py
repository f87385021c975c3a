"""STAND-IN for the nunchaku engine, for fbcache's CPU tests only. It is NOT nunchaku.

The real engine (nunchaku-tech/nunchaku) needs CUDA kernels this machine does not have. This
package reproduces the public API fbcache calls - ``caching.diffusers_adapters.apply_cache_on_pipe``,
``caching.utils.get_can_use_cache``, ``utils.get_precision`` - on plain diffusers Flux blocks, so
the adapter code paths run in CI. It cannot quantize: ``NunchakuFluxTransformer2dModel`` refuses.
fbcache recognises it by ``__fbcache_standin__`` and records it as a stand-in, never as nunchaku.
"""

__fbcache_standin__ = True
__version__ = "0.0+standin"


class NunchakuFluxTransformer2dModel:
    """Name-compatible placeholder: SVDQuant loading needs the real engine and a GPU."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        raise RuntimeError("the nunchaku stand-in cannot load SVDQuant weights; install the real engine")
