"""The cache-backend registry: one file per backend, one line per backend in ``BUILTIN``.

A backend module defines ``SPEC`` (a :class:`~fbcache.backends.base.BackendSpec`). Options,
preflight checks, ``machine_info`` versions and the fingerprint all read the registry, so a new
backend is one new file plus one line here. Tests and third parties may :func:`register` more.
"""

from __future__ import annotations

from fbcache.backends.base import BackendSpec, CacheBackend
from fbcache.registry import Registry

BUILTIN = (
    "fbcache.backends.diffusers",
    "fbcache.backends.cache_dit",
    "fbcache.backends.nunchaku",
)

_REGISTRY: Registry[BackendSpec] = Registry(BUILTIN, "SPEC")
register = _REGISTRY.register
unregister = _REGISTRY.unregister
get = _REGISTRY.get
names = _REGISTRY.names


__all__ = ["BackendSpec", "CacheBackend", "get", "names", "register", "unregister"]
