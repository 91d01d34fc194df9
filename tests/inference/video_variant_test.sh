#!/bin/sh
# test_inference_video_variant_<K>: the video tests (Video*) of test_inference_grounding on the
# first K frames of the reference set, made at test time by scripts/reference-variant.py (an exact
# variant: tests/reference/README.md). Any failure, of the script or of a test, fails the test.
#   video_variant_test.sh K SOURCE_DIR TEST_BINARY [gtest arguments...]
# SPDX-License-Identifier: GPL-3.0-or-later
set -eu
frames=$1 src=$2 binary=$3
shift 3
python=/usr/bin/python3
[ -x "$python" ] || python=python3
out=$(mktemp -d "${TMPDIR:-/tmp}/unibiomed-reference-$frames-frames.XXXXXX")
trap 'rm -rf "$out"' EXIT
"$python" "$src/scripts/reference-variant.py" --frames "$frames" "$src/tests/reference" "$out/reference"
UNIBIOMED_REFERENCE_DIR="$out/reference" "$binary" --gtest_filter='Video*' "$@"
