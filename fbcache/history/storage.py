"""History files: pytest-benchmark's own storage, written atomically, read back defensively, and the
runs chosen from it; the acceptances and the image directory's record that sit beside it.

Writing. :class:`AtomicFileStorage` replaces pytest-benchmark's FileStorage for the session. The
JSON is byte-for-byte what pytest-benchmark would write, but a run reaches the history whole or
not at all (temporary file, then a hard link that refuses to overwrite), two runs saving at once
get different numbers (a lock around numbering), and a broken run can be refused outright. A
save that fails (a full disk) leaves nothing behind and is recorded as the reason the run was not saved.
:func:`replace_file` is the same whole-or-nothing write for files that may be replaced (acceptances,
the images' record, the files the CLI writes on request).

Reading. :func:`load_runs` reads every run of a storage directory, naming and skipping files that
are corrupt, partial or not fbcache's, so one bad file never breaks a compare. The same check
filters what ``--benchmark-compare`` loads through :class:`AtomicFileStorage`.

Choosing. :func:`find_run` picks a run by name; :func:`same_fingerprint_before` the earlier runs
that share its fingerprint. Runs with different fingerprints (accelerator, model, quantization,
cache backend, workload) are never mixed: every selection here starts from the latest run's
fingerprint. Baselines themselves are the judge's segments (fbcache/verdicts/stats.py), not a
choice of runs made here.

Accepting. ``fbcache accept RUN`` says "this run's level is the new normal". An acceptance is a
small JSON sidecar next to the run files (``fbcache-accept-<run>.json``), never an edit of
pytest-benchmark's run file, so the history stays pytest-benchmark's own format. The name does not
start with four digits, so neither pytest-benchmark nor :func:`run_files` takes it for a run.

The images' record. Images are not in the history, so ``fbcache report --images DIR`` must trust the
directory. The sweep records its fingerprint next to its images (:func:`write_images_record`); the
report embeds them only when that fingerprint is the reported run's (:func:`images_mismatch`), so a
directory left over from another workload is never shown as this run's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_benchmark.storage.file import FileStorage
from pytest_benchmark.utils import safe_dumps

from fbcache.errors import SelectionError
from fbcache.history import BenchRecord, Startup, compat, type_problem
from fbcache.history.fingerprint import fingerprint_differences, fingerprint_id, fingerprint_of

RUN_FILE_MODE = 0o644


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``directory`` (POSIX); elsewhere the hard link still guards."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(directory / ".fbcache.lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _flushed_temporary(directory: Path, payload: bytes, mode: int) -> Iterator[str]:
    """``payload`` whole on disk in a new temporary file in ``directory`` (so a rename of it is atomic);
    the temporary file is gone afterwards, whether the caller renamed it or failed."""
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".fbcache-", suffix=".partial")
    try:
        # mkstemp makes 0600; the final file gets the mode an ordinary write would give it, less the umask
        os.fchmod(descriptor, mode & ~_umask())
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        yield temporary
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def write_new_file(directory: Path, name_for: Any, payload: bytes) -> Path:
    """Write ``payload`` under the first free name ``name_for()`` gives, atomically, never overwriting."""
    # history is shared (runners read it as another user), as pytest-benchmark's own files are: 0644
    with _directory_lock(directory), _flushed_temporary(directory, payload, RUN_FILE_MODE) as temporary:
        for _ in range(10_000):
            final = directory / name_for()
            try:
                os.link(temporary, final)  # fails if the name exists: no overwrite, ever
            except FileExistsError:
                continue
            return final
        raise FileExistsError(f"no free file name in {directory}")


def replace_file(target: Path, payload: bytes, mode: int = 0o666) -> Path:
    """Write ``payload`` to ``target`` whole or not at all: a temporary file in the same directory, then
    an atomic rename over ``target``. On any failure (a full disk) ``target`` is as it was and no
    temporary file is left. A symlink at ``target`` stays; the file it points to is replaced. A device
    or pipe (``/dev/stdout``) cannot be renamed over: it is written to directly."""
    try:
        special = not stat.S_ISREG(os.stat(target).st_mode)
    except FileNotFoundError:
        special = False
    if special:
        with open(target, "wb") as handle:
            handle.write(payload)
        return target
    final = Path(os.path.realpath(target))
    with _flushed_temporary(final.parent, payload, mode) as temporary:
        os.replace(temporary, final)
    return target



class AtomicFileStorage(FileStorage):
    """pytest-benchmark's FileStorage with atomic, non-overwriting saves, a veto, and loads that skip
    malformed runs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refusal: str | None = None
        #: why the save itself failed (a full disk, ...); nothing of the run is left in the storage
        self.failure: str | None = None
        self.saved_path: Path | None = None

    def refuse(self, reason: str) -> None:
        """Keep this session's run out of the history."""
        self.refusal = reason

    def save(self, output_json: dict, save: str) -> None:
        if self.refusal:
            self.logger.warning(f"fbcache: NOT saved to the history: {self.refusal}")
            return
        directory = self.path / self.default_machine_id if self.default_machine_id else self.path
        payload = safe_dumps(output_json, ensure_ascii=True, indent=4).encode()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.saved_path = write_new_file(directory, lambda: f"{compat.next_run_number(self)}_{save}.json", payload)
        except OSError as exc:  # the temporary file is gone: the history is exactly as it was
            self.failure = f"writing {directory} failed: {exc.strerror or exc} (nothing partial left there)"
            return
        self.logger.info(f"Saved benchmark data in: {self.saved_path}")

    def load(self, *globs_or_files: Any) -> Iterator[tuple[Path, dict]]:
        """pytest-benchmark's load (what ``--benchmark-compare`` reads), less the files that are not
        well-formed fbcache runs: each is named in one warning and skipped, as the fbcache verbs do,
        instead of crashing pytest-benchmark after the sweep."""
        for relpath, data in super().load(*globs_or_files):
            path = relpath if relpath.is_absolute() else self.path / relpath
            problem = compare_problem(path, data)
            if problem:
                self.logger.warning(f"fbcache: skipped {path}: {problem}")
                continue
            yield relpath, data


