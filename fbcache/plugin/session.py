"""The session: its state, and what each pytest hook does with it.

**State.** A pytest session builds at most one :class:`FBCacheSession`: one model, one cache
backend, the uncached reference per prompt, and every record so far. The model loads on first use
and is shared by every benchmark, thresholds switching on that same pipeline.

**Work.** Configuration errors are collected at configure time (:func:`configure`) and raised as
soon as fbcache benchmarks are collected (:func:`plan`) or a compare needs them, always before any
model is built; a plain ``pytest tests`` run never trips over them. :func:`start` saves through
:class:`~fbcache.history.storage.AtomicFileStorage`; :func:`finish` refuses a broken run, writes the
results table and, if asked, the calibrated bounds profile; :func:`summary` says what became of it.
The pytest hooks themselves are in :mod:`fbcache.plugin`, the texts in :mod:`fbcache.plugin.display`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fbcache import backends, explain, metrics
from fbcache.backends import CacheBackend
from fbcache.config import HarnessConfig, Shard, Threshold, check_writable_dir
from fbcache.configure import (
    build_config,
    check_compile_selection,
    check_environment,
    option_name,
    resolve_raw,
    source_of,
)
from fbcache.errors import BoundViolation, BrokenRunError, ConfigError
from fbcache.history import STARTUP_KEY, BenchRecord, Startup, compat, label_of
from fbcache.history.fingerprint import fingerprint_differences, fingerprint_of, match_facts
from fbcache.history.storage import (
    IMAGES_RECORD_NAME,
    AtomicFileStorage,
    install_atomic_storage,
    replace_file,
    write_images_record,
)
from fbcache.models import LoadedModel, load_model
from fbcache.plugin import display
from fbcache.plugin.compile_cache import CompileCache
from fbcache.plugin.display import Progress, Write
from fbcache.plugin.machine import fbcache_machine_info
from fbcache.verdicts.bounds import BoundsProfile, calibrate, check_measured, other_workload, resolve_profile

SESSION_KEY = pytest.StashKey["FBCacheSession"]()
CONFIG_ERROR_KEY = pytest.StashKey[Exception]()
MACHINE_INFO_KEY = pytest.StashKey[dict]()
#: ``--benchmark-compare``'s value, held back from pytest-benchmark until the session starts
COMPARE_KEY = pytest.StashKey[Any]()
#: why ``--fbcache-bounds auto`` chose no profile when one was calibrated on another workload
BOUNDS_NOTE_KEY = pytest.StashKey[str | None]()
#: files of the output directory that could not be written (a full disk), with why
UNWRITTEN_KEY = pytest.StashKey[list[str]]()


@dataclass
class RunHealth:
    """What went wrong in this session, so that only whole, valid runs reach the history."""

    expected: set[str] = field(default_factory=set)
    completed: set[str] = field(default_factory=set)
    broken: dict[str, str] = field(default_factory=dict)
    bound_failures: dict[str, str] = field(default_factory=dict)

    def refusal(self, interrupted: bool) -> str | None:
        """Why this run must stay out of the history, or None when it may be saved."""
        if interrupted:
            return "the run was interrupted"
        if self.broken:
            reasons = sorted(set(self.broken.values()))
            if len(reasons) == 1 and len(self.broken) > 1:  # one cause (a model that did not load): say it once
                return f"{len(self.broken)} benchmark(s) broke, all with: {reasons[0]}"
            details = "; ".join(f"{node}: {why}" for node, why in sorted(self.broken.items()))
            return f"{len(self.broken)} benchmark(s) broke ({details})"
        missing = self.expected - self.completed
        if missing:
            return f"incomplete: {len(missing)} benchmark(s) did not run ({', '.join(sorted(missing))})"
        return None


class FBCacheSession:
    def __init__(self, config: HarnessConfig, profile: BoundsProfile | None) -> None:
        self.config = config
        self.profile = profile
        self.records: dict[str, BenchRecord] = {}
        self.health = RunHealth()
        self.model_load_s: float | None = None
        #: wall time of the session's first generation (schedule.generate_once), once per run
        self.cold_start_s: float | None = None
        self._model: LoadedModel | None = None
        self._load_failure: str | None = None
        self._backend: CacheBackend | None = None
        #: the uncached image of each prompt (key: prompt index, None without a set)
        self._references: dict[int | None, np.ndarray] = {}
        #: each computed image metric's computation, prepared once (:meth:`image_metrics`)
        self._computes: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {}
        #: thresholds and prompts whose benchmarks were collected (all configured ones unless deselected)
        self.planned_thresholds: tuple[Threshold, ...] = config.thresholds
        self.planned_prompts: tuple[int, ...] = ()
        self._interleaved: Any = None
        self._interleave_error: BaseException | None = None
        #: where each generation's progress line goes (the terminal, set by the fbcache_session fixture)
        self.progress_write: Write | None = None
        self._progress: Progress | None = None
        #: each benchmark's extra_info by record label: pytest-benchmark saves it at the end of the session, so a
        #: bound that a later benchmark finds broken (a prompt set's mean) can still mark the prompt that broke it
        self.extra_infos: dict[str, dict[str, Any]] = {}
        #: the untimed profiled generations and FLOPs counts after the timed rounds: how many, and their wall seconds
        self.explain_generations = 0
        self.explain_cost_s = 0.0
        #: the FLOPs counts of the run by kind of work, and how many benchmarks took one instead of counting
        self.flops_memo = explain.FlopsMemo()
        self.flops_shared = 0
        #: a compiled session's compile cache (configure opens it; None for an eager session)
        self.compile_cache: CompileCache | None = None

    def note_explained(self, seconds: float, generations: int, flops_shared: bool) -> None:
        self.explain_generations += generations
        self.explain_cost_s += seconds
        self.flops_shared += int(flops_shared)

    def progress(self, total: int) -> Progress:
        """The sweep's one progress counter, made by the first benchmark, which passes the sweep's total."""
        if self._progress is None:
            self._progress = Progress(self.progress_write, total)
        return self._progress

    @property
    def model(self) -> LoadedModel:
        """The pipeline, loaded once per session on first use.

        A model that fails to load fails once: the failure is kept, and every later benchmark fails at
        once with the same one-line message instead of loading (and logging) it again.
        """
        if self._load_failure is not None:
            pytest.fail(self._load_failure, pytrace=False)
        if self._model is None:
            if self.config.device.startswith("cpu") and self.config.threads is not None:
                import torch

                torch.set_num_threads(self.config.threads)
            if self.compile_cache is not None:  # before anything compiles
                self.compile_cache.activate()
            started = time.perf_counter()
            try:
                self._model = load_model(self.config)
            except Exception as exc:  # any loader error (bad file, unreachable hub): one message, no retry
                detail = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
                self._load_failure = (f"fbcache: model {self.config.model!r} failed to load: {type(exc).__name__}"
                                      + (f": {detail[:300]}" if detail else ""))
                pytest.fail(self._load_failure, pytrace=False)
            self.model_load_s = time.perf_counter() - started
        return self._model

    @property
    def notes(self) -> list[str]:
        """Caveats of the loaded model (e.g. timing only); empty before it is loaded."""
        return list(self._model.notes) if self._model is not None else []

    @property
    def backend(self) -> CacheBackend:
        if self._backend is None:
            self._backend = backends.get(self.config.cache_backend).create(self.model.pipe, self.config)
        return self._backend

    def uncached_median(self, prompt_index: int | None = None) -> float | None:
        record = self.records.get(label_of(None, prompt_index))
        return record.median_s if record is not None else None

    def interleaved(self, run: Any) -> Any:
        """The interleaved rounds of every benchmark, timed once (by the first benchmark that asks)."""
        if self._interleave_error is not None:
            raise BrokenRunError(f"the interleaved rounds failed: {self._interleave_error}")
        if self._interleaved is None:
            try:
                self._interleaved = run()
            except Exception as exc:
                self._interleave_error = exc
                raise
        return self._interleaved

    def set_reference(self, image: np.ndarray, prompt_index: int | None = None) -> None:
        self._references.setdefault(prompt_index, image)

    def reference_image(self, generate: Any, prompt_index: int | None = None) -> np.ndarray:
        """The uncached image for this prompt and seed; generated (untimed) if no baseline ran yet."""
        if prompt_index not in self._references:
            if not self.backend.can_run_uncached:
                raise BrokenRunError(
                    f"the {self.backend.name} cache cannot be removed once applied, and no uncached image "
                    "was made before it; run the uncached benchmark first (do not deselect it)")
            self._references[prompt_index] = generate()
        return self._references[prompt_index]

    def image_metrics(self, image: np.ndarray, reference: np.ndarray) -> dict[str, float | None]:
        """Every metric this run computes, of ``image`` against the uncached ``reference`` (after the clock);
        a metric that prepares its computation (weights, device) does so once, on first use."""
        found: dict[str, float | None] = {}
        for metric in metrics.selected(self.config.metrics):
            if metric.name not in self._computes:
                self._computes[metric.name] = metric.prepare(self.config) if metric.prepare else metric.compute
            found[metric.name] = self._computes[metric.name](image, reference)
        return found


# ------------------------------------------------------------------------------------ configure and collect


def configure(config: pytest.Config) -> None:
    """Build the session from the options, or keep the configuration error to raise at collection."""
    _defer_compare(config)
    try:
        harness = build_config(resolve_raw(config))
        check_environment(harness)
        info = fbcache_machine_info(harness)
        facts = match_facts(info)
        profile = resolve_profile(harness.bounds, bounds_dir(config, harness), facts)
        if profile is not None:
            check_measured(profile, harness.metrics)
        if profile is None and harness.bounds.strip().lower() == "auto":
            config.stash[BOUNDS_NOTE_KEY] = other_workload(bounds_dir(config, harness), facts)
    except ConfigError as exc:
        name = option_name(exc.option)
        config.stash[CONFIG_ERROR_KEY] = exc.from_source(source_of(config, name)) if name else exc
        return
    session = config.stash[SESSION_KEY] = FBCacheSession(harness, profile)
    if harness.compile != "none":
        session.compile_cache = CompileCache.open(harness.compile_cache, info)
    config.stash[MACHINE_INFO_KEY] = info


def bounds_dir(config: pytest.Config, harness: HarnessConfig) -> Path:
    """``--fbcache-bounds-dir``, else ``benchmarks/bounds`` under the rootdir."""
    return harness.bounds_dir or Path(config.rootpath) / "benchmarks" / "bounds"


def _defer_compare(config: pytest.Config) -> None:
    """pytest-benchmark would load the runs of ``--benchmark-compare`` at configure, through its own
    storage, which a malformed run file crashes (after the whole sweep, or as an INTERNALERROR); hide
    the option from it until :func:`start` loads them through :class:`AtomicFileStorage`."""
    compare = getattr(config.option, "benchmark_compare", None)
    if compare:
        config.stash[COMPARE_KEY] = compare
        config.option.benchmark_compare = []  # pytest-benchmark's "not given"


def header(config: pytest.Config) -> list[str]:
    session = config.stash.get(SESSION_KEY, None)
    return [] if session is None else [display.timing_header(session.config)]


def session_or_usage_error(config: pytest.Config) -> FBCacheSession:
    error = config.stash.get(CONFIG_ERROR_KEY, None)
    if error is not None:
        raise pytest.UsageError(f"fbcache: {error}")
    return config.stash[SESSION_KEY]


def is_fbcache_item(item: pytest.Item) -> bool:
    return "fbcache_bench" in getattr(item, "fixturenames", ())


def parametrize(metafunc: pytest.Metafunc) -> None:
    """One benchmark per configured threshold (and, with a prompt set, per prompt of this shard)."""
    # with a configuration error there is nothing to sweep; collection_modifyitems reports it
    session = metafunc.config.stash.get(SESSION_KEY, None)
    if "fbcache_threshold" in metafunc.fixturenames:
        thresholds = session.config.thresholds if session is not None else ()
        metafunc.parametrize("fbcache_threshold", thresholds, ids=[f"t{t:g}" for t in thresholds])
    if "fbcache_prompt" in metafunc.fixturenames and session is not None and session.config.prompt_set is not None:
        # one benchmark per (threshold, prompt), ids by the prompt's index in the whole set: a shard's
        # benchmarks keep their names, so the shards of one sweep union into the unsharded run
        indices = session.config.shard_indices
        metafunc.parametrize("fbcache_prompt", indices, ids=[f"p{i}" for i in indices])


def plan(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fail fast on bad options; run the uncached baseline first (some caches cannot be removed again)."""
    fbcache_items = [item for item in items if is_fbcache_item(item)]
    if not fbcache_items:
        return
    session = session_or_usage_error(config)
    try:
        cached = sum("fbcache_threshold" in getattr(item, "fixturenames", ()) for item in fbcache_items)
        check_compile_selection(session.config, cached)
    except ConfigError as exc:
        raise pytest.UsageError(f"fbcache: {exc}") from None
    if not config.option.collectonly:  # --co runs nothing: no sweep, so no "history: NOT saved" either
        session.health.expected = {item.nodeid for item in fbcache_items}
    planned = {item.callspec.params["fbcache_threshold"] for item in fbcache_items
               if hasattr(item, "callspec") and "fbcache_threshold" in item.callspec.params}
    session.planned_thresholds = tuple(sorted(planned))
    prompts = {item.callspec.params["fbcache_prompt"] for item in fbcache_items
               if hasattr(item, "callspec") and item.callspec.params.get("fbcache_prompt") is not None}
    session.planned_prompts = tuple(sorted(prompts))
    items.sort(key=lambda item: not (is_fbcache_item(item)
                                     and "fbcache_threshold" not in getattr(item, "fixturenames", ())))


