"""Stand-in for nunchaku.caching (empty in the engine too)."""