def install_atomic_storage(benchmark_session: Any, subdir: str | None = None) -> AtomicFileStorage | None:
    """Swap the session's FileStorage for the atomic one (other storages are left alone).

    ``subdir``: save under this folder of the storage instead (a shard's own storage, see
    :mod:`fbcache.cli.merge`); nested that deep, its runs never mix with the storage's own.
    """
    storage = compat.session_storage(benchmark_session)
    if isinstance(storage, AtomicFileStorage):
        return storage
    if type(storage) is not FileStorage:
        return None
    path = storage.path / subdir if subdir else storage.path
    atomic = AtomicFileStorage(path, storage.logger, storage.default_machine_id)
    compat.share_loaded_runs(storage, atomic)
    compat.set_session_storage(benchmark_session, atomic)
    return atomic


# ------------------------------------------------------------------------------ reading back


@dataclass
class Run:
    """One saved run of fbcache benchmarks."""

    path: Path
    datetime: str
    machine_info: dict[str, Any]
    commit_info: dict[str, Any]
    records: dict[str, BenchRecord]
    #: raw timings per record label, present when saved with --benchmark-save-data
    raw_data: dict[str, list[float]] = field(default_factory=dict)
    #: the model's load and first generation, once per run (None: saved before fbcache stored them)
    startup: Startup | None = None

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def fingerprint(self) -> dict[str, str]:
        return fingerprint_of(self.machine_info) or {}

    @property
    def fingerprint_id(self) -> str:
        return fingerprint_id(self.fingerprint)


def _number_list(value: Any, where: str) -> list[float]:
    problem = type_problem(value, list[float])
    if problem:
        raise ValueError(f"{where}: {problem}")
    return [float(x) for x in value]


