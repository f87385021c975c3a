#!/usr/bin/env bash
# Issue #26 on one GPU: a persistent compile cache (cold vs warm), and --fbcache-compile regional+io
# against regional, on flux-random (full-size FLUX.1-dev architecture, random weights: TIMING ONLY),
# 1024x1024, 28 steps, through the harness.
#
#   scripts/gpu-compile.sh                   # every session of tools/gpu_compile.py's SESSIONS, in order
#   scripts/gpu-compile.sh fp8-io-cold fp8-io-warm
#
# One pytest session (one process) per entry, all sharing one fresh --fbcache-compile-cache directory:
# fp8-io-cold compiles into the empty cache, fp8-io-warm is the same stack's second process; the
# regional and bf16 sessions give each mode's uncached time and speedup at 0.8; fp8-io-blocks keeps the
# embedders and output layers in bf16 (--fbcache-quant-filter blocks). The sessions run in order of what
# they answer and the script stops starting new ones when less than a session's need is left of BUDGET_S
# (seconds, the per-call budget); a running session is killed at the budget, and the table is written from
# whatever was saved.
# Env: OUT (default ./gpu-compile-out), THRESHOLDS ("0.8"), ROUNDS (2), WARMUP (0: each cache state's
# untimed first call is the warm-up), BUDGET_S (520), COMPILE_LOGS (TORCH_LOGS, default "recompiles"),
# SKIP_WHEELS=1 to use the installed diffusers/torchao instead of .whl/, KEEP=1 to keep the compile cache
# and the earlier sessions' histories of a previous call on the same machine (split over two calls: `scripts/gpu-compile.sh fp8-io-cold fp8-io-warm`, then
# `KEEP=1 scripts/gpu-compile.sh fp8-regional bf16-io-cold ...`; the table then has every session).
# $OUT gets: gpu-info.txt, one <session>.log each, walls.txt, summary.md, check.txt, histories.tgz.
# Exit status: 0 when every session started saved a run and no timed round compiled anything.
set -uo pipefail
START=$(date +%s)
OUT=${OUT:-gpu-compile-out}
THRESHOLDS=${THRESHOLDS:-0.8}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-0}
BUDGET_S=${BUDGET_S:-520}
WORK=$PWD/.gpu-compile
CACHE=$WORK/compile-cache
export PYTHONUNBUFFERED=1

# name quant compile quant-filter seconds-needed (a warm session's model load, first calls and rounds)
SESSIONS="fp8-io-cold torchao-fp8 regional+io all 0
fp8-io-warm torchao-fp8 regional+io all 90
fp8-regional torchao-fp8 regional all 90
bf16-io-cold none regional+io all 120
bf16-regional none regional all 90
fp8-io-blocks torchao-fp8 regional+io blocks 90
bf16-io-warm none regional+io all 90"
[ $# -gt 0 ] && WANTED=" $* " || WANTED=""
for name in "$@"; do  # unknown names stop here, before any GPU work
  grep -q "^$name " <<< "$SESSIONS" || { echo "unknown session '$name'; known: $(cut -d' ' -f1 <<< "$SESSIONS" | xargs)" >&2; exit 2; }
done

. "$(dirname "$0")/_gpu-wheels.sh"
[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
LOGS=$WORK/logs  # the logs and walls of every session, this call's and a kept earlier call's; copied to $OUT
mkdir -p "$OUT" "$LOGS"
touch "$LOGS/walls.txt"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c "import torch, diffusers, torchao; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'diffusers', diffusers.__version__, 'torchao', torchao.__version__)"
  date -u +%FT%TZ
} > "$OUT/gpu-info.txt" 2>&1

left() { echo $((BUDGET_S - ($(date +%s) - START))); }
while read -r name quant compile filter need; do
  [ -z "$WANTED" ] || [[ "$WANTED" == *" $name "* ]] || continue
  remaining=$(left)
  if [ "$remaining" -lt $((need + 15)) ]; then
    echo "$name skipped: $remaining s of the budget left, it needs about $need s" | tee -a "$LOGS/walls.txt"
    continue
  fi
  echo "===== $name: --fbcache-quant $quant --fbcache-compile $compile --fbcache-quant-filter $filter, $(date -u +%T), $remaining s left" \
    | tee "$LOGS/$name.log"
  began=$(date +%s)
  rm -rf "$WORK/history/$name" "$WORK/images/$name"
  extra=()
  [ "$filter" = all ] || extra=(--fbcache-quant-filter "$filter")  # a torchao option: bf16 sessions leave it out
  # the last 15 s of the budget are the table's and the archive's
  TORCH_LOGS=${COMPILE_LOGS:-recompiles} timeout $((remaining - 15)) python3 -m pytest benchmarks -p no:cacheprovider \
    --fbcache-model flux-random --fbcache-device cuda --fbcache-quant "$quant" --fbcache-compile "$compile" \
    "${extra[@]}" --fbcache-compile-cache "$CACHE" --fbcache-thresholds "$THRESHOLDS" \
    --fbcache-rounds "$ROUNDS" --fbcache-warmup-rounds "$WARMUP" --fbcache-bounds none \
    --fbcache-output-dir "$WORK/images/$name" --benchmark-storage "file://$WORK/history/$name" \
    --benchmark-autosave >> "$LOGS/$name.log" 2>&1
  rc=$?
  echo "$name $(( $(date +%s) - began )) rc=$rc" | tee -a "$LOGS/walls.txt"
done <<< "$SESSIONS"

cp "$LOGS"/*.log "$LOGS/walls.txt" "$OUT/"
python3 -m tools.gpu_compile --history "$WORK/history" --walls "$OUT/walls.txt" --out "$OUT/summary.md"
tar czf "$OUT/histories.tgz" -C "$WORK" history $(cd "$WORK" && ls images/*/results.md 2>/dev/null) 2>/dev/null

# No timed round may have compiled anything: the harness fails such a benchmark with this message,
# and every compiled session that completed prints how many benchmarks it checked.
status=0
{
  bad=$(cat "$OUT"/*.log | grep -h -E "recompiled during the timed rounds|new graph\(s\) .* during the timed rounds" | sort -u)
  if [ -n "$bad" ]; then echo "FAIL: compilation during timed rounds:"; echo "$bad"; status=1; fi
  while read -r name seconds rc; do
    [ "$seconds" = skipped: ] && continue
    saved=$(ls "$WORK/history/$name"/*/0*.json 2>/dev/null | wc -l)
    checked=$(grep -c "no compilation during the timed rounds of" "$OUT/$name.log")
    echo "$name: $rc, $saved saved run(s), recompile check printed $checked time(s)"
    { [ "$saved" -ge 1 ] && [ "$checked" -ge 1 ]; } || status=1
  done < "$OUT/walls.txt"
  echo "compile cache: $(du -sh "$CACHE" 2>/dev/null | cut -f1) in $(find "$CACHE" -type f 2>/dev/null | wc -l) files"
  echo "TORCH_LOGS=recompiles lines (first calls included): $(cat "$OUT"/*.log | grep -c 'Recompiling function')"
  [ $status -eq 0 ] && echo "OK: every session started saved a run; no compilation during timed rounds" || echo "FAILED"
  echo "total $(( $(date +%s) - START )) s"
} > "$OUT/check.txt"
cat "$OUT/summary.md" "$OUT/check.txt"
exit $status
