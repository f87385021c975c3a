"""The tiny-FLUX trainer: runs end to end, trains with the pipeline's conventions, measures deterministically."""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from fbcache.models.tiny import WORDS, build_tiny_pipeline, read_weights
from tools.train_tiny import procedural
from tools.train_tiny import train as train_tiny


def test_smoke_training_writes_weights_that_load_and_generate(tmp_path):
    out = tmp_path / "tiny.safetensors"
    record = train_tiny.main(["--out", str(out), "--smoke", "--device", "cpu"])

    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["smoke"] and saved["settings"]["flow_steps"] == train_tiny.SMOKE["flow_steps"]
    assert math.isfinite(saved["heldout_flow_loss"]) and math.isfinite(saved["final_losses"]["flow"])
    spec, state, _ = read_weights(out)
    assert {tensor.dtype for tensor in state.values() if tensor.is_floating_point()} == {torch.float16}
    assert spec.vae_scale == saved["spec"]["vae_scale"] != 1.0

    pipe, _ = build_tiny_pipeline(weights=out)
    assert pipe.vae.config.scaling_factor == spec.vae_scale
    image = pipe("a red circle at the top left", height=64, width=64, num_inference_steps=4,
                 generator=torch.Generator().manual_seed(0), max_sequence_length=spec.max_sequence_length,
                 output_type="np").images
    assert image.shape == (1, 64, 64, 3) and np.isfinite(image).all()


def test_flow_matching_loss_is_deterministic():
    pipe, _ = build_tiny_pipeline()
    first = train_tiny.flow_matching_loss(pipe, n_samples=4, seed=0, side=32)
    assert train_tiny.flow_matching_loss(pipe, n_samples=4, seed=0, side=32) == first
    assert train_tiny.flow_matching_loss(pipe, n_samples=4, seed=1, side=32) != first
    assert math.isfinite(first)


def test_training_encodes_prompts_like_the_pipeline():
    pipe, spec = build_tiny_pipeline()
    captions = ["A cute panda holding a sign that says hello world", "a big blue square in the center"]
    clip_ids, t5_ids = train_tiny.tokenize(pipe.components, captions, spec.max_sequence_length)
    with torch.no_grad():
        ours = train_tiny.encode_text(pipe.components, clip_ids, t5_ids)
        theirs = pipe.encode_prompt(captions, None, max_sequence_length=spec.max_sequence_length)[:2]
    for mine, reference in zip(ours, theirs):
        torch.testing.assert_close(mine, reference)


def test_procedural_samples_are_reproducible_and_captioned_in_vocabulary():
    images, captions = procedural.batch("train", 0, 0, 64, 32)
    again, same = procedural.batch("train", 0, 10, 4, 32)
    assert np.array_equal(images[10:14], again) and captions[10:14] == same
    assert {word for caption in captions for word in caption.lower().split()} <= set(WORDS)
    assert any(caption == "A cute panda holding a sign that says hello world" for caption in captions)
    heldout, _ = procedural.batch("heldout", 0, 0, 64, 32)
    assert not any(np.array_equal(a, b) for a, b in zip(images, heldout))
