"""The nunchaku stand-ins are faithful: same caching API as the real engine, and its behaviour.

(a) ``tests/data/nunchaku-api-v*.json`` were extracted from nunchaku's git tags by
    ``tools/nunchaku_api.py``; each stand-in, extracted the same way, must match its manifest except
    for the omissions listed in ``OMITTED`` (with the reason for each): signatures, return kinds,
    re-exports and every function's decisions (which stage decides with which threshold).
(b) each stand-in's own decision path runs full tiny-FLUX generations, counted by wrapping the
    decision in the module that *defines* it: ``caching.utils`` on 0.3.2, ``caching.fbcache`` on
    1.x, where wrapping ``caching.utils.get_can_use_cache`` sees no call at all; the double
    first-block cache decides twice per step, ``mode="multi"`` then ``mode="single"``.

Every pipeline here is an instance of a fresh FluxPipeline subclass with a copy of the tiny
transformer, because ``apply_cache_on_pipe`` patches the pipeline *class* for good.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from fbcache.models.tiny import TINY_WEIGHTS, build_tiny_pipeline

ROOT = Path(__file__).resolve().parent.parent
STANDINS = ROOT / "tests" / "standins"
VERSIONS = ("0.3.2", "1.1.0")
#: releases whose caching layer the 1.1.0 stand-in mirrors too (their manifests equal 1.1.0's)
SAME_AS_1_1_0 = ("1.2.1",)
STEPS = 8
THRESHOLD = 0.5  # gives some hits, not all, on the trained tiny model in 8 steps
PROMPT = "A cute panda holding a sign that says hello world"
#: where the FLUX decision ``get_can_use_cache`` is defined (and called from)
DEFINING = {"0.3.2": "nunchaku.caching.utils", "1.1.0": "nunchaku.caching.fbcache"}

_FUSED = "fused-kernel plumbing of the engine's V1 Flux module, no diffusers counterpart"
_COMMON_OMITTED = {
    "nunchaku.caching.teacache": "TeaCache, a different cache",
    "nunchaku.caching.diffusers_adapters.sana": "Sana pipelines",
    "nunchaku.caching.utils:SanaCachedTransformerBlocks": "Sana pipelines",
    "nunchaku.caching.utils:FluxCachedTransformerBlocks.pack_rotemb": _FUSED,
}
OMITTED: dict[str, dict[str, str]] = {"0.3.2": _COMMON_OMITTED, "1.1.0": _COMMON_OMITTED}


def load_extractor() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nunchaku_api", ROOT / "tools" / "nunchaku_api.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


nunchaku_api = load_extractor()


# ---------------------------------------------------------------------------------------- (a) API


def surface(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest flattened to comparable entries: ``"<what> <module>:<name>" -> value``.

    Imports count only from inside ``nunchaku.caching`` (re-exports and the dispatch's local
    imports); stand-ins may import other nunchaku modules differently.
    """
    entries: dict[str, Any] = {}
    for module, info in manifest["modules"].items():
        entries[f"module {module}"] = info["path"]
        for name, function in info["functions"].items():
            entries[f"function {module}:{name}"] = (function["params"], function["returns"], function["decisions"])
        for name, cls in info["classes"].items():
            entries[f"class {module}:{name}"] = True
            for method, described in cls["methods"].items():
                entries[f"method {module}:{name}.{method}"] = (described["params"], described["decisions"])
        for name, target in info["reexports"].items():
            entries[f"reexport {module}:{name}"] = target
        for row in info["imports"]:
            if row["from"].startswith("nunchaku.caching"):
                entries[f"import {module}:{row['scope']}<-{row['from']}"] = row["names"]
    return entries


def omitted(key: str, omissions: dict[str, str]) -> bool:
    what, _, where = key.partition(" ")
    module, _, name = where.partition(":")
    if what == "import":
        return module in omissions or name.partition("<-")[2] in omissions
    owner = name.partition(".")[0]
    return module in omissions or f"{module}:{name}" in omissions or f"{module}:{owner}" in omissions


def standin_internal(key: str) -> bool:
    """Helpers the stand-in adds itself (leading underscore; the engine's caching API has none)."""
    name = key.partition(":")[2]
    return any(part.startswith("_") and not part.startswith("__") for part in name.split("."))


