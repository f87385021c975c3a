#!/usr/bin/env bash
# How docs/results/h100-* were measured: flux-random (full-size FLUX.1-dev architecture, random
# weights, TIMING ONLY) at 1024x1024 and 28 steps on one GPU.
#   scripts/h100-flux-random.sh bf16   # run 1 with --fbcache-selfcheck, then run 2 with --benchmark-compare
#   scripts/h100-flux-random.sh fp8    # torchao float8 dynamic activation + weight, one run
# Results (pytest-benchmark JSON, results.md, logs, calibrated profile) go to $OUT (default: ./h100-out).
set -uo pipefail
OUT=${OUT:-h100-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu-$1.txt" 2>&1
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'diffusers', diffusers.__version__)" >> "$OUT/gpu-$1.txt"
# the history lives under the working directory, as pytest-benchmark expects
HISTORY=(--benchmark-storage=file://$PWD/.h100-history --benchmark-autosave --benchmark-save-data)
COMMON=(benchmarks -p no:cacheprovider --fbcache-model flux-random --fbcache-device cuda --fbcache-bounds none)
case "$1" in
  bf16)
    python3 -m pytest "${COMMON[@]}" "${HISTORY[@]}" --fbcache-selfcheck --fbcache-output-dir .h100/bf16-run1 \
      --fbcache-calibrate "$OUT/h100-flux-random-bf16.toml" 2>&1 | tee "$OUT/bf16-run1.log"
    python3 -m pytest "${COMMON[@]}" "${HISTORY[@]}" --fbcache-rounds 2 --benchmark-compare \
      --fbcache-output-dir .h100/bf16-run2 2>&1 | tee "$OUT/bf16-run2-compare.log"
    ;;
  fp8)
    python3 -m pytest "${COMMON[@]}" "${HISTORY[@]}" --fbcache-quant torchao-fp8 --fbcache-rounds 2 \
      --fbcache-output-dir .h100/fp8 2>&1 | tee "$OUT/fp8-run1.log"
    ;;
esac
for run in .h100/*/; do cp "$run/results.md" "$OUT/results-$(basename "$run").md" 2>/dev/null; done
tar czf "$OUT/history-$1.tgz" .h100-history
