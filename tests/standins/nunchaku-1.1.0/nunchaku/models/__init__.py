"""Stand-in for nunchaku.models: only the V2 Flux transformer class, as a plain diffusers model."""
