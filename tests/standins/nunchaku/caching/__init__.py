"""Stand-in for nunchaku.caching."""