def parse_run(path: Path, data: Any) -> Run:
    """A Run from a pytest-benchmark JSON document; ValueError (naming the field) when it is not a
    well-formed fbcache run. Nothing else escapes: every reader can skip the file and go on."""
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ValueError("not a pytest-benchmark file (no 'benchmarks' list)")
    machine_info = data.get("machine_info") or {}
    if not isinstance(machine_info, dict) or fingerprint_of(machine_info) is None:
        raise ValueError("no fbcache fingerprint in machine_info (not written by fbcache)")
    fingerprint = fingerprint_of(machine_info) or {}
    if any(not isinstance(v, str) for v in fingerprint.values()):
        raise ValueError("machine_info.fbcache.fingerprint: every field must be a string")
    commit_info = data.get("commit_info") or {}
    if not isinstance(commit_info, dict):
        raise ValueError(f"commit_info is {type(commit_info).__name__}, not an object")
    records: dict[str, BenchRecord] = {}
    raw: dict[str, list[float]] = {}
    for index, bench in enumerate(data["benchmarks"]):
        if not isinstance(bench, dict):
            raise ValueError(f"benchmarks[{index}] is {type(bench).__name__}, not an object")
        where = f"benchmark {bench.get('name', index)!r}"
        try:
            record = BenchRecord.from_extra_info(bench.get("extra_info") or {})
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if record.label in records:
            raise ValueError(f"{where}: a second benchmark for threshold {record.label}")
        records[record.label] = record
        stats = bench.get("stats") or {}
        if not isinstance(stats, dict):
            raise ValueError(f"{where}: stats is {type(stats).__name__}, not an object")
        problem = _stats_problem(stats, where, required=False)
        if problem:
            raise ValueError(problem)
        if stats.get("data") is not None:
            raw[record.label] = _number_list(stats["data"], f"{where}: stats.data")
    if not records:
        raise ValueError("no fbcache benchmarks in the file")
    startup = Startup.from_run(data)
    return Run(path=path, datetime=str(data.get("datetime", "")), machine_info=machine_info,
               commit_info=commit_info, records=records, raw_data=raw, startup=startup)


#: the statistics pytest-benchmark's table and --benchmark-compare-fail read from a saved run
COMPARED_STATS = ("min", "max", "mean", "stddev", "median", "iqr", "ops", "rounds", "iterations")


def _stats_problem(stats: dict[str, Any], where: str, required: bool) -> str | None:
    """A statistic that is not a number (or, ``required``, absent); ``outliers`` is pytest-benchmark's text."""
    for key in COMPARED_STATS:
        if key not in stats:
            if required and not (key == "ops" and "mean" in stats):  # pytest-benchmark derives ops from the mean
                return f"{where}: stats.{key} is missing"
            continue
        if isinstance(stats[key], bool) or not isinstance(stats[key], (int, float)):
            return f"{where}: stats.{key} = {stats[key]!r:.40}: expected a number"
    if "outliers" in stats and not isinstance(stats["outliers"], str):
        return f"{where}: stats.outliers = {stats['outliers']!r:.40}: expected a string"
    return None


def compare_problem(path: Path, data: Any) -> str | None:
    """Why ``--benchmark-compare`` cannot use this saved run (None: it can): :func:`parse_run`'s checks,
    then what pytest-benchmark itself reads (each benchmark's fullname and statistics)."""
    try:
        parse_run(path, data)
    except (ValueError, RecursionError) as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    for index, bench in enumerate(data["benchmarks"]):
        where = f"benchmark {bench.get('name', index)!r}"
        if not isinstance(bench.get("fullname"), str):
            return f"{where}: fullname is missing or not a string"
        problem = _stats_problem(bench.get("stats") or {}, where, required=True)
        if problem:
            return problem
    return None


def next_run_name(directory: Path, save: str) -> str:
    """pytest-benchmark's next numbered file name in ``directory`` ('0007_<save>.json')."""
    numbers = [_run_number(p) for p in directory.glob("[0-9][0-9][0-9][0-9]_*.json")]
    return f"{max(numbers, default=0) + 1:04d}_{save}.json"


def run_files(storage: Path) -> list[Path]:
    """pytest-benchmark's numbered run files under ``storage`` (any machine id), oldest first.

    Dangling links and unreadable entries are listed too (ordered by name); :func:`load_runs`
    names and skips them.
    """
    files = [p for p in storage.glob("*/[0-9][0-9][0-9][0-9]_*.json")] + list(storage.glob("[0-9][0-9][0-9][0-9]_*.json"))
    return sorted(files, key=lambda p: (_run_number(p), _mtime(p), p.name))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _run_number(path: Path) -> int:
    try:
        return int(path.name.split("_", 1)[0])
    except ValueError:
        return -1


