# Sourced by scripts/sweep and scripts/test (not a command): make a virtual environment that has
# what the caller needs, installing only what is missing, and say what it does. Each caller names its
# own environment (the sweep's .venv, the tests' .venv-test), so installing the test extra never
# changes the packages a sweep records.
#
#   FBCACHE_TORCH=cpu     the CPU build of torch (default); FBCACHE_TORCH=cuda for the CUDA build
#   FBCACHE_TORCH_INDEX=URL   a CPU-only wheel index to try first for torch and torchvision (none by default)
#   FBCACHE_PYTHON=PATH   use this interpreter as it is and install nothing (an environment you manage)
#
# Usage: source scripts/_env.sh EXTRA VENV   (EXTRA: the pyproject extra to install, e.g. report or test;
#        VENV: the environment's directory)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRA="${1:?the pyproject extra to install}"
VENV="${2:?the virtual environment directory}"
TORCH_VERSION="2.13.0"
# A CPU-only wheel index, when the configured one gives the CUDA build (PyPI does on Linux)
TORCH_CPU_INDEX="${FBCACHE_TORCH_INDEX:-}"

say() { echo "fbcache: $*" >&2; }

if [ -n "${FBCACHE_PYTHON:-}" ]; then
  PY="$FBCACHE_PYTHON"
  say "using $PY as it is (FBCACHE_PYTHON is set): nothing installed"
  return 0 2>/dev/null || exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  BASE="$(command -v python3 || command -v python || true)"
  if [ -z "$BASE" ] || ! "$BASE" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    say "needs Python 3.10 or newer as python3 on PATH"
    exit 2
  fi
  say "creating the virtual environment $VENV"
  "$BASE" -m venv "$VENV"
else
  say "reusing the virtual environment $VENV"
fi
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install --quiet --disable-pip-version-check "$@"; }

case "${FBCACHE_TORCH:-cpu}" in
  cpu|cuda) ;;
  *) say "FBCACHE_TORCH=${FBCACHE_TORCH}: accepted: cpu, cuda"; exit 2 ;;
esac
if HAVE="$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)"; then
  say "torch $HAVE already installed (to change its build: remove $VENV and set FBCACHE_TORCH)"
elif [ "${FBCACHE_TORCH:-cpu}" = "cuda" ]; then
  say "installing torch $TORCH_VERSION, CUDA build (FBCACHE_TORCH=cuda)"
  pip_install "torch==$TORCH_VERSION"
else
  # one quick try of FBCACHE_TORCH_INDEX: where it cannot be reached, fall back at once
  if [ -n "$TORCH_CPU_INDEX" ] && say "installing torch $TORCH_VERSION, CPU build, from FBCACHE_TORCH_INDEX" \
      && pip_install "torch==$TORCH_VERSION" --index-url "$TORCH_CPU_INDEX" --retries 1 --timeout 15; then
    :
  else
    say "installing torch $TORCH_VERSION from the configured index (FBCACHE_TORCH_INDEX names a CPU-only one)"
    pip_install "torch==$TORCH_VERSION"
  fi
fi

# The package: reinstalled only when pyproject.toml changed or the extra was never installed.
KEY="$(cd "$ROOT" && "$PY" -c 'import hashlib,sys; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest()[:16])')"
STAMP="$VENV/.fbcache-installed-$EXTRA"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ] && "$PY" -m pip show --quiet fbcache >/dev/null 2>&1; then
  say "fbcache[$EXTRA] already installed (pyproject.toml unchanged)"
else
  say "installing fbcache[$EXTRA] from $ROOT (editable)"
  pip_install -e "$ROOT[$EXTRA]"
  echo "$KEY" > "$STAMP"
fi

# The LPIPS tests' torchvision (the release built for this torch) and the lpips package, in a folder beside the
# environment that only those tests put on their path (tests/lpips_support.py): where only PyPI's torchvision
# (built for CUDA torch) is reachable, it does not import beside the CPU build, and in the environment it would
# stop transformers' and so diffusers' imports in every test.
if [ "$EXTRA" = test ]; then
  SIDE="$VENV/fbcache-torchvision"
  if [ -d "$SIDE/torchvision" ] && [ -d "$SIDE/lpips" ]; then
    say "torchvision and lpips for the LPIPS tests already in $SIDE"
  else
    # torchvision 0.(N+15) is the release built for torch 2.N
    TORCHVISION="$("$PY" -c 'import torch; minor = int(torch.__version__.split(".")[1]); print(f"0.{minor + 15}.*")')"
    say "installing torchvision==$TORCHVISION and lpips into $SIDE (the LPIPS tests' own folder)"
    if [ "${FBCACHE_TORCH:-cpu}" = cuda ] || [ -z "$TORCH_CPU_INDEX" ] || ! pip_install --no-deps --target "$SIDE" \
        "torchvision==$TORCHVISION" --index-url "$TORCH_CPU_INDEX" --retries 1 --timeout 15; then
      pip_install --no-deps --target "$SIDE" "torchvision==$TORCHVISION"
    fi
    pip_install --no-deps --target "$SIDE" "lpips==0.1.4"
  fi
fi