def for_benchmarks(config: pytest.Config) -> FBCacheSession:
    """The session, ready for its first benchmark: output directory made, progress lines to the terminal."""
    session = config.stash[SESSION_KEY]
    session.config.output_dir.mkdir(parents=True, exist_ok=True)
    session.progress_write = display.terminal_writer(config)
    return session


def note_outcome(item: pytest.Item, call: pytest.CallInfo, outcome: Any) -> None:
    """Count each fbcache benchmark as completed, broken, or completed with a broken bound (``outcome``:
    the makereport hook's result)."""
    if not is_fbcache_item(item) or SESSION_KEY not in item.config.stash:
        return
    report = outcome.get_result()
    health = item.config.stash[SESSION_KEY].health
    if report.failed:
        excinfo = call.excinfo
        if report.when == "call" and excinfo is not None and excinfo.errisinstance(BoundViolation):
            health.bound_failures[item.nodeid] = str(excinfo.value)
            health.completed.add(item.nodeid)
        else:
            reason = excinfo.exconly().splitlines()[0] if excinfo is not None else report.longreprtext[:200]
            health.broken[item.nodeid] = reason
    elif report.when == "call" and report.passed:
        health.completed.add(item.nodeid)


# ------------------------------------------------------------------------------------ the history


def shard_dir(shard: Shard) -> str:
    """Where a shard saves, under the storage: ``shards/0-of-2``; ``fbcache merge`` reads it from there."""
    return f"shards/{shard.rank}-of-{shard.world_size}"


