"""Registers the fbcache pytest plugin for every pytest run in this repository."""

pytest_plugins = ["fbcache.plugin"]
