#!/usr/bin/env bash
# Cross-backend evidence on one GPU (issue #10): flux-random (full-size FLUX.1-dev architecture, random
# weights, TIMING ONLY) at 1024x1024, 28 steps, thresholds 0 0.5 0.8, 3 timed rounds, once with
# diffusers' FirstBlockCache and once with cache-dit's DBCache F1B0, then their hit maps side by side.
#   OUT=gpu-out scripts/gpu-backends.sh
# Writes 8 flat files to $OUT: gpu.txt (card, driver, versions), agreement.md / agreement.json (the
# verdict), agree.log, and per backend <backend>.log (the sweep's output and results table) and
# <backend>.json (its pytest-benchmark run). nunchaku is not run: it has no sm_90 kernels and no
# weights are reachable.
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
. "$(dirname "$0")/_gpu-wheels.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch, diffusers, cache_dit; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'diffusers', diffusers.__version__, 'cache-dit', cache_dit.__version__)" >> "$OUT/gpu.txt" 2>&1
date -u +"run at %Y-%m-%dT%H:%M:%SZ" >> "$OUT/gpu.txt"
WORK=.gpu-backends  # per-backend storage and images stay here; the history lives under the working directory
rm -rf "$WORK"
# fbcache is not installed there: `python3 -m fbcache` from this checkout; each sweep is `python3 -m
# pytest benchmarks ...`, where the root conftest.py registers the plugin
python3 -m fbcache agree --backends diffusers cache-dit --workdir "$WORK" \
  --model flux-random --device cuda --resolution 1024 --steps 28 --thresholds "0 0.5 0.8" --rounds 3 \
  --markdown "$OUT/agreement.md" --json "$OUT/agreement.json" 2>&1 | tee "$OUT/agree.log"
code=${PIPESTATUS[0]}
for backend in diffusers cache-dit; do
  cp "$WORK/$backend.log" "$OUT/$backend.log" 2>/dev/null
  run=$(ls "$WORK/$backend"/history/*/0*.json 2>/dev/null | tail -n 1)
  [ -n "$run" ] && cp "$run" "$OUT/$backend.json"
done
echo "fbcache agree exit code $code (0 agree, 1 disagree, 2 error)" | tee -a "$OUT/agree.log"
exit "$code"
