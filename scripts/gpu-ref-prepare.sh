#!/usr/bin/env bash
# Assembles the original UniBiomed Python code that bench/ref/ref_gpu.py times, into .gpu/ref/py
# (ignored by git; carried to the GPU machine with .gpu, which has no network):
#
#   scripts/gpu-ref-prepare.sh [REFBENCH_DIR]
#
# REFBENCH_DIR holds prepare.sh, the team's script that copies the official files
# (Luffy03/UniBiomed projects/unibiomed/hf/models and transformers' Qwen2 files, at the commits
# the project's reference numbers come from) and its import stubs; default ../shared/refbench.
# REF_UNIBIOMED_SRC / REF_TRANSFORMERS_SRC name local git dirs of those repositories (else it
# downloads them). None of these files is part of the project.
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
refbench=${1:-$root/../shared/refbench}
[ -x "$refbench/prepare.sh" ] || [ -f "$refbench/prepare.sh" ] || {
  echo "gpu-ref-prepare.sh: no prepare.sh in $refbench" >&2; exit 1; }
mkdir -p "$root/.gpu/ref"
bash "$refbench/prepare.sh" "$root/.gpu/ref"
du -sh "$root/.gpu/ref/py"
