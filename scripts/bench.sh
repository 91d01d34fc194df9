#!/usr/bin/env bash
# Runs every benchmark program of a build folder, one after the other (never in parallel:
# they measure this machine's throughput in the same run).
set -euo pipefail
BUILD_DIR=${1:-build}
shopt -s nullglob
found=0
for b in "$BUILD_DIR"/bench/bench_*; do
  [ -x "$b" ] || continue
  found=1
  echo "=== $(basename "$b")"
  "$b"
done
[ $found -eq 1 ] || echo "bench: no benchmarks built yet"
