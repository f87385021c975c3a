#!/usr/bin/env bash
# fbcache tune on flux-random (full-size FLUX.1-dev architecture, random weights: TIMING ONLY, so its
# SSIM is of random images) at 1024x1024, 28 steps, on one GPU: the wall time of a whole tune, the
# search's untimed generations and the timed proof (5 paired rounds + 1 warm-up of 4 benchmarks).
#   scripts/gpu-tune.sh      # log, tune.json, frontier.md/png, trace.json, the GPU and the wall time to $OUT
# flux-random's SSIM stays high even with most steps reused (docs/results/h100-2026-11-25/), so the floor
# is 0.999: the search has a boundary to find, and the proof a recommendation to time.
set -uo pipefail
OUT=${OUT:-tune-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
. "$(dirname "$0")/_gpu-wheels.sh"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u +"%Y-%m-%d %H:%M UTC"; } > "$OUT/gpu.txt" 2>&1
start=$(date +%s)
python3 -m fbcache tune --model flux-random --device cuda --min-ssim 0.999 --out-dir "$OUT" --json "$OUT/tune.json" \
  2>&1 | tee "$OUT/tune.log"
echo "fbcache tune: $(( $(date +%s) - start )) s wall, model load included" | tee "$OUT/wall.txt"
