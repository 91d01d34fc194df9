#!/usr/bin/env bash
# Runs every CTest suite of a build folder, prints CTest's summary and then, separately, the
# tests that did not run (skipped, not run or disabled) with their count. Exits with CTest's
# status. A skip is the exception here (only the real-tokenizer cases, when the Qwen2.5
# tokenizer files are absent; see tests/reference/README.md): a missing tool or file fails.
set -euo pipefail
BUILD_DIR=${1:-build}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

set +e
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)" --timeout 1800 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

not_run=$(grep -E '^[[:space:]]+[0-9]+ - .* \((Skipped|Not Run|Disabled)\)$' "$log" || true)
count=0
[ -n "$not_run" ] && count=$(printf '%s\n' "$not_run" | wc -l)
echo
echo "run-tests: $count test(s) did not run"
[ -n "$not_run" ] && printf '%s\n' "$not_run"
echo "run-tests: ctest exit status $status"
exit "$status"