def start(session: pytest.Session) -> None:
    """Save through :class:`AtomicFileStorage` (a shard under its own folder), check now that it can be
    written, and load ``--benchmark-compare``'s runs through it."""
    benchmark_session = compat.benchmark_session(session.config)
    if benchmark_session is not None:
        fb = session.config.stash.get(SESSION_KEY, None)
        shard = fb.config.shard if fb is not None else None
        storage = install_atomic_storage(benchmark_session, shard_dir(shard) if shard is not None else None)
        if storage is not None and compat.will_save(benchmark_session):
            _check_storage_writable(session.config, storage)
        compare = session.config.stash.get(COMPARE_KEY, None)
        if compare:  # pytest-benchmark's own loading, now through the storage that skips malformed runs
            compat.load_compared(benchmark_session, compare)


def _check_storage_writable(config: pytest.Config, storage: AtomicFileStorage) -> None:
    """A run that cannot be saved is found out now, before any model is built, not after the sweep."""
    target = storage.path / storage.default_machine_id if storage.default_machine_id else storage.path
    try:
        check_writable_dir("--benchmark-storage", str(target))
    except ConfigError as exc:
        config.stash.setdefault(CONFIG_ERROR_KEY, exc)


def update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    info = config.stash.get(MACHINE_INFO_KEY, None)
    if info is not None:
        machine_info["fbcache"] = info


