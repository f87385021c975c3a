"""pytest-benchmark's internals that fbcache uses (:mod:`fbcache.history.compat`), checked on real objects.

Each check builds real pytest-benchmark objects (a FileStorage, and the BenchmarkSession and
BenchmarkFixture of an inner pytest run) and fails naming the attribute that moved, so a
pytest-benchmark release that renames one is caught here, not by a sweep that silently saves
through the wrong storage or times with the wrong clock.
"""

from __future__ import annotations

import ast
import json
import os
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from pytest_benchmark.logger import Logger
from pytest_benchmark.session import BenchmarkSession
from pytest_benchmark.storage.file import FileStorage
from pytest_benchmark.utils import get_machine_id

from fbcache.history import compat
from fbcache.history.storage import AtomicFileStorage, install_atomic_storage

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

PYTEST_BENCHMARK = version("pytest-benchmark")
#: the inner test times three rounds with a clock that reads these values, two per round
READINGS = [0.0, 0.25, 1.0, 1.5, 2.0, 4.0]
RECORDED = [0.25, 0.5, 2.0]

INNER_TEST = f'''
from fbcache.history import compat

def test_timed(benchmark):
    readings = iter({READINGS!r})
    original = getattr(benchmark, "_timer", None)
    with compat.swapped_timer(benchmark, lambda: next(readings), "be checked"):
        benchmark.pedantic(lambda: None, rounds=3, iterations=1, warmup_rounds=0)
    benchmark.extra_info["timer_restored"] = getattr(benchmark, "_timer", None) is original
'''


class Grab:
    """Keeps the real objects of an inner pytest run, and does at session start what fbcache's plugin does."""

    def __init__(self, install: bool = False, compare: Any = None) -> None:
        self.install = install
        self.compare = compare
        self.config: Any = None
        self.session: Any = None
        self.storage: Any = None
        self.fixture: Any = None
        self.compared: list[dict] = []

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.config = session.config
        self.session = compat.benchmark_session(session.config)
        if self.session is None:
            return
        if self.install:
            self.storage = install_atomic_storage(self.session)
        if self.compare:
            compat.load_compared(self.session, self.compare)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Any:
        self.fixture = item.funcargs.get("benchmark")
        yield

    def pytest_benchmark_compare_machine_info(self, config: Any, benchmarksession: Any, machine_info: dict,
                                              compared_benchmark: dict) -> None:
        self.compared.append(compared_benchmark)


def inner_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, storage: Path, grab: Grab,
              *args: str) -> pytest.HookRecorder:
    """Run INNER_TEST in this process with pytest-benchmark enabled (an xdist worker's variables would
    disable it) and without fbcache's plugin."""
    for name in [n for n in os.environ if n.startswith("PYTEST_XDIST")]:
        monkeypatch.delenv(name)
    pytester.makepyfile(test_inner=INNER_TEST)
    return pytester.inline_run("-p", "no:fbcache", "-p", "no:xdist", "-p", "no:cacheprovider",
                               f"--benchmark-storage=file://{storage}", *args, plugins=[grab])


def failures(recorder: pytest.HookRecorder) -> list[str]:
    """The inner test's failures, last line of each (the error and its message)."""
    return [report.longreprtext.strip().splitlines()[-1] for report in recorder.listoutcomes()[2]]


def gone(owner: str, attribute: str, use: str) -> str:
    return (f"pytest-benchmark {PYTEST_BENCHMARK}: {owner}.{attribute} is gone or changed; fbcache.history.compat "
            f"uses it for: {use}")


def why(owner: str, attribute: str) -> str:
    return next(w for o, a, w in compat.INTERNALS if (o, a) == (owner, attribute))


@pytest.fixture
def machine_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "history" / get_machine_id()
    directory.mkdir(parents=True)
    return directory


def test_every_internal_is_on_the_real_objects(pytester, monkeypatch, tmp_path):
    grab = Grab()
    inner_run(pytester, monkeypatch, tmp_path / "history", grab)
    storage = FileStorage(tmp_path / "other", Logger(Logger.QUIET), "machine")
    objects = {"pytest.Config": grab.config, "BenchmarkSession": grab.session, "BenchmarkFixture": grab.fixture,
               "FileStorage": storage}
    missing = [gone(owner, attribute, reason) for owner, attribute, reason in compat.INTERNALS
               if not hasattr(objects[owner], attribute)]
    assert missing == [], "\n".join(missing)


def test_the_session_is_pytest_benchmarks_own(pytester, monkeypatch, tmp_path):
    grab = Grab()
    inner_run(pytester, monkeypatch, tmp_path / "history", grab)
    assert isinstance(grab.session, BenchmarkSession), gone("pytest.Config", "_benchmarksession",
                                                            why("pytest.Config", "_benchmarksession"))
    assert grab.config.pluginmanager.get_plugin("pytest-benchmark") is grab.session, \
        gone("pytest.Config", "_benchmarksession", "the session registered as the 'pytest-benchmark' plugin")
    assert type(compat.session_storage(grab.session)) is FileStorage, \
        gone("BenchmarkSession", "storage", why("BenchmarkSession", "storage"))