@pytest.mark.parametrize("version", VERSIONS)
def test_standin_api_matches_the_real_manifest(version):
    manifest = json.loads((ROOT / "tests" / "data" / f"nunchaku-api-v{version}.json").read_text())
    files, origin = nunchaku_api.read_directory(STANDINS / f"nunchaku-{version}")
    standin = nunchaku_api.extract(files, origin)

    assert manifest["source"]["tag"] == f"v{version}" and len(manifest["source"]["commit"]) == 40
    assert standin["version"] == manifest["version"] == version
    expected = {k: v for k, v in surface(manifest).items() if not omitted(k, OMITTED[version])}
    actual = {k: v for k, v in surface(standin).items() if not standin_internal(k)}
    assert sorted(set(expected) - set(actual)) == [], "the stand-in lacks these"
    assert sorted(set(actual) - set(expected)) == [], "the engine has no such thing"
    assert [k for k in expected if expected[k] != actual[k]] == [], \
        "signature, return kind, decisions or re-export differs"
    stale = [k for k in OMITTED[version] if not any(omitted(entry, {k: ""}) for entry in surface(manifest))]
    assert stale == [], "omitted names the engine does not have"


@pytest.mark.parametrize("version", SAME_AS_1_1_0)
def test_later_1x_releases_have_the_caching_layer_of_1_1_0(version):
    """The 1.1.0 stand-in stands for them too: their caching API is 1.1.0's to the last parameter."""
    later = json.loads((ROOT / "tests" / "data" / f"nunchaku-api-v{version}.json").read_text())
    mirrored = json.loads((ROOT / "tests" / "data" / "nunchaku-api-v1.1.0.json").read_text())
    assert later["source"]["tag"] == f"v{version}" and later["version"] == version
    assert later["modules"] == mirrored["modules"]


def manifest_modules(version: str) -> dict[str, Any]:
    return json.loads((ROOT / "tests" / "data" / f"nunchaku-api-v{version}.json").read_text())["modules"]


@pytest.mark.parametrize(("version", "adapter"), [("0.3.2", "flux"), ("1.1.0", "flux"), ("1.1.0", "flux_v2")])
def test_manifests_every_flux_adapter_takes_a_threshold_pair(version, adapter):
    """What fbcache passes for a MULTI/SINGLE pair, read from the engine: the V1 and the V2 adapter take it."""
    function = manifest_modules(version)[f"nunchaku.caching.diffusers_adapters.{adapter}"]["functions"][
        "apply_cache_on_transformer"]
    assert {"use_double_fb_cache", "residual_diff_threshold_multi", "residual_diff_threshold_single"} <= \
        {p["name"] for p in function["params"]}


V1_FORWARD = ("nunchaku.caching.utils", "FluxCachedTransformerBlocks", "forward")
V2_FORWARD = ("nunchaku.caching.utils_v2", None, "cached_forward_v2")


@pytest.mark.parametrize(("version", "where"), [("0.3.2", V1_FORWARD), ("1.1.0", V1_FORWARD), ("1.1.0", V2_FORWARD)])
def test_manifests_every_flux_forward_decides_double_then_single_stream(version, where):
    """The double cache's two decisions, in the engine's order, each with its own threshold."""
    module, owner, name = where
    info = manifest_modules(version)[module]
    function = info["classes"][owner]["methods"][name] if owner else info["functions"][name]
    assert [(d["mode"], d["threshold"]) for d in function["decisions"]] == [
        ("'multi'", "self.residual_diff_threshold_multi"), ("'single'", "self.residual_diff_threshold_single")]


def test_manifests_record_the_moved_decision():
    """The facts the adapter depends on, read from the real engine's manifests."""
    old = json.loads((ROOT / "tests/data/nunchaku-api-v0.3.2.json").read_text())["modules"]
    new = json.loads((ROOT / "tests/data/nunchaku-api-v1.1.0.json").read_text())["modules"]
    assert old["nunchaku.caching.utils"]["functions"]["get_can_use_cache"]["returns"] == \
        "tuple[bool, number] | tuple[bool, other]"
    assert new["nunchaku.caching.fbcache"]["functions"]["get_can_use_cache"]["returns"] == "tuple[tensor, tensor]"
    assert "get_can_use_cache" not in new["nunchaku.caching.utils"]["functions"]
    assert new["nunchaku.caching.utils"]["reexports"]["get_can_use_cache"] == \
        "nunchaku.caching.fbcache.get_can_use_cache"
    assert "get_buffer" not in new["nunchaku.caching.utils"]["reexports"]


# ------------------------------------------------------------------------------------ (b) behaviour


