"""History writes are whole or absent, never overwrite, and reading skips bad files by name."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from plugins.faults import fill_disk
from pytest_benchmark.storage.file import FileStorage

from fbcache.history.storage import AtomicFileStorage, load_runs, write_new_file


class QuietLogger:
    def __init__(self):
        self.messages = []

    def info(self, text, **kwargs):
        self.messages.append(text)

    warning = info


def storage(path: Path) -> AtomicFileStorage:
    return AtomicFileStorage(path, QuietLogger(), "machine")


def payload(n: int) -> dict:
    return {"machine_info": {"n": n}, "commit_info": {}, "benchmarks": [], "datetime": "now", "version": "5"}


def _save_from_process(path: str, n: int) -> None:
    storage(Path(path)).save(payload(n), "same_name")


def test_concurrent_saves_get_distinct_files(tmp_path: Path):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_save_from_process, args=(str(tmp_path), n)) for n in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    files = sorted((tmp_path / "machine").glob("*.json"))
    assert [f.name.split("_")[0] for f in files] == [f"{i:04d}" for i in range(1, 7)]
    assert sorted(json.loads(f.read_text())["machine_info"]["n"] for f in files) == list(range(6))
    assert not list((tmp_path / "machine").glob(".fbcache-*")), "no temporary file may remain"


def test_an_existing_name_is_never_overwritten(tmp_path: Path):
    (tmp_path / "taken.json").write_text("precious")
    names = iter(["taken.json", "free.json"])
    written = write_new_file(tmp_path, lambda: next(names), b"new")
    assert written.name == "free.json"
    assert (tmp_path / "taken.json").read_text() == "precious"


def test_refused_run_writes_nothing(tmp_path: Path):
    store = storage(tmp_path)
    store.refuse("the run was interrupted")
    store.save(payload(1), "x")
    assert not list(tmp_path.rglob("*.json"))
    assert any("NOT saved" in m and "interrupted" in m for m in store.logger.messages)


GOOD_RUN = json.loads((Path(__file__).parent / "data" / "run.json").read_text())


def test_saved_json_is_pytest_benchmarks_format(tmp_path: Path):
    store = storage(tmp_path)
    store.save(GOOD_RUN, "x")
    [(path, data)] = list(FileStorage.load(store))  # pytest-benchmark's own reader
    assert data == GOOD_RUN


def test_compare_loads_skip_malformed_runs_with_one_warning_each(tmp_path: Path):
    store = storage(tmp_path)
    store.save(GOOD_RUN, "good")
    bad = json.loads(json.dumps(GOOD_RUN))
    bad["benchmarks"][1]["stats"]["median"] = "fast"
    store.save(bad, "median")
    store.save(payload(3), "foreign")
    assert [path.name for path, _ in store.load()] == ["0001_good.json"]
    skipped = [m for m in store.logger.messages if m.startswith("fbcache: skipped ")]
    assert len(skipped) == 2
    assert "0002_median.json: benchmark 'test_threshold[t0.1]': stats.median = 'fast'" in skipped[0]
    assert "0003_foreign.json: no fbcache fingerprint" in skipped[1]


def test_a_failed_save_is_recorded_and_leaves_nothing(tmp_path: Path, monkeypatch):
    store = storage(tmp_path)
    store.save(GOOD_RUN, "first")
    fill_disk(monkeypatch, tmp_path)
    store.save(GOOD_RUN, "second")
    assert store.failure is not None and "No space left on device" in store.failure
    assert sorted(p.name for p in (tmp_path / "machine").iterdir()) == [".fbcache.lock", "0001_first.json"]


def test_load_runs_skips_bad_files_by_name(tmp_path: Path):
    good = json.loads((Path(__file__).parent / "data" / "run.json").read_text())
    machine = tmp_path / "m"
    machine.mkdir()
    (machine / "0001_good.json").write_text(json.dumps(good))
    (machine / "0002_truncated.json").write_text(json.dumps(good)[:200])
    (machine / "0003_foreign.json").write_text(json.dumps({**good, "machine_info": {"node": "x"}}))
    (machine / "0004_notjson.json").write_bytes(b"\xff\xfe garbage")
    (machine / "0005_empty.json").write_text("")
    runs, skipped = load_runs(tmp_path)
    assert [r.name for r in runs] == ["0001_good"]
    assert len(skipped) == 4
    for name in ("0002_truncated", "0003_foreign", "0004_notjson", "0005_empty"):
        assert any(name in message for message in skipped)
    assert runs[0].records["0.1"].hits is not None
