#!/usr/bin/env bash
# The demo: what the project can show end to end so far (see README, "The demo").
set -euo pipefail
BUILD_DIR=${1:-build}
BIN="$BUILD_DIR/cli/unibiomed"
echo "demo: the command-line tool is built at $BIN"
"$BIN" --help
