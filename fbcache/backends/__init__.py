"""The cache-backend registry: one file per backend, one line per backend in ``BUILTIN``.

A backend module defines ``SPEC`` (a :class:`~fbcache.backends.base.BackendSpec`). Options,
preflight checks, ``machine_info`` versions and the fingerprint all read the registry, so a new
backend is one new file plus one line here. Tests and third parties may :func:`register` more.
"""

from __future__ import annotations

import importlib

from fbcache.backends.base import BackendSpec, CacheBackend

BUILTIN = (
    "fbcache.backends.diffusers",
    "fbcache.backends.cache_dit",
    "fbcache.backends.nunchaku",
)

_REGISTRY: dict[str, BackendSpec] = {}


def register(spec: BackendSpec) -> BackendSpec:
    """Add (or replace) a backend; returns it, so a module can write ``SPEC = register(...)``."""
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_builtin() -> None:
    for module in BUILTIN:
        spec = importlib.import_module(module).SPEC
        _REGISTRY.setdefault(spec.name, spec)


def names() -> tuple[str, ...]:
    _ensure_builtin()
    return tuple(_REGISTRY)


def get(name: str) -> BackendSpec:
    _ensure_builtin()
    return _REGISTRY[name]


def unregister(name: str) -> None:
    """Remove a backend added with :func:`register` (tests clean up with this)."""
    _REGISTRY.pop(name, None)


__all__ = ["BackendSpec", "CacheBackend", "get", "names", "register", "unregister"]
