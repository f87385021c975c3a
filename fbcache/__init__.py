"""fbcache: a pytest-benchmark regression harness for First-Block Cache on (quantized) FLUX.

Where things happen, one hop each:

- a threshold becomes a timing:     :mod:`fbcache.plugin.schedule`, then its record :mod:`fbcache.plugin.records`
- a timing becomes a stored record: :mod:`fbcache.history` (extra_info) and
  :mod:`fbcache.history.storage` (history files)
- a record becomes an alert:        :mod:`fbcache.verdicts` then :mod:`fbcache.alerts`

Imports go down these layers only (tests/test_layers.py): the configuration schema
(:mod:`fbcache.config`); the registries (backends, quant, models, metrics) and their entries;
:mod:`fbcache.configure` (options to a checked config); history; verdicts; render; alerts; plugin; cli.

**The registry type** (:class:`Registry`), shared by the extension points that are looked up by name:
backends, quantization modes, metrics, alert sinks.

Built-in entries live in their own modules (one entry, or a tuple of a family's entries, per module)
and are imported on first use, so naming an option's choices never imports a library it does not
need; :meth:`Registry.register` adds entries at run time (a plugin, a ``conftest.py``, a test).
Model sources are matched in order instead; see fbcache.models.
"""

from __future__ import annotations

import importlib
from typing import Generic, Protocol, TypeVar

__all__ = ["Registry", "__version__"]

__version__ = "0.1.0"


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class Registry(Generic[T]):
    def __init__(self, builtin: tuple[str, ...], attribute: str, core: tuple[T, ...] = ()) -> None:
        #: modules that each define ``attribute`` (an entry or a tuple of entries), in the order they are listed
        self.builtin = builtin
        self.attribute = attribute
        #: entries of the registry's own module, listed first
        self.core = core
        self._entries: dict[str, T] = {}
        self._loaded = False

    def _ensure_builtin(self) -> None:
        if not self._loaded:
            self._loaded = True
            for entry in self.core:
                self._entries.setdefault(entry.name, entry)
            for module in self.builtin:
                found = getattr(importlib.import_module(module), self.attribute)
                for entry in found if isinstance(found, tuple) else (found,):
                    self._entries.setdefault(entry.name, entry)

    def register(self, entry: T) -> T:
        """Add (or replace) an entry; returns it."""
        self._ensure_builtin()
        self._entries[entry.name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._ensure_builtin()
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        self._ensure_builtin()
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        self._ensure_builtin()
        return tuple(self._entries)

    def all(self) -> list[T]:
        self._ensure_builtin()
        return list(self._entries.values())
