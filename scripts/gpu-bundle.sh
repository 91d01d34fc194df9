#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# gpu-bundle.sh: the Debian 12 libraries and headers that the whole product (dicom, writers,
# pipeline, CLI, Orthanc plugin, tests, benches) builds and runs with, carried to a machine that
# has no apt and no network (the GPU machine of issue 23: Ubuntu 24.04, g++, CMake, ninja, Python
# with a PyTorch wheel, nothing of ours).
#
#   scripts/gpu-bundle.sh make   [DIR]          here (Debian 12, apt): writes DIR (default .gpu/deps,
#                                               ignored by git) with .deb files, pruned tar.xz parts
#                                               and MANIFEST; prints its size and largest items.
#   scripts/gpu-bundle.sh unpack DIR PREFIX [EXTRA_PREFIX...]
#                                               there: no apt, no network, no root. Unpacks every
#                                               .deb (dpkg -x) and part into PREFIX, moves lib/ into
#                                               usr/lib/, points absolute symlinks into PREFIX,
#                                               rewrites the /usr paths in the CMake and pkg-config
#                                               files, and writes PREFIX/cmake-args and PREFIX/env.sh.
#
# Use there (PREFIX without spaces):
#   scripts/gpu-bundle.sh unpack .gpu/deps "$PREFIX" "$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')"
#   cmake -S . -B build -G Ninja $(cat "$PREFIX/cmake-args") -DUNIBIOMED_WERROR=OFF ...
#   . "$PREFIX/env.sh"   # to run the programs and tests; the build itself needs no environment
# cmake-args holds CMAKE_PREFIX_PATH (PREFIX/usr, then the EXTRA_PREFIX paths: give the torch
# wheel's cmake prefix there instead of a second -DCMAKE_PREFIX_PATH, which would replace ours),
# the packages' _DIR variables, and CMAKE_{EXE,SHARED,MODULE}_LINKER_FLAGS that put PREFIX's
# library folders into the programs' DT_RPATH (--disable-new-dtags: unlike RUNPATH it also
# serves the libraries' own dependencies, e.g. libdcmdata -> libxml2 -> libicuuc), so that the
# built programs, and the test discovery that runs them during the build, load without
# LD_LIBRARY_PATH, and PREFIX's library folder into the linker's -L search (for -lnsl); add
# further linker flags to those same variables, not beside them.
# env.sh sets LD_LIBRARY_PATH, and DCMDICTPATH: Debian's DCMTK reads its data dictionary from
# /usr/share/libdcmtk17 unless told, so the programs need it to read or write DICOM.
#
# What is in the bundle (MANIFEST lists each package, version and what was pruned):
#  * whole .deb files: libdcmtk-dev, libinsighttoolkit5-dev, GDCM (libgdcm3.0, -dev), libpng,
#    libjpeg, libtiff, libxml2, libexpat, libpq, GoogleTest (libgtest-dev), nlohmann-json,
#    orthanc-dev (OrthancCPlugin.h), libnsl (DCMTK::config links -lnsl; Debian's libc6-dev brings
#    libnsl-dev, Ubuntu's may not), and the runtime libraries that the linked ones need (ELF
#    NEEDED closure from ROOT_LIBS, checked by `make`): krb5, ldap/sasl, gnutls & co.
#  * slimmed (tar.xz): libdcmtk17, libinsighttoolkit5.2: the libraries outside that closure are
#    empty files (the *Targets.cmake files insist that they exist; linking one fails loudly);
#    libssl3 without engines and providers.
#  * pruned (tar.xz of a part of one package): Boost (the headers the build includes, from
#    `ninja -t deps` of build/ and g++ -M of <boost/asio.hpp>, all of boost/config and
#    boost/asio, and Boost's CMake package files), libicu72 (libicuuc, and libicudata rebuilt
#    with icupkg/genccode holding only the converters, aliases, normalization and property data:
#    libxml2's use; 6.8 of 31 MB), libssl-dev (headers, .so links, .pc), zlib1g-dev (zlib.h,
#    zconf.h; the libz.so link is made at unpack to the system's libz.so.1), dcmtk and
#    libgdcm-tools (dsrdump, which tests/writers runs, dcmdump, gdcmconv; env.sh appends
#    PREFIX/usr/bin to PATH). Not carried for the tests: dicom3tools (dciodvfy, 8 MB), PixelMed
#    (Java), pydicom/numpy/Pillow, Node.js/dcmjs, Orthanc: their test cases fail without them.
#  * not carried (the target has them, and carrying them would shadow its own): glibc,
#    libstdc++, libgcc, zlib, liblzma, libzstd, libbz2, libgmp, libffi, libuuid; OpenBLAS (the
#    wheel's torch has its own BLAS); libtorch (the wheel).
# make needs apt-get, dpkg-deb, xz, gcc, g++, readelf/nm and icu-devtools (icupkg, genccode);
# unpack needs dpkg-deb, tar, sed, find and xz or python3 (all on a stock Ubuntu 24.04).
# unpack also patches ITKConfig.cmake: with COMPONENTS it loads only the requested modules
# (it first loaded every module ITK was built with, and two of those find_package() HDF5 and
# MINC, whose -dev packages the project does not use).
#
# Proof on a bare system (2026-12-05, on the Debian 12 development machine):
#   apt-get install debootstrap
#   debootstrap --variant=minbase bookworm /tmp/gpu-chroot http://deb.debian.org/debian
#   in it: apt-get install --no-install-recommends build-essential cmake ninja-build python3 \
#          libtorch-dev libopenblas0-pthread      (Debian's libtorch stands in for the wheel's)
#   git archive HEAD + this change into /src, .gpu/deps beside it, then in the chroot:
#   scripts/gpu-bundle.sh unpack .gpu/deps /opt/deps
#   cmake -S . -B build -G Ninja $(cat /opt/deps/cmake-args) -DUNIBIOMED_WITH_DICOM=ON \
#         -DUNIBIOMED_BUILD_TESTS=ON -DUNIBIOMED_BUILD_BENCH=ON -DUNIBIOMED_WERROR=OFF
#   nice -n 10 ninja -C build -j2: all 218 steps (CLI, plugin, every test and bench), 27 min.
#   ldd build/cli/unibiomed, build/orthanc-plugin/libUniBiomedOrthanc.so without LD_LIBRARY_PATH:
#   nothing "not found", each of the bundle's libraries resolved inside /opt/deps (DT_RPATH).
#   unibiomed samples write (ct, xray) + analyze --model samples/demo-checkpoint: 2 studies,
#   6 findings, SEG + SR + summary.json each; without env.sh DCMTK has no dictionary and fails.
#   Torch-free test binaries: every case passes except those needing what the chroot lacks
#   (pydicom, numpy, Pillow, python3-regex, unicode-data, dciodvfy, PixelMed, Node.js/dcmjs).
#   A second, fresh unpack with the chroot's libnsl.so/libnsl.a moved away: configure, and
#   fuzz_dicom_replay (DCMTK, ITK, GDCM, PNG, JPEG, -lnsl) builds and links from the prefix.
#   Libraries of the bundle that libtorch-dev's closure also puts into such a chroot (so a missing
#   one would not show there; the ldd check above shows ours are the ones loaded) are listed by
#   `make` in MANIFEST under "also in a libtorch-dev system"; they are carried all the same.
set -euo pipefail

