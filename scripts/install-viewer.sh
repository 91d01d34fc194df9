#!/usr/bin/env bash
# Installs what the viewer test (tests/viewer) needs, idempotently:
#   - Debian's chromium and fonts-liberation (the browser playwright-core drives; never
#     `playwright install`, which would download a browser build of its own),
#   - the npm packages pinned in tests/viewer/package-lock.json (`npm ci`),
#   - the built OHIF viewer, `npm pack @ohif/app@3.13.2`, unpacked once into a cache folder
#     outside git (default ~/.cache/unibiomed/ohif-3.13.2; override with UNIBIOMED_OHIF_DIR).
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OHIF_VERSION=3.13.2
OHIF_DIR=${UNIBIOMED_OHIF_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/unibiomed/ohif-$OHIF_VERSION}

# --- Debian packages ----------------------------------------------------------
PACKAGES=(chromium fonts-liberation)
if ! command -v npm >/dev/null 2>&1; then PACKAGES+=(nodejs npm); fi
missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-viewer: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- npm packages of the tests (playwright-core, dcmjs, dicom-microscopy-viewer, dicomweb-client)
# `npm ci` runs again only when the lock file changed since the last install (a copy of it is
# kept in node_modules as the stamp).
VIEWER_TEST="$ROOT/tests/viewer"
if ! cmp -s "$VIEWER_TEST/package-lock.json" "$VIEWER_TEST/node_modules/.unibiomed-installed-lock"; then
  echo "install-viewer: npm ci in tests/viewer"
  (cd "$VIEWER_TEST" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$VIEWER_TEST/package-lock.json" "$VIEWER_TEST/node_modules/.unibiomed-installed-lock"
fi

# --- the built OHIF viewer ----------------------------------------------------
if [ ! -f "$OHIF_DIR/dist/index.html" ]; then
  echo "install-viewer: fetching @ohif/app@$OHIF_VERSION into $OHIF_DIR"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack "@ohif/app@$OHIF_VERSION" --silent >/dev/null)
  tar -xzf "$tmp"/ohif-app-"$OHIF_VERSION".tgz -C "$tmp"
  if [ ! -f "$tmp/package/dist/index.html" ]; then
    echo "install-viewer: @ohif/app@$OHIF_VERSION has no dist/index.html" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$OHIF_DIR")"
  rm -rf "$OHIF_DIR.partial"
  mv "$tmp/package" "$OHIF_DIR.partial"
  rm -rf "$OHIF_DIR"
  mv "$OHIF_DIR.partial" "$OHIF_DIR"   # atomic enough: a half-unpacked cache is never used
fi
echo "install-viewer: OHIF $OHIF_VERSION at $OHIF_DIR"