@contextlib.contextmanager
def standin_package(version: str) -> Iterator[ModuleType]:
    """``import nunchaku`` finds this stand-in until the block ends; other nunchaku modules come back."""
    folder = str(STANDINS / f"nunchaku-{version}")

    def mine(name: str) -> bool:
        return name == "nunchaku" or name.startswith("nunchaku.")

    saved = {name: module for name, module in sys.modules.items() if mine(name)}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, folder)
    importlib.invalidate_caches()
    try:
        yield importlib.import_module("nunchaku")
    finally:
        sys.path.remove(folder)
        for name in [name for name in sys.modules if mine(name)]:
            del sys.modules[name]
        sys.modules.update(saved)


@pytest.fixture(params=VERSIONS)
def nunchaku(request):
    with standin_package(request.param) as package:
        yield package


@pytest.fixture
def nunchaku_1x():
    with standin_package("1.1.0") as package:
        yield package


@pytest.fixture(scope="module")
def tiny():
    # one thread: on a busy 2-core machine two threads made an 8-step generation 10-30x slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pipe, _ = build_tiny_pipeline(weights=TINY_WEIGHTS)
        yield pipe
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def uncached(tiny):
    return generate(tiny)


def fresh_pipe(tiny, transformer_class: type | None = None):
    """A pipeline of its own class (the adapter patches the class) with its own transformer copy."""
    from diffusers import FluxPipeline

    transformer = copy.deepcopy(tiny.transformer)
    if transformer_class is not None:
        transformer.__class__ = transformer_class
    pipe_class = type("FluxPipelineUnderTest", (FluxPipeline,), {})
    pipe = pipe_class(**{**tiny.components, "transformer": transformer})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, images: int = 1) -> torch.Tensor:
    return pipe(PROMPT, height=64, width=64, num_inference_steps=STEPS, output_type="latent",
                num_images_per_prompt=images, generator=torch.Generator().manual_seed(0),
                max_sequence_length=32).images


@contextlib.contextmanager
def counting(module_name: str, name: str = "get_can_use_cache") -> Iterator[list[Any]]:
    """Wrap ``module.name``; the list collects what every call returned."""
    module = importlib.import_module(module_name)
    original = getattr(module, name)
    results: list[Any] = []

    @functools.wraps(original)
    def counted(*args, **kwargs):
        results.append(original(*args, **kwargs))
        return results[-1]

    setattr(module, name, counted)
    try:
        yield results
    finally:
        setattr(module, name, original)


def hits(results: list[Any]) -> int:
    return sum(bool(can_use_cache) for can_use_cache, _ in results)


def apply(pipe, threshold: float) -> None:
    from nunchaku.caching.diffusers_adapters import apply_cache_on_pipe

    apply_cache_on_pipe(pipe, residual_diff_threshold=threshold)


def test_decision_runs_in_the_defining_module_through_a_full_generation(nunchaku, tiny, uncached):
    version = nunchaku.__version__
    pipe = fresh_pipe(tiny)
    apply(pipe, THRESHOLD)
    with counting(DEFINING[version]) as decided, counting("nunchaku.caching.utils") as via_utils:
        latents = generate(pipe)

    assert len(decided) == STEPS, "one decision per denoising step"
    assert 0 < hits(decided) < STEPS
    assert not torch.equal(latents, uncached), "skipped steps change the image"
    first_hit, first_diff = decided[0]
    if version == "0.3.2":
        assert len(via_utils) == STEPS  # the defining module: the same function, wrapped twice
        assert all(type(hit) is bool and type(diff) is float for hit, diff in decided)
        assert (first_hit, first_diff) == (False, THRESHOLD), "nothing cached yet: (False, threshold)"
    else:
        assert via_utils == [], "1.x: the Flux path never calls caching.utils.get_can_use_cache"
        assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for pair in decided for v in pair)
        assert first_hit.dtype == torch.bool and not first_hit and float(first_diff) == THRESHOLD
    assert all(bool(hit) == (float(diff) < THRESHOLD) for hit, diff in decided[1:])


def test_threshold_zero_decides_every_step_and_matches_the_uncached_image(nunchaku, tiny, uncached):
    pipe = fresh_pipe(tiny)
    apply(pipe, 0.0)
    with counting(DEFINING[nunchaku.__version__]) as decided:
        latents = generate(pipe)
    assert len(decided) == STEPS and hits(decided) == 0
    assert torch.equal(latents, uncached), "a cache that never hits computes exactly the uncached steps"


