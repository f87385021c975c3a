"""Prompt sets shipped with fbcache (``--fbcache-prompts default``): one ``<name>.txt`` per set."""