ARCH=x86_64-linux-gnu
here="$(cd "$(dirname "$0")/.." && pwd)"

# Whole .deb files.
DEBS=(
  libdcmtk-dev libinsighttoolkit5-dev
  libgdcm3.0 libgdcm-dev
  libpng16-16 libpng-dev libjpeg62-turbo libjpeg62-turbo-dev
  libtiff6 libtiff-dev libwebp7 liblerc4 libjbig0 libdeflate0
  libxml2 libxml2-dev libexpat1 libexpat1-dev
  libopenjp2-7 libcharls2 libjson-c5
  libpq5 libpq-dev
  libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2
  libldap-2.5-0 libsasl2-2
  libgnutls30 libhogweed6 libnettle8 libtasn1-6 libp11-kit0 libidn2-0 libunistring2
  libnsl2 libnsl-dev libtirpc3 libtirpc-common
  nlohmann-json3-dev libgtest-dev orthanc-dev
)
# Pruned packages: name -> what is kept (see prune_* below).
PRUNED=(libboost1.74-dev libicu72 libssl-dev zlib1g-dev dcmtk libgdcm-tools)
# Command-line tools that the tests run (tests/writers: dsrdump; dcmdump to look at files; gdcmconv).
TOOLS=(usr/bin/dsrdump usr/bin/dcmdump usr/bin/gdcmconv)
# Slimmed runtime packages: every library outside the runtime closure of ROOT_LIBS becomes an
# empty file of the same name (the packages' *Targets.cmake check that each library they
# declare exists; nothing links the unused ones: if something did, the link would fail on the
# empty file instead of running with a missing library), no docs. libssl3: no engines or
# providers (the legacy provider is loaded on request only).
SLIM=(libinsighttoolkit5.2 libdcmtk17 libssl3)

