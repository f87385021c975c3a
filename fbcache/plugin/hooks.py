"""The pytest plugin: options, parametrisation, history guards and the end-of-run table.

Registered by the repository's ``conftest.py``. Configuration errors are collected at configure
time and raised as soon as fbcache benchmarks are collected (or a compare needs them), always
before any model is built; a plain ``pytest tests`` run never trips over them.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from fbcache.config.harness import HarnessConfig
from fbcache.config.options import check_writable_dir
from fbcache.config.prompts import Shard
from fbcache.configure import (
    add_options,
    build_config,
    check_compile_selection,
    check_environment,
    option_name,
    options,
    resolve_raw,
    source_of,
)
from fbcache.errors import BoundViolation, ConfigError
from fbcache.history import provenance
from fbcache.history.fingerprint import fingerprint_differences, fingerprint_of, match_facts
from fbcache.history.record import UNCACHED
from fbcache.history.storage import AtomicFileStorage, install_atomic_storage, replace_file
from fbcache.plugin.fixture import (  # noqa: F401 fixtures
    CONFIG_ERROR_KEY,
    SESSION_KEY,
    fbcache_bench,
    fbcache_prompt,
    fbcache_session,
)
from fbcache.plugin.machine import fbcache_machine_info
from fbcache.plugin.session import FBCacheSession
from fbcache.render import table
from fbcache.verdicts.bounds import calibrate, other_workload, resolve_profile

MACHINE_INFO_KEY = pytest.StashKey[dict]()
#: ``--benchmark-compare``'s value, held back from pytest-benchmark until the session starts
COMPARE_KEY = pytest.StashKey[Any]()
#: why ``--fbcache-bounds auto`` chose no profile when one was calibrated on another workload
BOUNDS_NOTE_KEY = pytest.StashKey[str | None]()
#: files of the output directory that could not be written (a full disk), with why
UNWRITTEN_KEY = pytest.StashKey[list[str]]()
RESULTS_FILE = "results.md"


def results_file(harness: HarnessConfig) -> str:
    """``results.md``; each shard of a sharded sweep writes its own (they share the output directory)."""
    shard = harness.shard
    return RESULTS_FILE if shard is None else f"results-shard{shard.rank}-of-{shard.world_size}.md"


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


def timing_header(c: HarnessConfig) -> str:
    """How fbcache really times its benchmarks; pytest-benchmark's header shows its own defaults, which it does not use."""
    clock = "time.process_time (the process's CPU time)" if c.clock == "cpu" else "time.perf_counter (wall time)"
    schedule = ("interleaved (round 1 of every benchmark, then round 2, ...)" if c.interleaved
                else "sequential (each benchmark's rounds back to back)")
    threads = f", torch threads {c.threads}" if c.device.startswith("cpu") and c.threads else ""
    return (f"fbcache: timer={clock}, rounds={c.rounds} (+{c.warmup_rounds} untimed warm-up) per benchmark, "
            f"{schedule}{threads}; pytest-benchmark's defaults above (timer, min_rounds, warmup) do not apply "
            "to fbcache benchmarks (see --fbcache-clock, --fbcache-rounds, --fbcache-interleave)")


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = config.stash.get(SESSION_KEY, None)
    return [] if session is None else [timing_header(session.config)]


def bounds_dir(config: pytest.Config, harness: HarnessConfig) -> Path:
    """``--fbcache-bounds-dir``, else ``benchmarks/bounds`` under the rootdir."""
    return harness.bounds_dir or Path(config.rootpath) / "benchmarks" / "bounds"


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark's, which loads --benchmark-compare's runs
def pytest_configure(config: pytest.Config) -> None:
    _defer_compare(config)
    try:
        harness = build_config(resolve_raw(config))
        check_environment(harness)
        info = fbcache_machine_info(harness)
        facts = match_facts(info)
        profile = resolve_profile(harness.bounds, bounds_dir(config, harness), facts)
        if profile is None and harness.bounds.strip().lower() == "auto":
            config.stash[BOUNDS_NOTE_KEY] = other_workload(bounds_dir(config, harness), facts)
    except ConfigError as exc:
        name = option_name(exc.option)
        config.stash[CONFIG_ERROR_KEY] = exc.from_source(source_of(config, name)) if name else exc
        return
    config.stash[SESSION_KEY] = FBCacheSession(harness, profile)
    config.stash[MACHINE_INFO_KEY] = info


def _defer_compare(config: pytest.Config) -> None:
    """pytest-benchmark would load the runs of ``--benchmark-compare`` at configure, through its own
    storage, which a malformed run file crashes (after the whole sweep, or as an INTERNALERROR); hide
    the option from it until :func:`pytest_sessionstart` loads them through :class:`AtomicFileStorage`."""
    compare = getattr(config.option, "benchmark_compare", None)
    if compare:
        config.stash[COMPARE_KEY] = compare
        config.option.benchmark_compare = []  # pytest-benchmark's "not given"


