#!/usr/bin/env bash
# LPIPS on one GPU: what it costs per benchmark (computed after the clock) and that the timed rounds' peak
# memory does not hold it, on flux-random (full-size FLUX.1-dev architecture, random weights: timing only) at
# 1024x1024, 28 steps, eager, sequential rounds (so LPIPS runs between benchmarks), thresholds "0.8":
#   - bf16 without LPIPS, then bf16 and each QUANT with it (--fbcache-metrics ssim,psnr,lpips);
#   - lpips-cost.md: every benchmark's peak memory and LPIPS; building the metric once; per run, one comparison of
#     its two 1024x1024 images (uncached, 0.8) on the GPU: the cost each benchmark pays after its clock.
# No pretrained weight travels: the AlexNet backbone is generated (seeded random, torchvision's shapes and file
# name), so the LPIPS values are those of random features: cost and plumbing, not image quality.
# Needs torchmetrics and torchvision beside torch. Results go to $OUT (default gpu-lpips-out).
#   scripts/gpu-lpips.sh [QUANT ...]   (default: torchao-fp8)
set -uo pipefail
OUT=${OUT:-gpu-lpips-out}
WORK=.gpu-lpips
mkdir -p "$OUT" "$WORK/weights"
export PYTHONUNBUFFERED=1
. "$(dirname "$0")/_gpu-wheels.sh"
QUANTS=("$@")
[ ${#QUANTS[@]} -gt 0 ] || QUANTS=(torchao-fp8)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch, torchvision, torchmetrics, diffusers; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'torchvision', torchvision.__version__, 'torchmetrics', torchmetrics.__version__, 'diffusers', diffusers.__version__)" >> "$OUT/gpu.txt"
python3 - "$WORK/weights" <<'PY'
import sys, torch, torchvision
from fbcache.metrics.lpips import BACKBONE
torch.manual_seed(0)
torch.save(torchvision.models.alexnet(weights=None).state_dict(), f"{sys.argv[1]}/{BACKBONE}")
PY

sweep() {  # NAME QUANT METRICS
  python3 -m pytest benchmarks -p no:cacheprovider --fbcache-model flux-random --fbcache-device cuda \
    --fbcache-bounds none --fbcache-thresholds 0.8 --fbcache-rounds 1 --fbcache-interleave false \
    --fbcache-quant "$2" --fbcache-metrics "$3" --fbcache-lpips-weights "$WORK/weights" \
    --fbcache-output-dir "$WORK/$1" --benchmark-storage="file://$PWD/$WORK/history/$1" --benchmark-autosave \
    2>&1 | tee "$OUT/$1.log"
  cp "$WORK/$1/results.md" "$OUT/results-$1.md" 2>/dev/null
}

sweep bf16-without none ssim,psnr
sweep bf16 none ssim,psnr,lpips
for quant in "${QUANTS[@]}"; do sweep "$quant" "$quant" ssim,psnr,lpips; done

python3 - "$WORK" > "$OUT/lpips-cost.md" <<'PY'
import statistics, sys, time
from pathlib import Path
import numpy as np, torch
from PIL import Image
from fbcache.history.storage import load_runs
from fbcache.metrics.lpips import Scorer
work = Path(sys.argv[1])
print("| run | benchmark | hits | peak GPU memory (GiB) | LPIPS |\n|---|---|---|---|---|")
for storage in sorted(p for p in work.glob("history/*") if p.is_dir()):
    runs, skipped = load_runs(storage)  # a file that is not a whole fbcache run is named, not read
    for line in skipped:
        print(line, file=sys.stderr)
    for record in (record for run in runs for record in run.records.values()):
        peak = record.peak_memory_bytes
        shown = f"{peak / 2**30:.3f}" if peak else "-"
        lpips = record.metrics.get("lpips")
        print(f"| {storage.name} | {record.label} | {'-' if record.hits is None else record.hits} | "
              f"{shown} | {'-' if lpips is None else f'{lpips:.4f}'} |")
torch.cuda.synchronize()
started = time.perf_counter()
scorer = Scorer(work / "weights", "cuda")  # once per session: the backbone read from disk, the metric built
print(f"\nbuilding the metric (once per session): {time.perf_counter() - started:.2f} s")
print("\n| run | first comparison (ms) | comparison, median of 10 (ms) | CUDA peak of a comparison (MiB) |"
      "\n|---|---|---|---|")
for run in sorted(p for p in work.iterdir() if (p / "results.md").is_file() and p.name != "bf16-without"):
    uncached, cached = (np.asarray(Image.open(next(run.glob(f"*_{which}_first.png"))).convert("RGB"))
                        for which in ("uncached", "t0.8"))
    times = []
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    for _ in range(11):
        started = time.perf_counter()
        scorer(cached, uncached)  # float() of the result waits for the GPU
        times.append(time.perf_counter() - started)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    print(f"| {run.name} | {times[0] * 1e3:.1f} | {statistics.median(times[1:]) * 1e3:.1f} | {peak:.0f} |")
PY
tar czf "$OUT/history.tgz" "$WORK/history"
cat "$OUT/lpips-cost.md"