# Libraries the build links (directly or through the packages' CMake targets): the roots of the
# runtime closure that `make` checks.
ROOT_LIBS=(
  libofstd.so.17 liboflog.so.17 libdcmdata.so.17 libdcmimgle.so.17 libdcmimage.so.17
  libdcmjpeg.so.17 libdcmjpls.so.17 libdcmsr.so.17 libdcmseg.so.17 libdcmiod.so.17 libdcmfg.so.17
  libITKCommon-5.2.so.1 libITKIOImageBase-5.2.so.1 libITKIONIFTI-5.2.so.1 libITKIONRRD-5.2.so.1
  libITKIOGDCM-5.2.so.1 libITKMetaIO-5.2.so.1 libITKSpatialObjects-5.2.so.1 libITKStatistics-5.2.so.1
  libITKTransform-5.2.so.1 libITKPath-5.2.so.1 libITKVNLInstantiation-5.2.so.1
  libitkvnl-5.2.so.1 libitkvnl_algo-5.2.so.1 libitkvcl-5.2.so.1 libitksys-5.2.so.1 libitkNetlibSlatec-5.2.so.1
  libgdcmMSFF.so.3.0 libgdcmDSED.so.3.0 libgdcmCommon.so.3.0 libgdcmIOD.so.3.0 libgdcmDICT.so.3.0
  libpng16.so.16 libjpeg.so.62 libtiff.so.6 libxml2.so.2 libexpat.so.1
  libcrypto.so.3 libssl.so.3 libpq.so.5 libnsl.so.2
)
# Sonames the target is assumed to have (a bare Ubuntu 24.04 with g++ and Python).
ASSUMED_ON_TARGET='^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libresolv\.so\.2|ld-linux-x86-64\.so\.2|libstdc\+\+\.so\.6|libgcc_s\.so\.1|libz\.so\.1|liblzma\.so\.5|libzstd\.so\.1|libbz2\.so\.1\.0|libgmp\.so\.10|libffi\.so\.8|libuuid\.so\.1)$'

die() { echo "gpu-bundle: $*" >&2; exit 1; }

# --- make ---------------------------------------------------------------------------------------

# Boost: the headers the build includes, and what Asio may include with another compiler.
prune_boost() {
  local root=$1 out=$2 list
  list=$(mktemp)
  {
    if [ -f "$here/build/build.ninja" ]; then
      ninja -C "$here/build" -t deps 2>/dev/null | grep -oE '/usr/include/boost/[^ ]+' || true
    fi
    for std in c++17 c++20; do
      printf '#include <boost/asio.hpp>\n#include <boost/asio/thread_pool.hpp>\n#include <boost/asio/post.hpp>\n' |
        g++ -std=$std -x c++ -M -I "$root/usr/include" - 2>/dev/null | tr ' \\' '\n\n' |
        grep -oE '/usr/include/boost/[^ ]+' || true
    done
  } | sed "s#^$root##; s#^/usr/include/##" | sort -u > "$list.files"
  (cd "$root/usr/include" && find boost/config boost/asio -type f && echo boost/version.hpp && cat "$list.files") |
    sort -u > "$list"
  tar -C "$root/usr/include" -cf - -T "$list" --transform 's#^#usr/include/#' | xz -9e -T1 > "$out.tmp"
  # The Boost CMake package (BoostConfig + boost_headers) so that find_package(Boost) works.
  (cd "$root" && find usr/lib/$ARCH/cmake -maxdepth 1 \( -name 'Boost-*' -o -name 'boost_headers-*' -o -name 'BoostDetectToolset-*' \)) > "$list.cmake"
  xz -d < "$out.tmp" > "$out.tar"
  tar -C "$root" -rf "$out.tar" -T "$list.cmake"
  xz -9e -T1 < "$out.tar" > "$out"
  echo "$(wc -l < "$list") of $(find "$root/usr/include/boost" -type f | wc -l) header files; cmake: $(tr '\n' ' ' < "$list.cmake")"
  rm -f "$list" "$list.files" "$list.cmake" "$out.tmp" "$out.tar"
}

