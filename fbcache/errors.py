"""Exception types, so callers can tell bad input, broken runs and real regressions apart."""

from __future__ import annotations

#: Exit codes of every ``fbcache`` verb, defined here and nowhere else.
#: 1 means a regression and nothing else: CI reads it as "performance got worse".
EXIT_CLEAN = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2  # bad arguments or alert destinations, unreadable or unwritable files, missing history,
#                a nightly sweep refused before it ran
EXIT_BROKEN = 3  # the sweep broke: nothing was measured, nothing was saved
EXIT_UNMET = 4  # fbcache tune: no threshold keeps every floor (and --min-speedup); what it measured is still written


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
        self.why = why
        detail = f" ({why})" if why else ""
        if value is MISSING:
            super().__init__(f"{option} is missing{detail}; accepted: {accepted}")
        else:
            super().__init__(f"{option}: invalid value {value!r}{detail}; accepted: {accepted}")

    def from_source(self, source: str) -> ConfigError:
        """The same error, naming where the value came from (e.g. ``FBCACHE_STEPS``) instead of the flag."""
        if source == self.option:
            return self
        return ConfigError(f"{source} (for {self.option})", self.value, self.accepted, self.why)


class _Missing:
    def __repr__(self) -> str:
        return "missing"


#: ``ConfigError(option, MISSING, ...)``: a required option was not given at all
MISSING: object = _Missing()


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


class MergeError(DataError, ValueError):
    """Shard run files that are not one whole sweep: exit code 2, nothing written."""


class AgreementError(DataError, ValueError):
    """Backend runs that cannot be compared (different workloads, no common thresholds): exit code 2."""


class OutputWriteError(DataError, OSError):
    """An output (a report) could not be written, e.g. on a full disk; nothing partial was left: exit code 2.
    An OSError too, so a caller that goes on without the output (nightly's report) still catches it."""


class BrokenSweep(FBCacheError):
    """The nightly sweep saved something that cannot be judged: a broken sweep (exit 3), not a regression."""


class BoundViolation(AssertionError):
    """A measured value broke its bound. The run is a real measurement and stays in history, marked."""
