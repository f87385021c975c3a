"""The pytest plugin: its hooks and fixtures, each handing its work to the session.

Registered through the ``pytest11`` entry point (and the repository's ``conftest.py``). What each
hook does is in :mod:`fbcache.plugin.session`; where a threshold becomes a timing, in
:mod:`fbcache.plugin.schedule`, and its record, in :mod:`fbcache.plugin.records`; what is shown, in
:mod:`fbcache.plugin.display`.

"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest

from fbcache.config import Threshold
from fbcache.configure import add_options, options
from fbcache.history import BenchRecord
from fbcache.plugin import records
from fbcache.plugin import session as fbsession
from fbcache.plugin.session import FBCacheSession


class LateOptions:
    """Adds the options of extensions registered after this plugin loaded (in a ``conftest.py``, or a
    plugin loaded later): pytest parses its command line only once the initial conftests are in."""

    def __init__(self, parser: pytest.Parser) -> None:
        self.parser = parser
        self.added = {spec.name for spec in options()}

    def pytest_plugin_registered(self) -> None:
        new = tuple(spec for spec in options() if spec.name not in self.added)
        if new:
            add_options(self.parser, new)
            self.added.update(spec.name for spec in new)


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    add_options(parser)
    pluginmanager.register(LateOptions(parser), "fbcache-late-options")


def pytest_report_header(config: pytest.Config) -> list[str]:
    return fbsession.header(config)


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark's, which loads --benchmark-compare's runs
def pytest_configure(config: pytest.Config) -> None:
    fbsession.configure(config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    fbsession.parametrize(metafunc)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    fbsession.plan(config, items)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Generator[None, Any, None]:
    outcome = yield
    fbsession.note_outcome(item, call, outcome)


def pytest_sessionstart(session: pytest.Session) -> None:
    fbsession.start(session)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    fbsession.update_machine_info(config, machine_info)


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any, output_json: dict) -> None:
    fbsession.update_json(config, output_json)


def pytest_benchmark_compare_machine_info(config: pytest.Config, benchmarksession: Any, machine_info: dict,
                                          compared_benchmark: dict) -> None:
    fbsession.check_comparable(config, machine_info, compared_benchmark)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
    """Before pytest-benchmark saves: veto broken runs, write the table, calibrate if asked. After:
    a run that could not be saved (a full disk) fails the session, exit 3, as a broken sweep does."""
    storage = fbsession.finish(session, exitstatus)
    yield
    fbsession.after_save(session, storage)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    fbsession.summary(terminalreporter, exitstatus, config)


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def fbcache_session(request: pytest.FixtureRequest) -> FBCacheSession:
    return fbsession.for_benchmarks(request.config)


@pytest.fixture
def fbcache_prompt() -> int | None:
    """Without a prompt set: ``None``, the run's single prompt (the plugin parametrizes it for a set)."""
    return None


@pytest.fixture
def fbcache_bench(benchmark: Any, fbcache_session: FBCacheSession) -> Callable[..., BenchRecord]:
    """``fbcache_bench(threshold, prompt_index)`` measures one threshold (``None``: uncached) on one prompt
    (``None``: the run's single prompt) and checks its bounds."""

    def run(threshold: Threshold | None = None, prompt_index: int | None = None) -> BenchRecord:
        __tracebackhide__ = True  # a bound failure is a verdict, not a bug: show the message only
        return records.bench(benchmark, fbcache_session, threshold, prompt_index)

    return run
