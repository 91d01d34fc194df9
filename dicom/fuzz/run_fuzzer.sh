#!/usr/bin/env bash
# Runs the libFuzzer target for a bounded time on a seed corpus made of pydicom's test files
# (small ones) and a few edge cases. Usage: run_fuzzer.sh FUZZER SECONDS
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail
fuzzer=$1
seconds=${2:-60}
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
seeds=/usr/lib/python3/dist-packages/pydicom/data/test_files
if [ -d "$seeds" ]; then
  find "$seeds" -maxdepth 1 -name '*.dcm' -size -200k -exec cp {} "$corpus"/ \;
fi
printf 'DICM' > "$corpus/short"
export LSAN_OPTIONS="suppressions=$(dirname "$0")/lsan.supp:print_suppressions=0"
"$fuzzer" "$corpus" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
  -artifact_prefix="${TMPDIR:-/tmp}/fuzz-dicom-"