def update_json(config: pytest.Config, output_json: dict) -> None:
    """The run's startup, once per run, as a top-level key of the run file (fbcache.history.Startup)."""
    fb = config.stash.get(SESSION_KEY, None)
    if fb is not None and (fb.model_load_s is not None or fb.cold_start_s is not None):
        output_json[STARTUP_KEY] = Startup(fb.model_load_s, fb.cold_start_s).to_json()


def check_comparable(config: pytest.Config, machine_info: dict, compared_benchmark: dict) -> None:
    """Refuse to compare runs of different accelerators, models, quantizations, backends or workloads."""
    session = session_or_usage_error(config)
    differences = fingerprint_differences(fingerprint_of(machine_info), fingerprint_of(compared_benchmark.get("machine_info", {})))
    if differences and not session.config.force_compare:
        raise pytest.UsageError(
            "fbcache: --benchmark-compare refused, the saved run is not comparable with this one:\n  "
            + "\n  ".join(differences)
            + "\nCompare against a run with the same fingerprint, or pass --fbcache-force-compare.")


def finish(session: pytest.Session, exitstatus: int) -> AtomicFileStorage | None:
    """Before pytest-benchmark saves: veto broken runs, write the table, calibrate if asked. Returns the
    storage the run is saved to, for :func:`after_save`."""
    fb = session.config.stash.get(SESSION_KEY, None)
    storage = None
    if fb is not None and fb.health.expected:
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        refusal = fb.health.refusal(interrupted)
        benchmark_session = compat.benchmark_session(session.config)
        storage = install_atomic_storage(benchmark_session) if benchmark_session is not None else None
        if refusal and storage is not None:
            storage.refuse(refusal)
        unwritten = session.config.stash.setdefault(UNWRITTEN_KEY, [])
        if fb.records:
            fingerprint = session.config.stash[MACHINE_INFO_KEY]["fingerprint"]
            _write_output(unwritten, fb.config.output_dir / display.results_file(fb.config),
                          lambda path: replace_file(path, display.results_markdown(fb).encode()))
            _write_output(unwritten, fb.config.output_dir / IMAGES_RECORD_NAME,
                          lambda path: write_images_record(path.parent, fingerprint))
        if fb.config.calibrate is not None and refusal is None and fb.records and fb.config.shard is None:
            _write_output(unwritten, fb.config.calibrate,
                          lambda path: replace_file(path, _calibration(session.config, fb).encode()))
    return storage


