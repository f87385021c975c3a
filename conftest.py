"""Registers the fbcache pytest plugin when this checkout is used without installing the package.

An installed fbcache registers itself through its ``pytest11`` entry point; registering it here as
well would load the same hooks twice, so this file only steps in when the entry point is absent.
"""

from importlib.metadata import entry_points

if not any(ep.value == "fbcache.plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["fbcache.plugin"]
