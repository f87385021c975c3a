"""--fbcache-quant-filter on CPU (torchao int8 weight-only runs there): ``blocks`` quantizes the repeated blocks'
linear layers only, leaves the embedders and output layers in the model's dtype, and is named in the fingerprint;
``all`` (the default) quantizes as before and leaves the fingerprint as it was."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from fbcache import quant
from fbcache.config import HarnessConfig
from fbcache.configure import build_config
from fbcache.errors import ConfigError
from fbcache.models import IO_MODULES, source_for

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="torchao is an optional extra")
NO_CUDA = (lambda: False, lambda: 0)


def config(tmp_path: Path, **raw: str) -> HarnessConfig:
    raw.setdefault("model", "tiny-random")
    raw.setdefault("quant", "torchao-int8wo")
    raw.setdefault("output_dir", str(tmp_path / "out"))
    return build_config(raw, cuda=NO_CUDA)


def quantized(tmp_path: Path, quant_filter: str) -> dict[str, bool]:
    """Whether each linear layer's weight became a torchao tensor, by module name."""
    harness = config(tmp_path, quant_filter=quant_filter)
    transformer = source_for(harness.model).load(harness).pipe.transformer
    quant.get(harness.quant).apply(transformer, harness)
    return {name: type(module.weight) not in (torch.Tensor, torch.nn.Parameter)
            for name, module in transformer.named_modules() if isinstance(module, torch.nn.Linear)}


def test_blocks_leaves_every_linear_layer_outside_the_blocks_unquantized(tmp_path):
    layers = quantized(tmp_path, "blocks")
    outside = {name for name in layers if name.split(".")[0] in IO_MODULES}
    assert outside and not any(layers[name] for name in outside)
    assert all(done for name, done in layers.items() if name not in outside), "every block's linear layer"


def test_all_quantizes_the_layers_outside_the_blocks_too(tmp_path):
    layers = quantized(tmp_path, "all")
    assert all(layers.values())


def test_blocks_is_in_the_fingerprint_and_all_leaves_it_as_it_was(tmp_path):
    mode = quant.get("torchao-int8wo")
    default = mode.settings(config(tmp_path))
    assert default == mode.settings(config(tmp_path, quant_filter="all"))
    assert default.startswith("Int8WeightOnlyConfig(") and default.endswith(")"), "the config's repr alone"
    blocks = mode.settings(config(tmp_path, quant_filter="blocks"))
    assert blocks == default + "; quantized: the linear layers of transformer_blocks and single_transformer_blocks only"


def test_an_unknown_filter_is_refused_naming_the_option(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        config(tmp_path, quant_filter="embedders")
    assert str(excinfo.value) == "--fbcache-quant-filter: invalid value 'embedders'; accepted: all, blocks"
