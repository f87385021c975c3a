"""One terminal line per generation while a sweep runs, with an estimate of the time left.

The interleaved schedule times every benchmark's rounds inside the first benchmark's test, so
without this a sweep shows nothing for its whole length (minutes on a GPU). Each line is written
after the generation's clock stopped, never inside the timed region. pytest captures a test's
output, so lines go through its terminal reporter with capture suspended, as its live logging does:
they show in a plain ``pytest benchmarks`` run, and in ``fbcache nightly`` which streams the sweep.
``-qq`` silences them; xdist workers, which have no terminal, write none.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from fbcache.history.record import UNCACHED

Write = Callable[[str], None]

#: pytest's verbosity at and below which the lines are left out (``-qq``)
SILENT_VERBOSITY = -2


def terminal_writer(config: Any) -> Write | None:
    """Write a whole line to pytest's terminal now, capture or not; None when there is no terminal or -qq."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    worker = hasattr(config, "workerinput")  # an xdist worker's output goes nowhere
    if reporter is None or worker or config.get_verbosity() <= SILENT_VERBOSITY:
        return None
    capture = config.pluginmanager.get_plugin("capturemanager")

    def write(line: str) -> None:
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.write_line(line)  # starts a new line if pytest was in the middle of one
            reporter.flush()

    return write


def duration_text(seconds: float) -> str:
    """'45 s', '3 min 20 s', '1 h 05 min': a time left, as precise as it is worth."""
    seconds = max(0, round(seconds))
    if seconds < 1:
        return "under 1 s"
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Counts the sweep's generations and writes one line for each as it finishes."""

    def __init__(self, write: Write | None, total: int, now: Callable[[], float] = time.monotonic) -> None:
        self._write = write
        self.total = total
        self.done = 0
        self._now = now
        self._started: float | None = None

    def start(self, schedule: str = "") -> None:
        """Mark the start of the sweep's generations and say how many there are (the first call only)."""
        if self._started is not None:
            return
        self._started = self._now()
        if self._write is not None and schedule:
            self._write(f"fbcache: timing {self.total} generations ({schedule})")

    def generation(self, threshold: float | None, prompt_index: int | None, warmup: bool, number: int, of: int,
                   seconds: float | None, hits: int | None = None, steps: int | None = None) -> str:
        """Count one finished generation and write its line; returns the line (written or not)."""
        self.start()
        self.done += 1
        name = UNCACHED if threshold is None else f"{threshold:g}"
        parts = [f"fbcache: {name}" + ("" if prompt_index is None else f" p{prompt_index}"),
                 f"{'warm-up' if warmup else 'round'} {number}/{of}"]
        line = " ".join(parts)
        if seconds is not None:
            line += f"  {seconds:.2f} s"
        if hits is not None and steps is not None:
            line += f"  hits {hits}/{steps}"
        line += f"  [{self.done}/{self.total}{self._left()}]"
        if self._write is not None:
            self._write(line)
        return line

    def _left(self) -> str:
        """', about 3 min 20 s left' from the mean wall time per generation so far; '' when done."""
        if self._started is None or self.done >= self.total or self.done == 0:
            return ""
        left = duration_text((self._now() - self._started) / self.done * (self.total - self.done))
        return f", {left} left" if left.startswith("under") else f", about {left} left"
