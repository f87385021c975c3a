#!/usr/bin/env bash
# Peak GPU memory per threshold of flux-random (full-size FLUX.1-dev architecture, random weights:
# timing and memory only) at 1024x1024, 28 steps, for each quantization given (default: none
# torchao-fp8; torchao-int4wo eager is many times slower: shorten it with STEPS below), eager. Rounds run
# sequentially (--fbcache-interleave false) so each benchmark's peak is its own threshold's, not the
# sweep's. Results go to $OUT (default: gpu-memory-out): a log and results.md per quantization, the
# history, and peak-memory.md (one row per benchmark), the last two refreshed after every sweep.
# THRESHOLDS, ROUNDS and STEPS (environment) override the sweep's "0 0.5 0.8", 2 rounds and the model's 28
# steps: a shorter run of a slow quantization mode, for its peak memory.
#   scripts/gpu-memory.sh [QUANT ...]
set -uo pipefail
OUT=${OUT:-gpu-memory-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
. "$(dirname "$0")/_gpu-wheels.sh"
QUANTS=("$@")
[ ${#QUANTS[@]} -gt 0 ] || QUANTS=(none torchao-fp8)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'diffusers', diffusers.__version__)" >> "$OUT/gpu.txt"
HISTORY=.gpu-memory-history

peak_table() {  # one row per saved benchmark: its hits and the peak memory of its rounds
  python3 - "$HISTORY" > "$OUT/peak-memory.md" <<'PY'
import sys
from pathlib import Path
from fbcache.history.storage import load_runs
print("| quantization | benchmark | hits | peak GPU memory (GiB) |\n|---|---|---|---|")
for storage in sorted(p for p in Path(sys.argv[1]).glob("*") if p.is_dir()):
    runs, skipped = load_runs(storage)  # a file that is not a whole fbcache run is named, not read
    for line in skipped:
        print(line, file=sys.stderr)
    for record in (record for run in runs for record in run.records.values()):
        shown = f"{record.peak_memory_bytes / 2**30:.2f}" if record.peak_memory_bytes else "-"
        print(f"| {storage.name} | {record.label} | {'-' if record.hits is None else record.hits} | {shown} |")
PY
  tar czf "$OUT/history.tgz" "$HISTORY"
}

for quant in "${QUANTS[@]}"; do
  python3 -m pytest benchmarks -p no:cacheprovider --fbcache-model flux-random --fbcache-device cuda \
    --fbcache-bounds none --fbcache-thresholds "${THRESHOLDS:-0 0.5 0.8}" --fbcache-rounds "${ROUNDS:-2}" ${STEPS:+--fbcache-steps "$STEPS"} --fbcache-interleave false \
    --fbcache-quant "$quant" --fbcache-output-dir ".gpu-memory/$quant" \
    --benchmark-storage="file://$PWD/$HISTORY/$quant" --benchmark-autosave --benchmark-save-data \
    2>&1 | tee "$OUT/$quant.log"
  cp ".gpu-memory/$quant/results.md" "$OUT/results-$quant.md" 2>/dev/null
  peak_table
done
