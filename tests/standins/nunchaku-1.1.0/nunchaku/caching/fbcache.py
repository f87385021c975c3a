"""STAND-IN for nunchaku 1.1.0's ``nunchaku/caching/fbcache.py`` (tests only, not the real engine).

Since 1.0.0 (engine PR #621) the model-independent part of the first-block cache lives here: the
per-call cache context and its named buffers (``get_buffer`` / ``set_buffer``), the decision
``get_can_use_cache`` - which now returns two 0-dim tensors, ``(is_similar, diff)``, and
``(tensor(False), tensor(threshold))`` while nothing is cached - and ``check_and_apply_cache``, which
calls the decision through this module's globals. Names, signatures and return kinds:
tests/data/nunchaku-api-v1.1.0.json.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import defaultdict

import torch


@dataclasses.dataclass
class CacheContext:
    """Tensors kept for the length of one pipeline call, by name."""

    buffers: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    incremental_name_counters: defaultdict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))

    def get_incremental_name(self, name=None):
        base = "default" if name is None else name
        index = self.incremental_name_counters[base]
        self.incremental_name_counters[base] = index + 1
        return f"{base}_{index}"

    def reset_incremental_name(self):
        self.incremental_name_counters.clear()

    def get_buffer(self, name):
        return self.buffers.get(name)

    def set_buffer(self, name, buffer):
        self.buffers[name] = buffer

    def clear_buffers(self):
        self.buffers.clear()


_current_cache_context: CacheContext | None = None


def get_buffer(name):
    context = get_current_cache_context()
    assert context is not None, "cache_context must be set before"
    return context.get_buffer(name)


def set_buffer(name, buffer):
    context = get_current_cache_context()
    assert context is not None, "cache_context must be set before"
    context.set_buffer(name, buffer)


def create_cache_context():
    return CacheContext()


def get_current_cache_context():
    return _current_cache_context


@contextlib.contextmanager
def cache_context(cache_context):
    global _current_cache_context
    saved, _current_cache_context = _current_cache_context, cache_context
    try:
        yield
    finally:
        _current_cache_context = saved


def are_two_tensors_similar(t1, t2, *, threshold, parallelized=False):
    """mean|t1 - t2| / mean|t1| and whether it is below ``threshold``, both 0-dim tensors (no host sync)."""
    diff = (t1 - t2).abs().mean() / t1.abs().mean()
    return diff < threshold, diff


def apply_prev_hidden_states_residual(hidden_states, encoder_hidden_states=None, mode="multi"):
    """Add the cached residuals: ``(hidden, encoder)`` for "multi", the hidden states alone for "single"."""
    if mode not in ("multi", "single"):
        raise ValueError(f"Unknown mode {mode}; expected 'multi' or 'single'")
    residual = get_buffer(f"{mode}_hidden_states_residual")
    assert residual is not None, f"{mode}_hidden_states_residual must be set before"
    hidden_states = (hidden_states + residual).contiguous()
    if mode == "single":
        return hidden_states
    if encoder_hidden_states is not None:
        encoder_residual = get_buffer("multi_encoder_hidden_states_residual")
        assert encoder_residual is not None, "multi_encoder_hidden_states_residual must be set before"
        encoder_hidden_states = (encoder_hidden_states + encoder_residual).contiguous()
    return hidden_states, encoder_hidden_states


def get_can_use_cache(first_hidden_states_residual, threshold, parallelized=False, mode="multi"):
    """The first-block decision: is this step's first-block residual close to the cached one?"""
    if mode not in ("multi", "single"):
        raise ValueError(f"Unknown mode {mode}; expected 'multi' or 'single'")
    previous = get_buffer(f"first_{mode}_hidden_states_residual")
    if previous is None:
        device = first_hidden_states_residual.device
        return torch.tensor(False, device=device), torch.tensor(threshold, device=device)
    return are_two_tensors_similar(previous, first_hidden_states_residual, threshold=threshold,
                                   parallelized=parallelized)


def check_and_apply_cache(*, first_residual, hidden_states, encoder_hidden_states=None, threshold, parallelized,
                          mode, verbose, call_remaining_fn, remaining_kwargs):
    """Decide, then either add the cached residuals or run the remaining blocks and cache theirs."""
    can_use_cache, diff = get_can_use_cache(first_residual, threshold=threshold, parallelized=parallelized,
                                            mode=mode)
    if verbose:
        print(f"[{mode.upper()}] cache {'hit' if can_use_cache else 'miss'}, diff={float(diff):.4f}")
    if can_use_cache:
        applied = apply_prev_hidden_states_residual(hidden_states, encoder_hidden_states, mode=mode)
        if mode == "single":
            return applied, None, threshold
        hidden, encoder = applied
        return hidden, encoder, threshold
    set_buffer(f"first_{mode}_hidden_states_residual", first_residual)
    result = call_remaining_fn(hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states,
                               **remaining_kwargs)
    if mode == "multi":
        hidden, encoder, hidden_residual, encoder_residual = result
        set_buffer("multi_hidden_states_residual", hidden_residual)
        set_buffer("multi_encoder_hidden_states_residual", encoder_residual)
        return hidden, encoder, threshold
    hidden, residual = result
    set_buffer("single_hidden_states_residual", residual)
    return hidden, None, threshold
