#!/usr/bin/env bash
# The GPU noise experiment of issue 11: on one GPU, build a history of unchanged flux-random runs,
# inject real slowdowns (GPU sleep in every transformer forward, or only while the cache is on),
# and tabulate what `fbcache compare` said.
#   scripts/gpu-noise-experiment.sh             # 1024 then 512, into $OUT (default docs/results/gpu-noise-<card>-<date>)
#   CUDA_VISIBLE_DEVICES=1 scripts/gpu-noise-experiment.sh 512    # one resolution, on GPU 1
# Env: GOOD (unchanged runs, default 9: 8 judged A/A comparisons), BAD (runs per scenario, 2: the
# first bad run and the next), ROUNDS (5), THRESHOLDS ("0 0.5 0.8"). Run on a quiet runner (docs/runner.md).
set -euo pipefail
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-' | tr -cd 'A-Za-z0-9-')
OUT=${OUT:-docs/results/gpu-noise-${CARD}-$(date -u +%Y-%m-%d)}
GOOD=${GOOD:-9} BAD=${BAD:-2} ROUNDS=${ROUNDS:-5} THRESHOLDS=${THRESHOLDS:-0 0.5 0.8}
RESOLUTIONS=("$@")
[ ${#RESOLUTIONS[@]} -gt 0 ] || RESOLUTIONS=(1024 512)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
. "$(dirname "$0")/_gpu-wheels.sh"
{ nvidia-smi --query-gpu=index,name,driver_version,clocks.sm,clocks.max.sm,persistence_mode --format=csv
  echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-unset}"
  python3 -c "import torch, diffusers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'diffusers', diffusers.__version__)"
} > "$OUT/gpu.txt"
for RES in "${RESOLUTIONS[@]}"; do
  # slowdowns sized to each resolution's run-to-run noise (docs/verdicts.md): small at 1024x1024, large at 512x512
  [ "$RES" -ge 1024 ] && SCEN=(--scenario all:0.02 --scenario cached:0.02) || SCEN=(--scenario all:0.10 --scenario cached:0.10)
  start=$(date +%s)
  python3 -m tools.gpu_noise_experiment --out "$OUT/$RES" --resolution "$RES" --good "$GOOD" --bad "$BAD" \
    --rounds "$ROUNDS" --thresholds "$THRESHOLDS" "${SCEN[@]}"
  echo "$RES: $(( $(date +%s) - start )) s wall clock" >> "$OUT/gpu.txt"
  rm -rf "$OUT/$RES"/images
  { echo "# GPU noise experiment ${RES}x${RES}, $(sed -n 2p "$OUT/gpu.txt" | cut -d, -f2), $(date -u +%Y-%m-%d)"; echo
    cat "$OUT/$RES/table.md"; } > "$OUT/README-$RES.md"
done
echo "wrote $OUT"
