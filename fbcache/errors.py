"""Exception types, so callers can tell bad input, broken runs and real regressions apart."""

from __future__ import annotations


class FBCacheError(Exception):
    """Base class for every error fbcache raises on purpose."""


class ConfigError(FBCacheError):
    """Bad user input, raised before any model is built.

    The message always names the option and the values it accepts.
    """

    def __init__(self, option: str, value: object, accepted: str, why: str = "") -> None:
        self.option = option
        self.value = value
        self.accepted = accepted
        detail = f" ({why})" if why else ""
        super().__init__(f"{option}: invalid value {value!r}{detail}; accepted: {accepted}")


class MissingDependencyError(FBCacheError):
    """An optional dependency is absent; the message names the extra or wheel to install."""


class BrokenRunError(FBCacheError):
    """The measurement itself is invalid (NaN image, cache hooks never ran, ...): keep it out of history."""


class NaNImageError(BrokenRunError):
    """A generation produced NaN or Inf pixels."""


class DataError(FBCacheError):
    """Missing or unusable history or input files for a verb: exit code 2."""


class SelectionError(DataError, ValueError):
    """The requested runs do not exist in the history: exit code 2."""


class BoundViolation(AssertionError):
    """A measured value broke its bound. The run is a real measurement and stays in history, marked."""


#: exit codes of the ``fbcache`` verbs: 1 means a regression and nothing else
EXIT_CLEAN, EXIT_REGRESSION, EXIT_USAGE, EXIT_BROKEN = 0, 1, 2, 3
