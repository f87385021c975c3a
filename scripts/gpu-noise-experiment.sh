#!/usr/bin/env bash
# The GPU noise experiment of issue 11: on one GPU, build a history of unchanged flux-random runs,
# inject real slowdowns (GPU sleep in every transformer forward, or only while the cache is on),
# and tabulate what `fbcache compare` said, at 1024x1024 and 512x512.
#   scripts/gpu-noise-experiment.sh            # writes $OUT (default docs/results/gpu-noise-<card>-<date>)
# Run on a quiet runner (docs/runner.md). Not yet run; its duration is not measured.
set -euo pipefail
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-' | tr -cd 'A-Za-z0-9-')
OUT=${OUT:-docs/results/gpu-noise-${CARD}-$(date -u +%Y-%m-%d)}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,persistence_mode --format=csv
  python3 -c "import torch, diffusers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'diffusers', diffusers.__version__)"
} > "$OUT/gpu.txt"
python3 -m tools.gpu_noise_experiment --out "$OUT/1024" --resolution 1024 --good 6 --bad 2 \
  --scenario all:0.02 --scenario cached:0.02 --scenario all:0.05
python3 -m tools.gpu_noise_experiment --out "$OUT/512" --resolution 512 --good 6 --bad 2 \
  --scenario all:0.10 --scenario cached:0.10
{ echo "# GPU noise experiment, $(head -2 "$OUT/gpu.txt" | tail -1), $(date -u +%Y-%m-%d)"; echo
  echo "## 1024x1024"; echo; cat "$OUT/1024/table.md"; echo
  echo "## 512x512"; echo; cat "$OUT/512/table.md"; } > "$OUT/README.md"
rm -rf "$OUT"/*/images
echo "wrote $OUT/README.md"
