"""What is being alerted: a compare result, or a sweep that broke before producing one."""

from __future__ import annotations

from dataclasses import dataclass

from fbcache.errors import EXIT_BROKEN, EXIT_CLEAN, EXIT_REGRESSION
from fbcache.verdicts.compare import CompareResult, markdown


@dataclass(frozen=True)
class Finding:
    """What is being alerted: a comparison, or a sweep that broke before producing one."""

    result: CompareResult | None = None
    broken: str | None = None
    context: str = ""

    @property
    def exit_code(self) -> int:
        if self.broken is not None:
            return EXIT_BROKEN
        return EXIT_REGRESSION if self.result is not None and self.result.regression else EXIT_CLEAN

    @property
    def needs_attention(self) -> bool:
        return self.exit_code != EXIT_CLEAN

    def headline(self) -> str:
        where = f" ({self.context})" if self.context else ""
        if self.broken is not None:
            return f"fbcache nightly sweep BROKEN{where}: {self.broken}"
        assert self.result is not None
        if not self.result.regression:
            return f"fbcache: no regression{where}, {self.result.latest} against {self.result.baseline}"
        parts = [f"{label} {v.metric} {v.status}" for label, v in self.result.alerts]
        return f"fbcache REGRESSION{where}: " + "; ".join(parts[:6]) + (" ..." if len(parts) > 6 else "")

    def markdown(self) -> str:
        if self.broken is not None:
            return (f"## {self.headline()}\n\nThe sweep did not produce a valid run, so nothing was compared "
                    "and nothing was added to the history. This is a broken job, not a performance regression.\n")
        assert self.result is not None
        return f"## {self.headline()}\n\n{markdown(self.result)}\n"