# ICU: libxml2 (which libdcmdata needs) links libicuuc, whose data library is 30 MB, mostly
# locale, collation, break-iterator and time-zone data that libxml2 never asks for. Keep libicuuc
# and rebuild libicudata with the character converters, alias table, normalization and property
# data only (icupkg removes the rest from the data package, genccode turns it back into a
# library exporting icudt72_dat, as the original does).
prune_icu() {
  local root=$1 out=$2 lib work so addr size secaddr secoff
  command -v icupkg >/dev/null && command -v genccode >/dev/null || die "icupkg/genccode missing: apt-get install icu-devtools"
  lib=$(cd "$root/usr/lib/$ARCH" && ls libicudata.so.72.*)
  work=$(mktemp -d)
  so="$root/usr/lib/$ARCH/$lib"
  read -r addr size < <(nm -D -S "$so" | awk '$4=="icudt72_dat"{print $1, $2}')
  read -r secaddr secoff < <(readelf -S -W "$so" | awk '$2==".rodata"{print $4, $5}')
  [ -n "${addr:-}" ] && [ -n "${secaddr:-}" ] || die "no icudt72_dat in $lib"
  tail -c +$((0x$addr - 0x$secaddr + 0x$secoff + 1)) "$so" | head -c $((0x$size)) > "$work/icudt72l.dat"
  icupkg -l "$work/icudt72l.dat" > "$work/all"
  # Remove: every sub-tree (brkitr coll curr lang rbnf region translit unit zone), the locale
  # bundles (xx.res, xx_YY.res) and the spoof data; keep root and the supplemental .res files.
  { grep / "$work/all"
    grep -v / "$work/all" | grep -E '^[a-z]{2,3}(_[A-Za-z0-9]+)*\.res$' | grep -vxE '(root|pool)\.res'
    echo confusables.cfu; } > "$work/remove.txt"
  mkdir "$work/out" "$work/gen"
  icupkg -r "$work/remove.txt" "$work/icudt72l.dat" "$work/out/icudt72l.dat" >/dev/null
  genccode -a gcc -e icudt72 -d "$work/gen" "$work/out/icudt72l.dat" >/dev/null
  gcc -shared -nostdlib -Wl,-soname,libicudata.so.72 -o "$work/$lib" "$work"/gen/*.S
  cp -a "$root/usr/lib/$ARCH/libicudata.so.72" "$work/"
  mkdir -p "$work/t/usr/lib/$ARCH"
  cp -a "$root/usr/lib/$ARCH"/libicuuc.so.* "$work/$lib" "$work/libicudata.so.72" "$work/t/usr/lib/$ARCH/"
  (cd "$work/t" && tar -cf - usr) | xz -9e -T1 > "$out"
  echo "libicuuc whole; libicudata rebuilt with $(( $(wc -l < "$work/all") - $(wc -l < "$work/remove.txt") )) of $(wc -l < "$work/all") data items (converters, aliases, normalization, properties; no locales, collation, break iterators, zones), $(stat -c %s "$work/$lib") of $(stat -c %s "$so") bytes; no libicui18n, libicuio, libicutest"
  rm -rf "$work"
}

prune_tools() {   # only the TOOLS this package has; their libraries are checked with the closure
  local root=$1 out=$2 have=() t
  for t in "${TOOLS[@]}"; do [ -e "$root/$t" ] && have+=("$t"); done
  [ ${#have[@]} -gt 0 ] || die "none of ${TOOLS[*]} in $root"
  (cd "$root" && tar -cf - "${have[@]}") | xz -9e -T1 > "$out"
  echo "${have[*]} only"
}

prune_ssl_dev() {   # headers, .so links and pkg-config files; no static libraries
  local root=$1 out=$2
  (cd "$root" && tar -cf - usr/include usr/lib/$ARCH/libssl.so usr/lib/$ARCH/libcrypto.so usr/lib/$ARCH/pkgconfig) |
    xz -9e -T1 > "$out"
  echo "headers, libssl.so/libcrypto.so links, pkgconfig (no libssl.a, libcrypto.a, docs)"
}

prune_zlib_dev() {   # zlib.h for FindZLIB (FindPNG needs it); libz.so is linked at unpack
  local root=$1 out=$2
  (cd "$root" && tar -cf - usr/include) | xz -9e -T1 > "$out"
  echo "zlib.h, zconf.h only (libz.so link made at unpack to the system's libz.so.1; no libz.a)"
}

cmd_make() {
  local dir=${1:-$here/.gpu/deps}
  command -v apt-get >/dev/null || die "make runs on the Debian 12 development machine (apt-get)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  rm -f "$dir"/*.deb "$dir"/*.tar.xz "$dir/MANIFEST"
  local work; work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN

  echo "gpu-bundle: downloading ${#DEBS[@]} packages (+${#PRUNED[@]} to prune)"
  (cd "$dir" && apt-get download -qq "${DEBS[@]}") || die "apt-get download failed"
  mkdir -p "$work/pruned-debs"
  (cd "$work/pruned-debs" && apt-get download -qq "${PRUNED[@]}") || die "apt-get download failed"
  mkdir -p "$work/slim-debs"
  (cd "$work/slim-debs" && apt-get download -qq "${SLIM[@]}") || die "apt-get download failed"

  {
    echo "# gpu-bundle manifest: made $(date -u +%FT%TZ) on $(. /etc/os-release; echo "$PRETTY_NAME")"
    echo "# package version (whole .deb unless pruned)"
    for f in "$dir"/*.deb; do
      echo "$(dpkg-deb -f "$f" Package) $(dpkg-deb -f "$f" Version)"
    done
    echo "# pruned"
  } > "$dir/MANIFEST"

  local deb name ver root note
  for deb in "$work"/pruned-debs/*.deb; do
    name=$(dpkg-deb -f "$deb" Package); ver=$(dpkg-deb -f "$deb" Version)
    root="$work/x-$name"; mkdir -p "$root"; dpkg-deb -x "$deb" "$root"
    case $name in
      libboost1.74-dev) note=$(prune_boost "$root" "$dir/$name.tar.xz") ;;
      libicu72)         note=$(prune_icu "$root" "$dir/$name.tar.xz") ;;
      libssl-dev)       note=$(prune_ssl_dev "$root" "$dir/$name.tar.xz") ;;
      zlib1g-dev)       note=$(prune_zlib_dev "$root" "$dir/$name.tar.xz") ;;
      dcmtk|libgdcm-tools) note=$(prune_tools "$root" "$dir/$name.tar.xz") ;;
      *) die "no pruning rule for $name" ;;
    esac
    echo "$name $ver pruned: $note" >> "$dir/MANIFEST"
  done

  # Check the runtime closure: unpack everything as the target would, then follow NEEDED from the
  # libraries the build links; every soname must be in the bundle or assumed on the target.
  local tree="$work/tree"; mkdir -p "$tree"
  for deb in "$dir"/*.deb "$work"/slim-debs/*.deb; do dpkg-deb -x "$deb" "$tree"; done
  for t in "$dir"/*.tar.xz; do tar -C "$tree" -xJf "$t"; done
  local libdirs=("$tree/usr/lib/$ARCH" "$tree/lib/$ARCH" "$tree/usr/lib")
  find_lib() { local d; for d in "${libdirs[@]}"; do [ -e "$d/$1" ] && { echo "$d/$1"; return 0; }; done; return 1; }
  local -A seen=(); local queue=("${ROOT_LIBS[@]}") missing=() so path n t
  for t in "${TOOLS[@]}"; do
    queue+=($(readelf -d "$tree/$t" | awk '/NEEDED/{gsub(/[][]/,"",$5); print $5}'))
  done
  while [ ${#queue[@]} -gt 0 ]; do
    so=${queue[0]}; queue=("${queue[@]:1}")
    [ -n "${seen[$so]:-}" ] && continue
    seen[$so]=1
    if [[ $so =~ $ASSUMED_ON_TARGET ]]; then continue; fi
    path=$(find_lib "$so") || { missing+=("$so"); continue; }
    for n in $(readelf -d "$path" | awk '/NEEDED/{gsub(/[][]/,"",$5); print $5}'); do
      [ -n "${seen[$n]:-}" ] || queue+=("$n")
    done
  done
  [ ${#missing[@]} -eq 0 ] || die "runtime closure incomplete, not in the bundle: ${missing[*]}"
  local closure=(); for so in "${!seen[@]}"; do [[ $so =~ $ASSUMED_ON_TARGET ]] || closure+=("$so"); done
  echo "# runtime closure of the linked libraries (${#closure[@]} sonames, all in the bundle):" >> "$dir/MANIFEST"
  printf '%s\n' "${closure[@]}" | sort | paste -sd' ' >> "$dir/MANIFEST"
  echo "# assumed on the target: $ASSUMED_ON_TARGET" >> "$dir/MANIFEST"
  # Which of them a libtorch-dev system (the chroot proof) has anyway, so the proof cannot miss them.
  local torchlibs=() also=()
  if [ -e /usr/lib/$ARCH/libtorch_cpu.so ]; then
    mapfile -t torchlibs < <(ldd /usr/lib/$ARCH/libtorch.so /usr/lib/$ARCH/libtorch_cpu.so 2>/dev/null | awk '{print $1}' | sort -u)
    local -A intorch=(); for so in "${torchlibs[@]}"; do intorch[$so]=1; done
    for so in "${closure[@]}"; do [ -z "${intorch[$so]:-}" ] || also+=("$so"); done
    echo "# also in a libtorch-dev system (carried all the same): $(printf '%s\n' "${also[@]}" | sort | paste -sd' ')" >> "$dir/MANIFEST"
  fi

  # Every DCMTK, ITK and GDCM library that the present build folder links must be in the closure.
  if [ -f "$here/build/build.ninja" ]; then
    local linked=() l
    mapfile -t linked < <(grep -oE '/usr/lib/[^ ]*lib(ITK|itk|dcm|ofstd|oflog|ijg|gdcm)[^ /]*\.so[.0-9]*' "$here/build/build.ninja" | xargs -rn1 basename | sort -u)
    for l in "${linked[@]}"; do
      so=$(readelf -d "$(find_lib "$l")" | awk '/SONAME/{gsub(/[][]/,"",$5); print $5}')
      [ -n "${seen[$so]:-}" ] || die "build/ links $l ($so), which is not among ROOT_LIBS' closure: add it to ROOT_LIBS"
    done
  fi

  local placeholders kept
  for deb in "$work"/slim-debs/*.deb; do
    name=$(dpkg-deb -f "$deb" Package); ver=$(dpkg-deb -f "$deb" Version)
    root="$work/s-$name"; mkdir -p "$root"; dpkg-deb -x "$deb" "$root"
    rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/lintian" \
           "$root/usr/lib/$ARCH/engines-3" "$root/usr/lib/$ARCH/ossl-modules"
    placeholders=0; kept=0
    while IFS= read -r f; do
      so=$(readelf -d "$f" 2>/dev/null | awk '/SONAME/{gsub(/[][]/,"",$5); print $5}')
      [ -n "$so" ] || continue
      if [ -n "${seen[$so]:-}" ]; then kept=$((kept + 1)); else : > "$f"; placeholders=$((placeholders + 1)); fi
    done < <(find "$root" -type f -name '*.so*')
    (cd "$root" && tar -cf - .) | xz -9e -T1 > "$dir/$name.tar.xz"
    note=""; [ "$name" != libssl3 ] || note=", no engines or providers"
    echo "$name $ver slimmed: $kept libraries kept, $placeholders unused ones left as empty files, no docs$note" >> "$dir/MANIFEST"
  done

  local total; total=$(du -cb "$dir"/*.deb "$dir"/*.tar.xz "$dir/MANIFEST" | tail -1 | cut -f1)
  echo "gpu-bundle: $dir: $(awk -v b="$total" 'BEGIN{printf "%.1f MiB", b/1048576}') ($total bytes) in $(ls "$dir" | wc -l) files; largest:"
  ls -S "$dir" | head -8 | while read -r f; do printf '  %7.2f MiB  %s\n' "$(awk -v b="$(stat -c %s "$dir/$f")" 'BEGIN{print b/1048576}')" "$f"; done
  [ "$total" -le $((30 * 1048576)) ] || die "bundle is over 30 MiB"
  grep '^# also' "$dir/MANIFEST" || true
}

# --- unpack -------------------------------------------------------------------------------------

cmd_unpack() {
  [ $# -ge 2 ] || die "usage: unpack DIR PREFIX [EXTRA_PREFIX...]"
  local dir=$1 prefix=$2; shift 2
  [ -f "$dir/MANIFEST" ] || die "$dir has no MANIFEST (run make first)"
  case $prefix in *' '*) die "PREFIX must not contain spaces" ;; esac
  for tool in dpkg-deb tar sed find readlink; do command -v $tool >/dev/null || die "$tool missing"; done
  # tar.xz parts: tar -J where xz is installed, else Python's tarfile (lzma is in its standard library).
  untar_xz() {
    if command -v xz >/dev/null; then tar -C "$2" -xJf "$1"
    else python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"; fi
  }
  mkdir -p "$prefix"; prefix=$(cd "$prefix" && pwd)
  [ "$prefix" != / ] || die "PREFIX must not be /"

  local f
  for f in "$dir"/*.deb; do dpkg-deb -x "$f" "$prefix"; done
  for f in "$dir"/*.tar.xz; do untar_xz "$f" "$prefix"; done

  # Bookworm still installs some libraries under /lib: fold them into usr/lib (one folder per kind).
  if [ -d "$prefix/lib" ] && [ ! -L "$prefix/lib" ]; then
    cp -a "$prefix/lib/." "$prefix/usr/lib/"
    rm -rf "$prefix/lib"
  fi

  # Multiarch headers (jconfig.h, tiffconf.h, openssl/configuration.h, expat_config.h): the
  # compiler looks in /usr/include/$ARCH by itself but not in PREFIX's, and the packages' CMake
  # files name PREFIX/usr/include only. Copy them beside the headers that include them.
  if [ -d "$prefix/usr/include/$ARCH" ]; then
    cp -a -n "$prefix/usr/include/$ARCH/." "$prefix/usr/include/"
  fi

  # Absolute symlinks (/usr/... or /lib/...) point into PREFIX.
  local link target
  while IFS= read -r link; do
    target=$(readlink "$link")
    case $target in
      /lib/*) target=/usr$target ;;
      "$prefix"/*) continue ;;
      /usr/*) ;;
      *) continue ;;
    esac
    ln -sfn "$prefix$target" "$link"
  done < <(find "$prefix" -type l -lname '/*')

  # libz.so for the link (DCMTK's and ITK's targets name it): the system's zlib.
  local libdir="$prefix/usr/lib/$ARCH" zlib=""
  for f in /usr/lib/$ARCH/libz.so.1 /lib/$ARCH/libz.so.1 /usr/lib64/libz.so.1; do
    [ -e "$f" ] && { zlib=$f; break; }
  done
  [ -n "$zlib" ] || zlib=$( (ldconfig -p 2>/dev/null || true) | awk '$1=="libz.so.1" && /x86-64/ {print $NF; exit}')
  [ -n "$zlib" ] || die "no libz.so.1 on this system"
  ln -sfn "$zlib" "$libdir/libz.so"

  # CMake and pkg-config files name /usr paths (libraries, include folders, their own folder):
  # rewrite them all to PREFIX/usr, consistently, so that the "/usr move" checks in the
  # generated *Targets.cmake still compare equal paths. /usr/bin (the compiler) stays.
  local files
  mapfile -t files < <(find "$prefix/usr/lib" "$prefix/usr/share" \( -name '*.cmake' -o -name '*.pc' \) -type f 2>/dev/null)
  if [ ${#files[@]} -gt 0 ]; then
    sed -i -E "s#(^|[\"'; =(])/usr/(lib|include|share)#\1$prefix/usr/\2#g; s#(^|[\"; ])/usr\"#\1$prefix/usr\"#g; s#^prefix=/usr\$#prefix=$prefix/usr#" "${files[@]}"
  fi
  # ITKConfig.cmake first loads every module ITK was built with, and two of them find_package()
  # HDF5 and MINC (libinsighttoolkit5-dev depends on their -dev packages; the modules the
  # project asks for use neither). With COMPONENTS, load only the requested modules.
  local itkconfig="$prefix/usr/lib/cmake/ITK-5.2/ITKConfig.cmake"
  grep -qx 'itk_module_config(ITK ${ITK_MODULES_ENABLED})' "$itkconfig" || die "ITKConfig.cmake: unexpected content"
  sed -i 's/^itk_module_config(ITK ${ITK_MODULES_ENABLED})$/if(NOT ITK_FIND_COMPONENTS) # gpu-bundle: the requested modules only\n  itk_module_config(ITK ${ITK_MODULES_ENABLED})\nendif()/' "$itkconfig"
  # Development links to libraries not carried (e.g. libtiffxx.so; nothing links them): removed.
  local dangling
  dangling=$(find "$prefix/usr/lib" -xtype l 2>/dev/null || true)
  if [ -n "$dangling" ]; then
    echo "gpu-bundle: removing links to libraries not carried: $(echo $dangling | xargs -rn1 basename | paste -sd' ')"
    echo "$dangling" | xargs -r rm -f
  fi

  local libs="$prefix/usr/lib/$ARCH:$prefix/usr/lib"
  local ppath="$prefix/usr" extra
  for extra in "$@"; do [ -n "$extra" ] && ppath="$ppath;$extra"; done
  # -L for the -l names the packages' targets use (DCMTK::config: -lnsl), which the linker
  # otherwise looks for in the system folders only.
  local ldflags="-Wl,--disable-new-dtags,-rpath,$libs,-rpath-link,$libs,--library-path=$prefix/usr/lib/$ARCH"
  cat > "$prefix/cmake-args" <<EOF
-DCMAKE_PREFIX_PATH=$ppath
-DDCMTK_DIR=$prefix/usr/lib/$ARCH/cmake/dcmtk
-DITK_DIR=$prefix/usr/lib/cmake/ITK-5.2
-DGDCM_DIR=$prefix/usr/lib/$ARCH/gdcm-3.0
-DBoost_DIR=$prefix/usr/lib/$ARCH/cmake/Boost-1.74.0
-Dnlohmann_json_DIR=$prefix/usr/share/cmake/nlohmann_json
-DGTest_DIR=$prefix/usr/lib/$ARCH/cmake/GTest
-DORTHANC_SDK_INCLUDE_DIR=$prefix/usr/include
-DOPENSSL_ROOT_DIR=$prefix/usr
-DZLIB_ROOT=$prefix/usr
-DCMAKE_EXE_LINKER_FLAGS=$ldflags
-DCMAKE_SHARED_LINKER_FLAGS=$ldflags
-DCMAKE_MODULE_LINKER_FLAGS=$ldflags
EOF
  cat > "$prefix/env.sh" <<EOF
# Source to run programs built against $prefix (their DT_RPATH already names these folders).
export LD_LIBRARY_PATH="$libs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
# The tools (dsrdump, dcmdump, gdcmconv) after the system's own commands.
export PATH="\$PATH:$prefix/usr/bin"
# Debian's DCMTK looks for its data dictionary under /usr/share/libdcmtk17 unless told.
export DCMDICTPATH="$prefix/usr/share/libdcmtk17/dicom.dic:$prefix/usr/share/libdcmtk17/private.dic"
export GDCM_RESOURCES_PATH="$prefix/usr/share/gdcm-3.0/XML"
EOF
  echo "gpu-bundle: unpacked $(ls "$dir"/*.deb | wc -l) packages and $(ls "$dir"/*.tar.xz | wc -l) parts into $prefix"
  echo "gpu-bundle: cmake options in $prefix/cmake-args, runtime environment in $prefix/env.sh"
}

case ${1:-} in
  make) shift; cmd_make "$@" ;;
  unpack) shift; cmd_unpack "$@" ;;
  *) sed -n '4,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
