"""What is being alerted: a compare result, a sweep that broke before producing one, or one that never started."""

from __future__ import annotations

from dataclasses import dataclass

from fbcache.errors import EXIT_BROKEN, EXIT_CLEAN, EXIT_REGRESSION, EXIT_USAGE
from fbcache.verdicts.compare import CompareResult, markdown


@dataclass(frozen=True)
class Finding:
    """What is being alerted: a comparison, a sweep that broke before producing one, or a sweep refused
    before it ran (a bad option, missing weights, nothing collected): a usage error, exit 2."""

    result: CompareResult | None = None
    broken: str | None = None
    context: str = ""
    not_started: str | None = None

    @property
    def exit_code(self) -> int:
        if self.not_started is not None:
            return EXIT_USAGE
        if self.broken is not None:
            return EXIT_BROKEN
        return EXIT_REGRESSION if self.result is not None and self.result.regression else EXIT_CLEAN

    @property
    def needs_attention(self) -> bool:
        return self.exit_code != EXIT_CLEAN

    def headline(self) -> str:
        where = f" ({self.context})" if self.context else ""
        if self.not_started is not None:
            return f"fbcache nightly did NOT START{where}: {self.not_started}"
        if self.broken is not None:
            return f"fbcache nightly sweep BROKEN{where}: {self.broken}"
        assert self.result is not None
        if not self.result.regression:
            return f"fbcache: no regression{where}, {self.result.latest} against {self.result.baseline}"
        parts = [f"{label} {v.metric} {v.status}" for label, v in self.result.alerts]
        return f"fbcache REGRESSION{where}: " + "; ".join(parts[:6]) + (" ..." if len(parts) > 6 else "")

    def markdown(self) -> str:
        if self.not_started is not None:
            return (f"## {self.headline()}\n\nThe sweep was refused before it ran (a usage error in the job's "
                    "options), so nothing was measured, compared or saved. Fix the job's configuration.\n")
        if self.broken is not None:
            return (f"## {self.headline()}\n\nThe sweep did not produce a valid run, so nothing was compared "
                    "and nothing was added to the history. This is a broken job, not a performance regression.\n")
        assert self.result is not None
        return f"## {self.headline()}\n\n{markdown(self.result)}\n"