def _session_or_usage_error(config: pytest.Config) -> FBCacheSession:
    error = config.stash.get(CONFIG_ERROR_KEY, None)
    if error is not None:
        raise pytest.UsageError(f"fbcache: {error}")
    return config.stash[SESSION_KEY]


def _is_fbcache_item(item: pytest.Item) -> bool:
    return "fbcache_bench" in getattr(item, "fixturenames", ())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
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


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fail fast on bad options; run the uncached baseline first (some caches cannot be removed again)."""
    fbcache_items = [item for item in items if _is_fbcache_item(item)]
    if not fbcache_items:
        return
    session = _session_or_usage_error(config)
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
    items.sort(key=lambda item: not (_is_fbcache_item(item)
                                     and "fbcache_threshold" not in getattr(item, "fixturenames", ())))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Generator[None, Any, None]:
    outcome = yield
    if not _is_fbcache_item(item) or SESSION_KEY not in item.config.stash:
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


def shard_dir(shard: Shard) -> str:
    """Where a shard saves, under the storage: ``shards/0-of-2``; ``fbcache merge`` reads it from there."""
    return f"shards/{shard.rank}-of-{shard.world_size}"


def pytest_sessionstart(session: pytest.Session) -> None:
    benchmark_session = getattr(session.config, "_benchmarksession", None)
    if benchmark_session is not None:
        fb = session.config.stash.get(SESSION_KEY, None)
        shard = fb.config.shard if fb is not None else None
        storage = install_atomic_storage(benchmark_session, shard_dir(shard) if shard is not None else None)
        if storage is not None and (benchmark_session.save or benchmark_session.autosave):
            _check_storage_writable(session.config, storage)
        compare = session.config.stash.get(COMPARE_KEY, None)
        if compare:  # pytest-benchmark's own loading, now through the storage that skips malformed runs
            benchmark_session.compare = compare
            benchmark_session.handle_loading()


def _check_storage_writable(config: pytest.Config, storage: AtomicFileStorage) -> None:
    """A run that cannot be saved is found out now, before any model is built, not after the sweep."""
    target = storage.path / storage.default_machine_id if storage.default_machine_id else storage.path
    try:
        check_writable_dir("--benchmark-storage", str(target))
    except ConfigError as exc:
        config.stash.setdefault(CONFIG_ERROR_KEY, exc)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    info = config.stash.get(MACHINE_INFO_KEY, None)
    if info is not None:
        machine_info["fbcache"] = info


def pytest_benchmark_compare_machine_info(config: pytest.Config, benchmarksession: Any, machine_info: dict,
                                          compared_benchmark: dict) -> None:
    """Refuse to compare runs of different accelerators, models, quantizations, backends or workloads."""
    session = _session_or_usage_error(config)
    differences = fingerprint_differences(fingerprint_of(machine_info), fingerprint_of(compared_benchmark.get("machine_info", {})))
    if differences and not session.config.force_compare:
        raise pytest.UsageError(
            "fbcache: --benchmark-compare refused, the saved run is not comparable with this one:\n  "
            + "\n  ".join(differences)
            + "\nCompare against a run with the same fingerprint, or pass --fbcache-force-compare.")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
    """Before pytest-benchmark saves: veto broken runs, write the table, calibrate if asked. After:
    a run that could not be saved (a full disk) fails the session, exit 3, as a broken sweep does."""
    fb = session.config.stash.get(SESSION_KEY, None)
    storage = None
    if fb is not None and fb.health.expected:
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        refusal = fb.health.refusal(interrupted)
        benchmark_session = getattr(session.config, "_benchmarksession", None)
        storage = install_atomic_storage(benchmark_session) if benchmark_session is not None else None
        if refusal and storage is not None:
            storage.refuse(refusal)
        unwritten = session.config.stash.setdefault(UNWRITTEN_KEY, [])
        if fb.records:
            fingerprint = session.config.stash[MACHINE_INFO_KEY]["fingerprint"]
            _write_output(unwritten, fb.config.output_dir / results_file(fb.config),
                          lambda path: replace_file(path, _results_markdown(fb).encode()))
            _write_output(unwritten, fb.config.output_dir / provenance.RECORD_NAME,
                          lambda path: provenance.write_record(path.parent, fingerprint))
        if fb.config.calibrate is not None and refusal is None and fb.records and fb.config.shard is None:
            _write_output(unwritten, fb.config.calibrate,
                          lambda path: replace_file(path, _calibration(session.config, fb).encode()))
    yield
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


def _results_markdown(fb: FBCacheSession) -> str:
    records = list(fb.records.values())
    parts = [table.markdown_table(records), "", "Hits per step ('#' computed, '.' cache hit):", "```",
             table.hit_map(records), "```", "", "Relative first-block residual difference per step:", "```",
             table.residual_ranges(records), "```"]
    if fb.notes:
        parts += [""] + [f"> {note}" for note in fb.notes]
    warnings = sorted({w for r in records for w in (r.machine_state or {}).get("warnings", [])})
    if warnings:
        parts += ["", "Machine state changed during the run (timings may not be comparable):"]
        parts += [f"- warning: {w}" for w in warnings]
    return "\n".join(parts) + "\n"


def _timing_checks(fb: FBCacheSession) -> list[str]:
    lines = []
    agreements = [r.timer_agreement_pct for r in fb.records.values() if r.timer_agreement_pct is not None]
    if agreements:
        lines.append(f"timer check: host timer vs CUDA events differ by at most {max(agreements):.3f}% "
                     f"over {sum(len(r.cuda_event_s) for r in fb.records.values())} timed generations")
    uncached = fb.records.get(UNCACHED)
    if uncached is not None and uncached.overhead_pct is not None:
        lines.append(f"self-check: recorded median vs bare loop median: {uncached.overhead_pct:+.2f}% "
                     f"({len(uncached.rounds_s)} vs {len(uncached.bare_loop_s)} uncached generations)")
    return lines


def _compile_lines(fb: FBCacheSession) -> list[str]:
    """Where compilation went: the first call of each cache state, untimed; none in timed rounds."""
    records = [r for r in table.ordered(fb.records.values()) if r.compile_warmup_s is not None]
    if not records:
        return []
    states = ", ".join(f"{r.label} {r.compile_warmup_s:.1f} s ({r.compile_graphs} new graphs)" for r in records)
    first = records[0]
    compile_s = "—" if first.compile_s is None else f"{first.compile_s:.1f} s"
    return [f"compile: {fb.config.compile}; first call of each cache state, untimed: {states}",
            f"compile: first-call compile time {compile_s} ({first.label}: first call minus timed median); "
            f"no compilation during the timed rounds of {len(records)} benchmark(s)"]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    fb = config.stash.get(SESSION_KEY, None)
    if fb is None or not fb.health.expected:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fbcache")
    if fb.records:
        _write_results(write, fb, config.stash.get(BOUNDS_NOTE_KEY, None))
    storage = getattr(getattr(config, "_benchmarksession", None), "storage", None)
    refusal = storage.refusal or storage.failure if isinstance(storage, AtomicFileStorage) else None
    refusal = refusal or fb.health.refusal(exitstatus == pytest.ExitCode.INTERRUPTED)
    if refusal:
        write(f"history: NOT saved: {refusal}", red=True)
    elif isinstance(storage, AtomicFileStorage) and storage.saved_path is not None:
        marked = " (marked: bounds broken)" if fb.health.bound_failures else ""
        write(f"history: saved {storage.saved_path}{marked}")
    for line in config.stash.get(UNWRITTEN_KEY, []):
        write(line, red=True)
    if fb.records:
        write(f"images and {results_file(fb.config)}: {fb.config.output_dir}")


def _write_results(write: Any, fb: FBCacheSession, bounds_note: str | None) -> None:
    c = fb.config
    write(f"model {c.model} | quantization {c.quant} | compile {c.compile} | cache {c.cache_backend} | {c.steps} steps | "
          f"{c.resolution} | device {c.device} | rounds {c.rounds} (+{c.warmup_rounds} warm-up, "
          f"{'interleaved' if c.interleaved else 'sequential'})"
          + (f" | torch threads {c.threads}" if c.device.startswith("cpu") and c.threads else "")
          + (" | CPU clock (process time)" if c.clock == "cpu" else "")
          + (f" | model loaded once in {fb.model_load_s:.1f} s" if fb.model_load_s is not None else ""))
    if c.prompt_set is not None:
        write(f"prompt set {c.prompt_set.name} ({len(c.cases)} prompts, digest {c.prompt_set.digest})"
              + (f" | shard {c.shard.rank}/{c.shard.world_size} ({c.shard.origin}): prompts "
                 f"{', '.join(f'p{i}' for i in c.shard_indices)} on {c.device}" if c.shard is not None else ""))
    for line in _results_markdown(fb).splitlines():
        write(line)
    if fb.profile is not None:
        kept = not fb.health.bound_failures
        write(f"bounds: profile {fb.profile.name} ({fb.profile.source}): "
              + ("all enforced bounds kept" if kept else f"{len(fb.health.bound_failures)} benchmark(s) broke a bound"))
        for record in table.ordered(fb.records.values()):
            for message in record.bounds.get("reported", []):
                write(f"  note: {message}")
    else:
        write(f"bounds: none: {bounds_note}" if bounds_note else "bounds: none (no profile matched; see --fbcache-bounds)")
    for line in _timing_checks(fb) + _compile_lines(fb):
        write(line)
