#!/usr/bin/env bash
# Installs the npm packages the writer tests run (tests/js: dcmjs, pinned in package-lock.json)
# with `npm ci`. Idempotent: skips when node_modules matches the lockfile already.
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail
cd "$(dirname "$0")/../tests/js"
if ! command -v npm >/dev/null 2>&1; then
  echo "install-js: npm not found (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
stamp=node_modules/.unibiomed-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "install-js: tests/js packages up to date"
  exit 0
fi
# No install scripts: dcmjs and its dependencies need none (core-js-pure's only prints a banner).
npm ci --ignore-scripts --no-audit --no-fund
echo "$want" > "$stamp"
echo "install-js: installed tests/js packages"
