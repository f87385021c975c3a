"""``--fbcache-compile``: torch.compile the transformer once per session, before any cache is enabled.

``regional`` compiles each repeated block's ``forward`` (``block.forward = torch.compile(block.forward,
fullgraph=True)``), and it must happen before the first ``enable_cache``: diffusers' FBCache hooks
then wrap the *compiled* forward and stay plain Python, so the cache decision is taken eagerly, a
hit really skips the compiled blocks, and switching the cache on, off or to another threshold
compiles nothing new. On an H200 this gave 3 graphs for the whole session and 0 new graphs on every
cached call (docs/results/h200-compile-2026-11-27/). diffusers' ``compile_repeated_blocks`` is not
used: it compiles ``Module.__call__`` and so traces the hooks as well, which recompiles on the first
cached call and, with ``fullgraph=True``, fails on the hook's ``torch.compiler.disable``'d decision.

``full`` compiles the whole transformer ``forward`` (``fullgraph=True``). It only works without a
cache: the cache decision is data-dependent and runs outside compiled code, so a whole-transformer
graph cannot contain it (tiny model, CPU: "Skip inlining torch.compiler.disable()'d function
FBCHeadBlockHook._should_compute_remaining_blocks"). The harness refuses ``full`` when cached
benchmarks are selected.
"""

from __future__ import annotations

from typing import Any

from fbcache.config.options import COMPILE_MODES

MODES = COMPILE_MODES
#: the torch.compile backend; tests switch it to "aot_eager" (no C++ build) through their plugin
BACKEND = "inductor"
FULL_WITH_CACHE_REASON = ("the cache decision is data-dependent and runs outside compiled code, so a "
                          "whole-transformer graph breaks at every step's decision; use regional")


def repeated_blocks(transformer: Any) -> list[Any]:
    """FLUX's repeated blocks: the double-stream blocks, then the single-stream blocks."""
    blocks: list[Any] = []
    for name in ("transformer_blocks", "single_transformer_blocks"):
        blocks.extend(getattr(transformer, name, None) or [])
    if not blocks:
        raise ValueError(f"{type(transformer).__name__} has no transformer_blocks/single_transformer_blocks to compile")
    return blocks


def describe(compile_mode: str) -> str | None:
    """What ``compile_transformer`` does for this mode, for ``machine_info`` (None for ``none``)."""
    recipes = {
        "regional": f"torch.compile(block.forward, fullgraph=True, backend={BACKEND!r}) on every block of "
                    "transformer_blocks and single_transformer_blocks, before any enable_cache",
        "full": f"torch.compile(transformer.forward, fullgraph=True, backend={BACKEND!r})",
    }
    return recipes.get(compile_mode)


def compile_transformer(transformer: Any, compile_mode: str) -> int:
    """Wrap the transformer (or its blocks) in torch.compile; compilation itself happens on the first call.

    Returns how many functions were wrapped (0 for ``none``).
    """
    import torch

    if compile_mode == "none":
        return 0
    if compile_mode == "regional":
        blocks = repeated_blocks(transformer)
        for block in blocks:
            block.forward = torch.compile(block.forward, fullgraph=True, backend=BACKEND)
        return len(blocks)
    if compile_mode == "full":
        transformer.forward = torch.compile(transformer.forward, fullgraph=True, backend=BACKEND)
        return 1
    raise ValueError(f"unknown compile mode {compile_mode!r}; accepted: {', '.join(MODES)}")