def load_runs(storage: Path) -> tuple[list[Run], list[str]]:
    """Every well-formed fbcache run under ``storage``, oldest first, and one warning line per skipped file."""
    runs, skipped = [], []
    for path in run_files(storage):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            runs.append(parse_run(path, data))
        except (OSError, ValueError, RecursionError) as exc:  # JSON and Unicode errors are ValueErrors
            if path.is_symlink() and not path.exists():
                reason = f"a dangling link (to {os.readlink(path)})"
            elif isinstance(exc, OSError) and exc.strerror:
                reason = f"{type(exc).__name__}: {exc.strerror}"
            elif isinstance(exc, json.JSONDecodeError):
                reason = f"not valid JSON ({exc})"
            elif isinstance(exc, UnicodeDecodeError):
                reason = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
            elif isinstance(exc, RecursionError):
                reason = "JSON nested too deeply to read"
            else:
                reason = str(exc)
            skipped.append(f"skipped {path}: {' '.join(reason.split())}")
    return runs, skipped


def find_run(runs: list[Run], name: str) -> Run:
    """A run by file stem, by its 4-digit number, or by a unique prefix."""
    if re.fullmatch(r"\d{1,4}", name):
        name = f"{int(name):04d}_"
    matches = [r for r in runs if r.name == name or r.name.startswith(name)]
    if len(matches) != 1:
        known = ", ".join(r.name for r in runs[-5:]) or "(none)"
        raise SelectionError(f"run {name!r} matches {len(matches)} runs; latest runs: {known}")
    return matches[0]


def same_fingerprint_before(runs: list[Run], latest: Run) -> list[Run]:
    """Earlier runs with the latest run's fingerprint, oldest first."""
    index = runs.index(latest)
    return [r for r in runs[:index] if r.fingerprint_id == latest.fingerprint_id]


#: an acceptance sidecar's name starts with this, never with a run's four digits
ACCEPTANCE_PREFIX = "fbcache-accept-"


@dataclass(frozen=True)
class Acceptance:
    run: str
    reason: str
    accepted_at: str
    fingerprint_id: str


def acceptance_path(run_file: Path) -> Path:
    return run_file.with_name(f"{ACCEPTANCE_PREFIX}{run_file.stem}.json")


def write_acceptance(run_file: Path, fingerprint_id: str, reason: str) -> Path:
    """Record that the run in ``run_file`` starts a new baseline segment; replaces an earlier record."""
    record = Acceptance(run_file.stem, reason, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        fingerprint_id)
    target = acceptance_path(run_file)
    replace_file(target, json.dumps(asdict(record), indent=2).encode(), RUN_FILE_MODE)
    return target


def load_acceptances(storage: Path) -> tuple[dict[str, Acceptance], list[str]]:
    """Every acceptance under ``storage`` by run name, and a warning per unreadable file."""
    found: dict[str, Acceptance] = {}
    problems: list[str] = []
    for path in sorted([*storage.glob(f"*/{ACCEPTANCE_PREFIX}*.json"), *storage.glob(f"{ACCEPTANCE_PREFIX}*.json")]):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            record = Acceptance(str(data["run"]), str(data.get("reason", "")), str(data.get("accepted_at", "")),
                                str(data.get("fingerprint_id", "")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"skipped acceptance {path}: {exc}")
            continue
        found[record.run] = record
    return found, problems


#: the file beside a sweep's images that records its fingerprint
IMAGES_RECORD_NAME = "fbcache-run.json"


def write_images_record(output_dir: Path, fingerprint: Mapping[str, Any]) -> Path:
    payload = json.dumps({"fingerprint": dict(fingerprint)}, indent=2, sort_keys=True) + "\n"
    return replace_file(output_dir / IMAGES_RECORD_NAME, payload.encode())


def images_mismatch(images_dir: Path, fingerprint: Mapping[str, str]) -> tuple[bool, str]:
    """(refuse, note): refuse when the directory records another fingerprint; a note when it records none."""
    path = images_dir / IMAGES_RECORD_NAME
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("fingerprint")
    except FileNotFoundError:
        return False, (f"the images in {images_dir} do not record which sweep made them ({IMAGES_RECORD_NAME} is absent); "
                       "they were not checked against this run")
    except (OSError, ValueError, AttributeError) as exc:
        return True, f"images in {images_dir} not used: {IMAGES_RECORD_NAME} is unreadable ({exc})"
    if not isinstance(recorded, Mapping):
        return True, f"images in {images_dir} not used: {IMAGES_RECORD_NAME} holds no fingerprint"
    differences = fingerprint_differences(dict(fingerprint), dict(recorded))
    if differences:
        return True, (f"images in {images_dir} not used: they come from another sweep ("
                      + "; ".join(d.replace("(saved)", "(images)").replace("(now)", "(run)") for d in differences) + ")")
    return False, ""
