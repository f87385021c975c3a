#!/usr/bin/env bash
# run.sh NAME MODE: one tiny sweep (thresholds 0 0.5 0.8, 2 rounds, no warm-up round) on the compile cache
# under the working directory; the log gets the exit status, the wall time and the load average.
# Run from an empty directory with fbcache importable: eager none; io-cold regional+io; io-warm regional+io;
# then delete everything in compile-cache but fbcache-compiled.json and run io-wiped regional+io.
name=$1; mode=$2
start=$(date +%s.%N)
python -m pytest "$REPO/benchmarks" -p no:cacheprovider -q \
  --fbcache-model tiny --fbcache-thresholds "0 0.5 0.8" --fbcache-rounds 2 --fbcache-warmup-rounds 0 --fbcache-bounds none \
  --fbcache-compile "$mode" --fbcache-compile-cache "$PWD/compile-cache" --benchmark-storage "file://$PWD/history/$name" \
  --fbcache-output-dir "$PWD/images/$name" --benchmark-autosave > "$name.log" 2>&1
echo "rc=$? wall $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s, load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$name.log"