def after_save(session: pytest.Session, storage: AtomicFileStorage | None) -> None:
    """A run that could not be saved (a full disk) fails the session, exit 3, as a broken sweep does."""
    if storage is not None and storage.failure is not None:
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR


def _write_output(unwritten: list[str], path: Path, write: Callable[[Path], object]) -> None:
    """A file beside the history (results table, provenance, calibrated profile): a failure to write it
    (a full disk) is one line in the summary, never a traceback that also loses the history save."""
    try:
        write(path)
    except OSError as exc:
        unwritten.append(f"{path}: NOT written: {exc.strerror or exc}")


def _calibration(config: pytest.Config, fb: FBCacheSession) -> str:
    info = config.stash[MACHINE_INFO_KEY]
    accelerator = info["accelerator"]["name"]
    target = fb.config.calibrate
    assert target is not None  # only called when --fbcache-calibrate was given
    return calibrate(
        fb.records.values(), fb.config.calibrate_speedup_margin, fb.config.calibrate_margins,
        name=target.stem,
        match=match_facts(info),
        enforce_speedup=fb.config.device.startswith("cuda"),
        measured_on=f"{accelerator}, {fb.config.model}, {fb.config.quant}, {fb.config.cache_backend}, "
                    f"{fb.config.steps} steps, {fb.config.resolution}",
    )


def summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The ``fbcache`` section of the terminal summary, after pytest-benchmark saved (or refused) the run."""
    fb = config.stash.get(SESSION_KEY, None)
    if fb is None or not fb.health.expected:
        return
    benchmark_session = compat.benchmark_session(config)
    storage = compat.session_storage(benchmark_session) if benchmark_session is not None else None
    atomic = storage if isinstance(storage, AtomicFileStorage) else None
    refusal = atomic.refusal or atomic.failure if atomic is not None else None
    refusal = refusal or fb.health.refusal(exitstatus == pytest.ExitCode.INTERRUPTED)
    display.terminal_summary(terminalreporter, fb, len(fb.health.bound_failures), config.stash.get(BOUNDS_NOTE_KEY, None),
                             refusal, atomic.saved_path if atomic is not None else None,
                             config.stash.get(UNWRITTEN_KEY, []))