def test_pedantic_reads_the_swapped_timer_and_records_its_rounds(pytester, monkeypatch, tmp_path):
    grab = Grab()
    recorder = inner_run(pytester, monkeypatch, tmp_path / "history", grab)
    assert failures(recorder) == [], gone("BenchmarkFixture", "_timer", why("BenchmarkFixture", "_timer"))
    assert isinstance(grab.fixture, BenchmarkFixture)
    assert compat.recorded_seconds(grab.fixture) == RECORDED, \
        gone("BenchmarkFixture", "_timer or stats.stats.data", why("BenchmarkFixture", "_timer"))
    assert grab.fixture.extra_info["timer_restored"] is True, gone("BenchmarkFixture", "_timer", "put back after the swap")


def test_the_replaced_storage_saves_the_run_numbered_after_the_last(pytester, monkeypatch, tmp_path, machine_dir):
    (machine_dir / "0004_older.json").write_text("{}", encoding="utf-8")
    grab = Grab(install=True)
    inner_run(pytester, monkeypatch, tmp_path / "history", grab, "--benchmark-save=checked")
    assert compat.will_save(grab.session), gone("BenchmarkSession", "save", why("BenchmarkSession", "save"))
    assert isinstance(grab.storage, AtomicFileStorage)
    assert compat.session_storage(grab.session) is grab.storage, gone("BenchmarkSession", "storage",
                                                                      why("BenchmarkSession", "storage"))
    assert grab.storage.saved_path == machine_dir / "0005_checked.json", \
        gone("FileStorage", "_next_num (or BenchmarkSession.storage, which saves the run)", why("FileStorage", "_next_num"))


def test_autosave_is_seen(pytester, monkeypatch, tmp_path):
    grab = Grab()
    inner_run(pytester, monkeypatch, tmp_path / "history", grab, "--benchmark-autosave")
    assert compat.will_save(grab.session), gone("BenchmarkSession", "autosave", why("BenchmarkSession", "autosave"))


def test_compare_set_late_loads_the_saved_run(pytester, monkeypatch, tmp_path):
    inner_run(pytester, monkeypatch, tmp_path / "history", Grab(), "--benchmark-save=first")
    grab = Grab(compare=True)  # --benchmark-compare without a value: the latest run
    inner_run(pytester, monkeypatch, tmp_path / "history", grab)
    assert [bench["fullname"] for run in grab.compared for bench in run["benchmarks"]] == \
        ["test_inner.py::test_timed"], gone("BenchmarkSession", "compare and handle_loading",
                                            why("BenchmarkSession", "handle_loading"))


def test_next_run_number_follows_the_highest(tmp_path):
    storage = FileStorage(tmp_path, Logger(Logger.QUIET), "machine")
    assert compat.next_run_number(storage) == "0001", gone("FileStorage", "_next_num", why("FileStorage", "_next_num"))
    for name in ("0001_a.json", "0003_b.json"):
        (tmp_path / "machine").mkdir(exist_ok=True)
        (tmp_path / "machine" / name).write_text("{}", encoding="utf-8")
    assert compat.next_run_number(storage) == "0004", gone("FileStorage", "_next_num", why("FileStorage", "_next_num"))


def test_loaded_runs_are_handed_to_the_new_storage(tmp_path, machine_dir):
    run = {"benchmarks": [{"fullname": "t", "name": "t", "stats": {"min": 1.0, "max": 1.0, "mean": 1.0}}]}
    path = machine_dir / "0001_run.json"
    path.write_text(json.dumps(run), encoding="utf-8")
    first = FileStorage(tmp_path / "history", Logger(Logger.QUIET), get_machine_id())
    [(_, loaded)] = list(first.load())
    path.write_text(json.dumps({"benchmarks": []}), encoding="utf-8")  # changed on disk after the first load
    second = FileStorage(tmp_path / "history", Logger(Logger.QUIET), get_machine_id())
    compat.share_loaded_runs(first, second)
    assert [data for _, data in second.load()] == [loaded], gone("FileStorage", "_cache", why("FileStorage", "_cache"))


def test_no_other_module_reaches_the_private_ones():
    """The underscore internals are named in compat.py only (attribute or string, as in getattr)."""
    private = {attribute for _, attribute, _ in compat.INTERNALS if attribute.startswith("_")}
    found = []
    for path in sorted([*(ROOT / "fbcache").rglob("*.py"), *(ROOT / "tools").rglob("*.py")]):
        if path == Path(compat.__file__).resolve():
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = node.attr if isinstance(node, ast.Attribute) else node.value if isinstance(node, ast.Constant) else None
            if name in private:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert found == []
