"""Stand-in for nunchaku.caching.diffusers_adapters: dispatch on the pipeline class name."""


def apply_cache_on_pipe(pipe, *args, **kwargs):
    if not type(pipe).__name__.startswith("Flux"):
        raise ValueError(f"Unknown pipeline class name: {type(pipe).__name__}")
    from .flux import apply_cache_on_pipe as apply_flux

    return apply_flux(pipe, *args, **kwargs)