def test_reapplying_after_a_generation_updates_the_threshold(nunchaku, tiny):
    pipe = fresh_pipe(tiny)
    apply(pipe, THRESHOLD)
    generate(pipe)
    apply(pipe, 0.0)
    assert pipe.transformer.cached_transformer_blocks[0].residual_diff_threshold_multi == 0.0
    with counting(DEFINING[nunchaku.__version__]) as decided:
        generate(pipe)
    assert len(decided) == STEPS and hits(decided) == 0


def test_reapplying_before_any_generation_keeps_the_first_threshold(nunchaku, tiny):
    """The engine marks a transformer cached only once it ran in a pipeline call; a second apply
    before that wraps the forward again and the first wrapper's blocks (and threshold) win."""
    pipe = fresh_pipe(tiny)
    apply(pipe, THRESHOLD)
    apply(pipe, 0.0)
    with counting(DEFINING[nunchaku.__version__]) as decided:
        generate(pipe)
    assert hits(decided) > 0
    assert pipe.transformer.cached_transformer_blocks[0].residual_diff_threshold_multi == THRESHOLD


def test_negative_threshold_turns_the_decision_off(nunchaku, tiny, uncached):
    pipe = fresh_pipe(tiny)
    apply(pipe, -1.0)
    with counting(DEFINING[nunchaku.__version__]) as decided:
        latents = generate(pipe)
    assert decided == [] and torch.equal(latents, uncached)
    assert type(pipe)._is_cached and "forward" in vars(pipe.transformer), "the V1 forward stays patched"


def test_batches_of_two_are_never_cached_on_0_3_2_only(nunchaku, tiny):
    pipe = fresh_pipe(tiny)
    apply(pipe, THRESHOLD)
    with counting(DEFINING[nunchaku.__version__]) as decided:
        generate(pipe, images=2)
    assert len(decided) == (0 if nunchaku.__version__ == "0.3.2" else STEPS)


def test_standin_says_what_it_is(nunchaku):
    from fbcache.backends.nunchaku import detect

    assert nunchaku.__fbcache_standin__ is True
    assert nunchaku.__version__ in VERSIONS
    engine = detect()
    assert (engine.status, engine.version) == ("standin", nunchaku.__version__)


def test_1x_layout_buffers_live_in_fbcache(nunchaku_1x):
    from nunchaku.caching import fbcache, utils

    assert utils.get_can_use_cache is fbcache.get_can_use_cache
    assert not hasattr(utils, "get_buffer") and callable(fbcache.get_buffer) and callable(fbcache.set_buffer)


def test_1x_v2_transformer_needs_the_flux_v2_adapter(nunchaku_1x, tiny, uncached):
    from nunchaku import NunchakuFluxTransformer2DModelV2
    from nunchaku.caching.diffusers_adapters import flux_v2

    pipe = fresh_pipe(tiny, NunchakuFluxTransformer2DModelV2)
    with pytest.raises(AttributeError, match="no attribute 'm'"):
        apply(pipe, THRESHOLD)  # the generic dispatch always picks the V1 adapter
    flux_v2.apply_cache_on_pipe(pipe, residual_diff_threshold=THRESHOLD)
    with counting("nunchaku.caching.fbcache") as decided, counting("nunchaku.caching.utils") as via_utils:
        latents = generate(pipe)
    assert len(decided) == STEPS and 0 < hits(decided) < STEPS and via_utils == []
    assert not torch.equal(latents, uncached)

    flux_v2.apply_cache_on_pipe(pipe, residual_diff_threshold=0.0)
    assert pipe.transformer.residual_diff_threshold_multi == 0.0
    with counting("nunchaku.caching.fbcache") as decided:
        assert torch.equal(generate(pipe), uncached)
    assert len(decided) == STEPS and hits(decided) == 0

    flux_v2.apply_cache_on_pipe(pipe, residual_diff_threshold=-1.0)
    with counting("nunchaku.caching.fbcache") as decided:
        assert torch.equal(generate(pipe), uncached), "a negative threshold calls the original forward"
    assert decided == []


# ------------------------------------------------------------------------------ the double cache


