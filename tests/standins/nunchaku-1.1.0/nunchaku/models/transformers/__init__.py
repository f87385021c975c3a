"""Stand-in for nunchaku.models.transformers."""
