"""The fixtures benchmarks use: ``fbcache_session`` (one per pytest session) and ``fbcache_bench``."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from fbcache.verdicts.bounds import check
from fbcache.errors import BoundViolation
from fbcache.plugin.measure import measure
from fbcache.history.record import BenchRecord
from fbcache.plugin.session import FBCacheSession

SESSION_KEY = pytest.StashKey[FBCacheSession]()
CONFIG_ERROR_KEY = pytest.StashKey[Exception]()


@pytest.fixture(scope="session")
def fbcache_session(request: pytest.FixtureRequest) -> FBCacheSession:
    session = request.config.stash[SESSION_KEY]
    session.config.output_dir.mkdir(parents=True, exist_ok=True)
    return session


@pytest.fixture
def fbcache_bench(benchmark: Any, fbcache_session: FBCacheSession) -> Callable[[float | None], BenchRecord]:
    """``fbcache_bench(threshold)`` measures one threshold (``None``: uncached) and checks its bounds."""

    def run(threshold: float | None = None) -> BenchRecord:
        __tracebackhide__ = True  # a bound failure is a verdict, not a bug: show the message only
        benchmark.group = "fbcache"
        record = measure(benchmark, fbcache_session, threshold)
        profile = fbcache_session.profile
        violations = check(profile, record) if profile is not None else []
        record.bounds = {
            "profile": profile.name if profile is not None else None,
            "violations": [v.message() for v in violations if v.enforced],
            "reported": [v.message() for v in violations if not v.enforced],
        }
        benchmark.extra_info.update(record.to_extra_info())
        fbcache_session.records[record.label] = record
        enforced = [v.message() for v in violations if v.enforced]
        if enforced:
            raise BoundViolation("; ".join(enforced))
        return record

    return run
