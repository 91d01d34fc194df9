#!/bin/sh
# test_inference_answer_variant: the tests that read the end-to-end answer (e2e.json,
# e2e.safetensors) on a shorter answer of the reference set, made at test time by
# scripts/reference-variant.py --answer-tokens K (exact: tests/reference/README.md), so that no
# test quietly depends on the reference's answer length, ids, stop reason or [SEG] count.
# Every binary runs even when one fails; any failure, of the script or of a binary, fails the test.
#   answer_variant_test.sh K SOURCE_DIR TEST_BINARY GTEST_FILTER [TEST_BINARY GTEST_FILTER...]
# SPDX-License-Identifier: GPL-3.0-or-later
set -eu
tokens=$1 src=$2
shift 2
if [ $# -lt 2 ] || [ $(($# % 2)) -ne 0 ]; then
  echo "answer_variant_test.sh: give TEST_BINARY GTEST_FILTER pairs" >&2
  exit 2
fi
python=/usr/bin/python3
[ -x "$python" ] || python=python3
out=$(mktemp -d "${TMPDIR:-/tmp}/unibiomed-reference-answer$tokens.XXXXXX")
trap 'rm -rf "$out"' EXIT
"$python" "$src/scripts/reference-variant.py" --answer-tokens "$tokens" "$src/tests/reference" "$out/reference"
failed=""
while [ $# -gt 0 ]; do
  binary=$1 filter=$2
  shift 2
  echo "answer_variant_test.sh: $binary --gtest_filter=$filter"
  UNIBIOMED_REFERENCE_DIR="$out/reference" "$binary" --gtest_filter="$filter" || failed="$failed $(basename "$binary")"
done
if [ -n "$failed" ]; then
  echo "answer_variant_test.sh: failed on the --answer-tokens $tokens variant:$failed" >&2
  exit 1
fi
