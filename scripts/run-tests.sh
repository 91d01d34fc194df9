#!/usr/bin/env bash
# Runs every CTest suite of a build folder and prints CTest's summary line.
set -euo pipefail
BUILD_DIR=${1:-build}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)" --timeout 1800
