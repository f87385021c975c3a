"""Stand-in for nunchaku 0.3.2's ``caching/diffusers_adapters``: dispatch on the pipeline class name."""

from diffusers import DiffusionPipeline


def apply_cache_on_pipe(pipe: DiffusionPipeline, *args, **kwargs):
    """Flux* pipelines go to ``.flux`` (whatever their transformer is); Sana* to ``.sana``, which the
    stand-in does not have; anything else is a ValueError, as in the engine."""
    assert isinstance(pipe, DiffusionPipeline)
    name = type(pipe).__name__
    if name.startswith("Flux"):
        from .flux import apply_cache_on_pipe as apply_cache_on_pipe_fn
    elif name.startswith("Sana"):
        raise NotImplementedError("the nunchaku stand-in has no Sana adapter")
    else:
        raise ValueError(f"Unknown pipeline class name: {name}")
    return apply_cache_on_pipe_fn(pipe, *args, **kwargs)
