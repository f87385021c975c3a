"""Environment checks before any weights load: which nunchaku is installed, GPU support, optional deps."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from fbcache import configure
from fbcache.backends import nunchaku as nunchaku_backend
from fbcache.backends.nunchaku import NunchakuEngine, detect, precision_for_capability
from fbcache.config import HarnessConfig
from fbcache.errors import ConfigError

STANDINS = Path(__file__).resolve().parent / "standins" / "nunchaku-1.1.0"
REAL = NunchakuEngine("real", "1.0.0")


@pytest.fixture
def check_environment(monkeypatch):
    """configure.check_environment with the installed engine and the GPU's capability faked."""

    def check(config, engine=None, capability=None, **kwargs):
        if engine is not None:
            monkeypatch.setattr(nunchaku_backend, "detect", lambda: engine)
        if capability is not None:
            monkeypatch.setattr(nunchaku_backend, "_capability", capability)
            kwargs["capability"] = capability
        configure.check_environment(config, **kwargs)

    return check


def nunchaku_config(**changes) -> HarnessConfig:
    base = dict(model="org/flux", quant="nunchaku", cache_backend="nunchaku", extra={"nunchaku_transformer": "svdq.safetensors"},
                device="cuda")
    return HarnessConfig(**{**base, **changes})


@pytest.fixture
def clean_nunchaku(monkeypatch):
    for name in [m for m in sys.modules if m == "nunchaku" or m.startswith("nunchaku.")]:
        monkeypatch.delitem(sys.modules, name)
    importlib.invalidate_caches()
    yield monkeypatch
    for name in [m for m in sys.modules if m == "nunchaku" or m.startswith("nunchaku.")]:
        del sys.modules[name]


def test_detects_the_standin(clean_nunchaku):
    clean_nunchaku.syspath_prepend(str(STANDINS))
    engine = detect()
    assert (engine.status, engine.version) == ("standin", "1.1.0")
    assert engine.label == "stand-in of 1.1.0 (tests only, not the real engine)"


def test_detects_the_unrelated_pypi_package_without_importing_it(clean_nunchaku, tmp_path):
    package = tmp_path / "nunchaku"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('imported the unrelated package')\n")
    info = tmp_path / "nunchaku-0.16.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nunchaku\nVersion: 0.16.1\n")
    clean_nunchaku.syspath_prepend(str(tmp_path))
    engine = detect()
    assert (engine.status, engine.version) == ("unrelated", "0.16.1")


def test_absent(clean_nunchaku):
    clean_nunchaku.setattr(importlib.util, "find_spec", lambda name, *args: None)
    assert detect().status == "absent"
    assert detect().label == "not installed"


@pytest.mark.parametrize("capability, precision", [((7, 5), "int4"), ((8, 0), "int4"), ((8, 6), "int4"),
                                                   ((8, 9), "int4"), ((12, 0), "fp4"), ((12, 1), "fp4")])
def test_supported_gpus(capability, precision):
    assert precision_for_capability(capability) == precision


@pytest.mark.parametrize("capability", [(9, 0), (7, 0), (10, 0)])
def test_unsupported_gpus(capability):
    with pytest.raises(ValueError, match=f"no kernels for sm_{capability[0]}{capability[1]}"):
        precision_for_capability(capability)


def test_hopper_is_refused_before_weights_load(check_environment):
    with pytest.raises(ConfigError) as excinfo:
        check_environment(nunchaku_config(), REAL, capability=lambda device: (9, 0))
    assert "--fbcache-quant" in str(excinfo.value) and "sm_90" in str(excinfo.value)
    check_environment(nunchaku_config(), REAL, capability=lambda device: (8, 6))  # an A6000 passes


def test_wrong_or_missing_package_says_how_to_install(check_environment):
    with pytest.raises(ConfigError, match="unrelated PyPI package.*pip uninstall nunchaku.*release wheels"):
        check_environment(nunchaku_config(), NunchakuEngine("unrelated", "0.16.1"), capability=lambda d: (8, 6))
    with pytest.raises(ConfigError, match="not installed.*release wheels"):
        check_environment(nunchaku_config(), NunchakuEngine("absent"), capability=lambda d: (8, 6))


def test_nunchaku_cache_needs_nunchaku_transformer_on_the_real_engine(check_environment):
    with pytest.raises(ConfigError, match="--fbcache-cache-backend.*add --fbcache-quant nunchaku"):
        check_environment(nunchaku_config(quant="none", extra={}), REAL, capability=lambda d: (8, 6))


def test_standin_serves_the_cache_backend_but_never_quantizes(check_environment):
    standin = NunchakuEngine("standin", "1.1.0")
    check_environment(nunchaku_config(quant="none", model="tiny-random", device="cpu"), standin)
    with pytest.raises(ConfigError, match="stand-in.*cannot quantize"):
        check_environment(nunchaku_config(), standin, capability=lambda d: (8, 6))


def test_torchao_missing_names_the_extra_and_fp8_needs_ada(check_environment):
    config = HarnessConfig(model="org/flux", quant="torchao-int8wo", device="cuda")
    with pytest.raises(ConfigError, match=r"pip install 'fbcache\[torchao\]'"):
        check_environment(config, has_module=lambda name: False)
    fp8 = HarnessConfig(model="org/flux", quant="torchao-fp8", device="cuda")
    with pytest.raises(ConfigError, match="float8 needs a CUDA GPU of sm_89 or newer; this GPU is sm_86"):
        check_environment(fp8, capability=lambda d: (8, 6), has_module=lambda name: True)
    check_environment(fp8, capability=lambda d: (9, 0), has_module=lambda name: True)


@pytest.mark.parametrize("version", ["0.2.0", "0.3.0", "0.3.1"])
def test_old_releases_are_refused_by_the_cache_backend(check_environment, version):
    with pytest.raises(ConfigError) as excinfo:
        check_environment(nunchaku_config(), NunchakuEngine("real", version), capability=lambda d: (8, 6))
    message = str(excinfo.value)
    assert message.startswith("--fbcache-cache-backend: invalid value 'nunchaku'") and "\n" not in message
    assert f"nunchaku {version} is not supported" in message and "upgrade to nunchaku >= 0.3.2" in message


def test_old_release_with_another_cache_backend_is_not_the_cache_backends_business(check_environment):
    check_environment(nunchaku_config(cache_backend="diffusers"), NunchakuEngine("real", "0.3.1"),
                      capability=lambda d: (8, 6))
