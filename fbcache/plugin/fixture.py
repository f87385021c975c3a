"""The fixtures benchmarks use: ``fbcache_session`` (one per pytest session), ``fbcache_bench`` and
``fbcache_prompt`` (the prompt's index in the set; parametrized by the plugin when a set is given)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fbcache.errors import BoundViolation
from fbcache.history.record import BenchRecord, label_of
from fbcache.history.summary import summarize
from fbcache.plugin.measure import measure
from fbcache.plugin.progress import terminal_writer
from fbcache.plugin.session import FBCacheSession
from fbcache.verdicts.bounds import Violation, check, check_set

SESSION_KEY = pytest.StashKey[FBCacheSession]()
CONFIG_ERROR_KEY = pytest.StashKey[Exception]()
#: each benchmark's extra_info by record label: pytest-benchmark saves it at the end of the session, so a
#: bound that a later benchmark finds broken (a prompt set's mean) can still mark the prompt that broke it
EXTRA_INFO_KEY = pytest.StashKey[dict[str, dict[str, Any]]]()


@pytest.fixture(scope="session")
def fbcache_session(request: pytest.FixtureRequest) -> FBCacheSession:
    session = request.config.stash[SESSION_KEY]
    session.config.output_dir.mkdir(parents=True, exist_ok=True)
    session.progress_write = terminal_writer(request.config)
    return session


@pytest.fixture
def fbcache_prompt() -> int | None:
    """Without a prompt set: ``None``, the run's single prompt (the plugin parametrizes it for a set)."""
    return None


def _set_violations(session: FBCacheSession, record: BenchRecord) -> list[Violation]:
    """The floors on the set's mean, once this session has measured every prompt of the threshold."""
    config, profile = session.config, session.profile
    if profile is None or record.prompt_index is None or record.threshold is None or config.shard is not None:
        return []
    same = [r for r in session.records.values() if r.threshold == record.threshold]
    uncached = [r for r in session.records.values() if r.threshold is None]
    if len(same) < len(config.cases):
        return []
    [summary] = [s for s in summarize(same + uncached) if s.threshold == record.threshold]
    return check_set(profile, summary)


def _mark(record: BenchRecord, violations: list[Violation]) -> None:
    """Add ``violations`` to what the record keeps (enforced ones mark its row with '!')."""
    record.bounds.setdefault("violations", []).extend(v.message() for v in violations if v.enforced)
    record.bounds.setdefault("reported", []).extend(v.message() for v in violations if not v.enforced)


@pytest.fixture
def fbcache_bench(request: pytest.FixtureRequest, benchmark: Any,
                  fbcache_session: FBCacheSession) -> Callable[..., BenchRecord]:
    """``fbcache_bench(threshold, prompt_index)`` measures one threshold (``None``: uncached) on one prompt
    (``None``: the run's single prompt) and checks its bounds."""
    extra_infos = request.config.stash.setdefault(EXTRA_INFO_KEY, {})

    def run(threshold: float | None = None, prompt_index: int | None = None) -> BenchRecord:
        __tracebackhide__ = True  # a bound failure is a verdict, not a bug: show the message only
        benchmark.group = "fbcache"
        record = measure(benchmark, fbcache_session, threshold, prompt_index)
        profile = fbcache_session.profile
        fbcache_session.records[record.label] = record
        extra_infos[record.label] = benchmark.extra_info
        violations = check(profile, record) if profile is not None else []
        record.bounds = {"profile": profile.name if profile is not None else None}
        _mark(record, violations)
        set_violations = _set_violations(fbcache_session, record)
        # a bound on the set as a whole is found by its last prompt, but the row marked is the prompt that broke it
        for violation in set_violations:
            label = label_of(record.threshold, violation.worst_prompt)
            culprit = fbcache_session.records.get(label, record)
            _mark(culprit, [violation])
            extra_infos.get(culprit.label, benchmark.extra_info).update(culprit.to_extra_info())
        benchmark.extra_info.update(record.to_extra_info())
        enforced = [v.message() for v in violations + set_violations if v.enforced]
        if enforced:
            raise BoundViolation("; ".join(enforced))
        return record

    return run
