"""Session state: one model, one cache backend, the uncached reference per prompt, and every record so far.

A pytest session builds at most one :class:`FBCacheSession`; the model loads on first use and is
shared by every benchmark, thresholds switching on that same pipeline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from fbcache import backends
from fbcache.backends import CacheBackend
from fbcache.config.harness import HarnessConfig
from fbcache.errors import BrokenRunError
from fbcache.history.record import BenchRecord, label_of
from fbcache.models import LoadedModel, load_model
from fbcache.plugin.progress import Progress, Write
from fbcache.verdicts.bounds import BoundsProfile


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
        self._model: LoadedModel | None = None
        self._load_failure: str | None = None
        self._backend: CacheBackend | None = None
        #: the uncached image of each prompt (key: prompt index, None without a set)
        self._references: dict[int | None, np.ndarray] = {}
        #: thresholds and prompts whose benchmarks were collected (all configured ones unless deselected)
        self.planned_thresholds: tuple[float, ...] = config.thresholds
        self.planned_prompts: tuple[int, ...] = ()
        self._interleaved: Any = None
        self._interleave_error: BaseException | None = None
        #: where each generation's progress line goes (the terminal, set by the fbcache_session fixture)
        self.progress_write: Write | None = None
        self._progress: Progress | None = None

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