@contextlib.contextmanager
def counting_stages(module_name: str) -> Iterator[dict[str, list[bool]]]:
    """Wrap the decision in ``module_name``; per stage ("multi", "single"), whether each call hit."""
    stages: dict[str, list[bool]] = {"multi": [], "single": []}
    with counting(module_name) as results:
        module = importlib.import_module(module_name)
        counted = module.get_can_use_cache

        def by_stage(*args, mode="multi", **kwargs):
            can_use_cache, diff = counted(*args, mode=mode, **kwargs)
            stages[mode].append(bool(can_use_cache))
            return can_use_cache, diff

        module.get_can_use_cache = by_stage
        yield stages
    assert len(results) == sum(len(v) for v in stages.values())


def apply_pair(pipe, multi: float, single: float, apply_cache_on_pipe=None) -> None:
    """As nunchaku's own tests (tests/flux/test_flux_double_fb_cache*.py) pass a pair."""
    if apply_cache_on_pipe is None:
        from nunchaku.caching.diffusers_adapters import apply_cache_on_pipe
    apply_cache_on_pipe(pipe, use_double_fb_cache=True, residual_diff_threshold_multi=multi,
                        residual_diff_threshold_single=single)


def test_double_cache_decides_each_stage_once_per_step_with_its_own_threshold(nunchaku, tiny, uncached):
    pipe = fresh_pipe(tiny)
    apply_pair(pipe, 0.0, THRESHOLD)
    with counting_stages(DEFINING[nunchaku.__version__]) as stages:
        latents = generate(pipe)
    assert (len(stages["multi"]), sum(stages["multi"])) == (STEPS, 0), "threshold 0: the double-stream stage never hits"
    assert len(stages["single"]) == STEPS and 0 < sum(stages["single"]) < STEPS
    assert not torch.equal(latents, uncached), "skipped single-stream blocks change the image"


def test_double_cache_multi_threshold_hits_the_double_stream_stage_only(nunchaku, tiny):
    pipe = fresh_pipe(tiny)
    apply_pair(pipe, THRESHOLD, 0.0)
    with counting_stages(DEFINING[nunchaku.__version__]) as stages:
        generate(pipe)
    assert 0 < sum(stages["multi"]) < STEPS
    assert (len(stages["single"]), sum(stages["single"])) == (STEPS, 0)


def test_double_cache_pair_of_zeros_computes_the_uncached_image(nunchaku, tiny, uncached):
    """Both stages decide and never hit: the joint single-stream sequence is split and re-joined exactly."""
    pipe = fresh_pipe(tiny)
    apply_pair(pipe, 0.0, 0.0)
    with counting_stages(DEFINING[nunchaku.__version__]) as stages:
        latents = generate(pipe)
    assert [len(stages["multi"]), len(stages["single"])] == [STEPS, STEPS]
    assert sum(stages["multi"]) + sum(stages["single"]) == 0
    assert torch.equal(latents, uncached)


def test_reapplying_switches_between_a_pair_and_a_single_threshold(nunchaku, tiny):
    pipe = fresh_pipe(tiny)
    apply_pair(pipe, THRESHOLD, THRESHOLD)
    generate(pipe)
    apply(pipe, THRESHOLD)
    with counting_stages(DEFINING[nunchaku.__version__]) as single:
        generate(pipe)
    apply_pair(pipe, 0.0, THRESHOLD)
    with counting_stages(DEFINING[nunchaku.__version__]) as pair:
        generate(pipe)
    assert [len(single["multi"]), len(single["single"])] == [STEPS, 0]
    assert [len(pair["multi"]), sum(pair["multi"]), len(pair["single"])] == [STEPS, 0, STEPS]


def test_1x_v2_double_cache_decides_both_stages(nunchaku_1x, tiny, uncached):
    from nunchaku import NunchakuFluxTransformer2DModelV2
    from nunchaku.caching.diffusers_adapters import flux_v2

    pipe = fresh_pipe(tiny, NunchakuFluxTransformer2DModelV2)
    apply_pair(pipe, 0.0, THRESHOLD, flux_v2.apply_cache_on_pipe)
    with counting_stages("nunchaku.caching.fbcache") as stages:
        latents = generate(pipe)
    assert (len(stages["multi"]), sum(stages["multi"])) == (STEPS, 0)
    assert len(stages["single"]) == STEPS and 0 < sum(stages["single"]) < STEPS
    assert not torch.equal(latents, uncached)

    apply_pair(pipe, 0.0, 0.0, flux_v2.apply_cache_on_pipe)
    with counting_stages("nunchaku.caching.fbcache") as stages:
        assert torch.equal(generate(pipe), uncached)
    assert [len(stages["multi"]), len(stages["single"])] == [STEPS, STEPS]
