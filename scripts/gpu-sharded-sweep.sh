#!/usr/bin/env bash
# The 8-prompt default set on flux-random (TIMING ONLY: random weights), thresholds "0 0.5 0.8",
# ROUNDS timed rounds (default 3, the harness default), sharded over 2 GPUs of one host and then on 1 GPU; wall clocks of both, the shards
# merged into one run, and `fbcache compare` of the merged run against the 1-GPU run (hits must be
# identical: they are deterministic for a fixed seed and stack).
#
#   scripts/gpu-sharded-sweep.sh            # 512x512 and 1024x1024
#   scripts/gpu-sharded-sweep.sh 1024       # one resolution (each is its own call where time is limited)
#
# Launcher: torchrun (python3 -m torch.distributed.run, shipped with torch) starts one pytest per GPU;
# each reads RANK/WORLD_SIZE/LOCAL_RANK and takes prompts i % 2 == RANK on cuda:LOCAL_RANK. Without
# torchrun: two background processes, each pinned with CUDA_VISIBLE_DEVICES and --fbcache-shard R/2.
# Run from the repository root; fbcache need not be installed (conftest.py registers the plugin).
# Each pytest process is wrapped so that the log has its start and end on the host's clock
# ("== timeline"): with the sessions' own durations they show what launching costs.
# Results go to $OUT (default ./gpu-sharded-out): gpu.txt, and per resolution R run-R.log,
# summary-R.md and history-R.tgz (histories, results tables, compare JSON). When the sharded sweep of
# resolution R ends, .gpu-sharded/sharded-R.done appears: from then on only GPU 0 is used.
set -uo pipefail
OUT=${OUT:-gpu-sharded-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-$PWD}
RESOLUTIONS=("$@")
[ ${#RESOLUTIONS[@]} -gt 0 ] || RESOLUTIONS=(512 1024)
WORK=.gpu-sharded
THRESHOLDS="0 0.5 0.8"
# a dry run of the script itself on a CPU: MODEL=tiny DEVICE=cpu STEPS=8 scripts/gpu-sharded-sweep.sh 64
MODEL=${MODEL:-flux-random}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-28}
ROUNDS=${ROUNDS:-3}

{
  nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv
  python3 -c "import torch, diffusers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'diffusers', diffusers.__version__, 'gpus', torch.cuda.device_count())"
  if python3 -c "import torch.distributed.run" 2>/dev/null; then echo "launcher: torchrun (python3 -m torch.distributed.run)"; else echo "launcher: CUDA_VISIBLE_DEVICES + --fbcache-shard (no torchrun)"; fi
} > "$OUT/gpu.txt" 2>&1

now() { date +%s.%N; }
# stamped CMD...: runs CMD, writing "== timeline <who> start|end <epoch>" around it (who: torchrun's RANK or "1gpu")
stamped() {
  echo "== timeline ${RANK:-${WHO:-?}} start $(now)"
  "$@"
  local rc=$?
  echo "== timeline ${RANK:-${WHO:-?}} end $(now) rc=$rc"
  return $rc
}
export -f now stamped
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

for RES in "${RESOLUTIONS[@]}"; do
  STORAGE=$PWD/$WORK/history-$RES
  LOG=$OUT/run-$RES.log
  rm -rf "$STORAGE" "$WORK/images-$RES-"* "$WORK/sharded-$RES.done"
  COMMON=(benchmarks -p no:cacheprovider --fbcache-model "$MODEL" --fbcache-device "$DEVICE" --fbcache-steps "$STEPS"
          --fbcache-bounds none
          --fbcache-prompts default --fbcache-resolution "$RES" --fbcache-thresholds "$THRESHOLDS"
          --fbcache-rounds "$ROUNDS" --benchmark-save-data "--benchmark-storage=file://$STORAGE")
  : > "$LOG"

  echo "== $RES: sharded over 2 GPUs" | tee -a "$LOG"
  start=$(now)
  echo "== timeline launch start $start" >> "$LOG"
  if python3 -c "import torch.distributed.run" 2>/dev/null; then
    python3 -m torch.distributed.run --standalone --nproc-per-node 2 --no-python \
      bash -c 'stamped "$@"' stamped python3 -m pytest "${COMMON[@]}" --benchmark-autosave --fbcache-output-dir "$WORK/images-$RES-2gpu" >> "$LOG" 2>&1
    sharded_rc=$?
  else
    pids=()
    for rank in 0 1; do
      CUDA_VISIBLE_DEVICES=$rank WHO=$rank stamped python3 -m pytest "${COMMON[@]}" --benchmark-autosave --fbcache-shard "$rank/2" \
        --fbcache-output-dir "$WORK/images-$RES-2gpu" > "$WORK/shard-$RES-$rank.log" 2>&1 &
      pids+=($!)
    done
    sharded_rc=0
    for pid in "${pids[@]}"; do wait "$pid" || sharded_rc=$?; done
    cat "$WORK/shard-$RES-0.log" "$WORK/shard-$RES-1.log" >> "$LOG"
  fi
  sharded_s=$(since "$start")
  echo "== $RES: 2-GPU wall clock ${sharded_s} s (exit $sharded_rc)" | tee -a "$LOG"

  touch "$WORK/sharded-$RES.done"  # GPU 1 is free from here: the 1-GPU sweep below uses GPU 0 only

  echo "== $RES: 1 GPU" | tee -a "$LOG"
  start=$(now)
  echo "== timeline launch start $start" >> "$LOG"
  CUDA_VISIBLE_DEVICES=0 WHO=1gpu stamped python3 -m pytest "${COMMON[@]}" --fbcache-shard off --benchmark-save=single-1gpu \
    --fbcache-output-dir "$WORK/images-$RES-1gpu" >> "$LOG" 2>&1
  single_rc=$?
  single_s=$(since "$start")
  echo "== $RES: 1-GPU wall clock ${single_s} s (exit $single_rc)" | tee -a "$LOG"

  # merged after the 1-GPU run, so that it is the later run of the storage: compare judges the
  # latest run against earlier ones (the first version merged first: its compare refused the order)
  echo "== $RES: merge" | tee -a "$LOG"
  python3 -m fbcache merge "$STORAGE/shards/0-of-2" "$STORAGE/shards/1-of-2" --out "$STORAGE" --name merged-2gpu >> "$LOG" 2>&1
  merge_rc=$?

  echo "== $RES: fbcache compare, merged (latest) against the 1-GPU run (baseline)" | tee -a "$LOG"
  merged_run=$(ls "$STORAGE"/*/*_merged-2gpu.json 2>/dev/null | head -1)
  single_run=$(ls "$STORAGE"/*/*_single-1gpu.json 2>/dev/null | head -1)
  python3 -m fbcache compare --storage "$STORAGE" --latest "$(basename "$merged_run" .json)" \
    --baseline "$(basename "$single_run" .json)" --json "$WORK/compare-$RES.json" \
    --markdown "$WORK/compare-$RES.md" >> "$LOG" 2>&1
  compare_rc=$?
  echo "== $RES: pytest-benchmark compare of the two files" | tee -a "$LOG"
  python3 -c "import sys; from pytest_benchmark.cli import main; sys.argv[0] = 'pytest-benchmark'; main()" compare "$single_run" "$merged_run" >> "$LOG" 2>&1

  ratio=$(awk -v a="$single_s" -v b="$sharded_s" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "?" }')
  hits=$(python3 - "$WORK/compare-$RES.json" <<'EOF' 2>&1
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
hits = [(r["label"], v["status"]) for r in rows for v in r["verdicts"] if v["metric"] == "hits"]
bad = [f"{label}: {status}" for label, status in hits if status != "ok"]
print(f"{len(hits) - len(bad)} of {len(hits)} benchmarks with identical hits" + (f"; differ: {', '.join(bad)}" if bad else ""))
EOF
)
  {
    echo "# $MODEL ${RES}x${RES}, $STEPS steps, default 8-prompt set, thresholds $THRESHOLDS, $ROUNDS rounds: 2 GPUs vs 1 GPU"
    echo
    echo "$(date -u +%F) on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | sort | uniq -c | tr -s ' ' | paste -sd ';' || echo "$DEVICE")"
    echo
    echo "| sweep | wall clock (s) | exit |"
    echo "|---|---|---|"
    echo "| sharded over 2 GPUs (one process per GPU, model built in each) | $sharded_s | $sharded_rc |"
    echo "| 1 GPU | $single_s | $single_rc |"
    echo
    echo "1-GPU wall clock / 2-GPU wall clock: **$ratio**. Merge exit $merge_rc; compare exit $compare_rc."
    echo
    echo "Hits: $hits."
    echo
    cat "$WORK/compare-$RES.md" 2>/dev/null
  } > "$OUT/summary-$RES.md"
  for f in "$WORK/images-$RES-"*/results*.md; do cp "$f" "$STORAGE/$(basename "$(dirname "$f")")-$(basename "$f")" 2>/dev/null; done
  cp "$WORK/compare-$RES.json" "$STORAGE/" 2>/dev/null
  tar czf "$OUT/history-$RES.tgz" -C "$WORK" "history-$RES"
done
