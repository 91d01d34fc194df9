#!/usr/bin/env bash
# Installs every system package the project builds, tests and demos with (Debian 12).
# Idempotent and non-interactive; never starts Orthanc as a system service.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake ninja-build pkg-config git clang-format
  # DICOM stack
  libdcmtk-dev dcmtk libinsighttoolkit5-dev libgdcm-dev libgdcm-tools
  libpng-dev libjpeg-dev zlib1g-dev
  # model runtime (libtorch 1.13 + a fast BLAS)
  libtorch-dev libopenblas0-pthread
  # the DICOM node
  orthanc orthanc-dev orthanc-dicomweb orthanc-doc libboost-dev libjsoncpp-dev
  # scale-out: a shared study queue in PostgreSQL (libpq), tests with a real server and cluster
  postgresql libpq-dev orthanc-postgresql
  # tests
  libgtest-dev nlohmann-json3-dev dicom3tools pixelmed-apps default-jre-headless
  python3-pydicom python3-numpy python3-jsonschema curl procps
  python3-pil  # Pillow: the reference resampler, cross-checks the C++ bicubic resize
  # Unicode data for scripts/gen-unicode-tables.py and the NFC test (NormalizationTest.txt);
  # python3-regex cross-checks the tokenizer's pre-tokenizer regex
  unicode-data python3-regex bzip2
  clang libclang-rt-14-dev  # libFuzzer for the DICOM reader's fuzz target (-DUNIBIOMED_FUZZ=ON)
)
# Node.js with npm (for the dcmjs checks): the machine's own build when present, else Debian's.
if ! command -v npm >/dev/null 2>&1; then PACKAGES+=(nodejs npm); fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # policy-rc.d 101 keeps dpkg from starting services (Orthanc) during installation.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    created_policy=1
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  [ $created_policy -eq 1 ] && $SUDO rm -f "$policy"
fi

# An Orthanc service started by some earlier installation would hold the default ports.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet orthanc 2>/dev/null; then
  echo "install-deps: note: a system Orthanc service is running; the tests use their own ports"
fi

# npm packages of the writer tests (dcmjs, pinned in tests/js/package-lock.json).
"$(dirname "$0")/install-js.sh"

# The viewer test: chromium, fonts, playwright-core and the cached OHIF build (tests/viewer).
"$(dirname "$0")/install-viewer.sh"
