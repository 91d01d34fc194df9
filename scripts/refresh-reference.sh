#!/usr/bin/env bash
# The reference numbers in tests/reference (tests/reference/README.md) are a copy of an upstream
# reference set made by running the original UniBiomed code. This script keeps the copy honest.
#
#   scripts/refresh-reference.sh [DIR]          copy the set from DIR (default ../shared/golden
#                                                beside the checkout) and print what changed
#   scripts/refresh-reference.sh --check [DIR]  exit 1 if tests/reference differs from DIR,
#                                                77 if DIR does not exist (CTest: skipped)
#   scripts/refresh-reference.sh --check-manifest
#                                                exit 1 unless every file matches the sha256
#                                                and size that tests/reference/manifest.json lists
#
# Not copied: README.md (upstream's own notes; ours is tests/reference/README.md) and every
# folder, in particular qwen2-tokenizer/ (the Qwen2.5 tokenizer is not ours to redistribute;
# the tests find it through UNIBIOMED_QWEN2_TOKENIZER).
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REF="$ROOT/tests/reference"
mode=copy
case "${1:-}" in
  --check) mode=check; shift ;;
  --check-manifest) mode=manifest; shift ;;
  -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
SRC=${1:-"$ROOT/../shared/golden"}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# The upstream files we carry: regular files at the top of DIR, except README.md.
upstream_files() {
  find "$1" -maxdepth 1 -type f ! -name README.md -printf '%f\n' | LC_ALL=C sort
}
# Ours: the same, in tests/reference.
our_files() {
  find "$REF" -maxdepth 1 -type f ! -name README.md -printf '%f\n' | LC_ALL=C sort
}

if [ "$mode" = manifest ]; then
  [ -f "$REF/manifest.json" ] || { echo "refresh-reference: $REF/manifest.json is missing" >&2; exit 1; }
  /usr/bin/python3 - "$REF" <<'PY'
import hashlib, json, os, sys
ref = sys.argv[1]
listed = json.load(open(os.path.join(ref, "manifest.json")))["files"]
bad = 0
for name, entry in sorted(listed.items()):
    path = os.path.join(ref, name)
    if not os.path.isfile(path):
        print(f"missing: {name}"); bad += 1; continue
    data = open(path, "rb").read()
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        print(f"differs from manifest.json: {name}"); bad += 1
extra = sorted(set(os.listdir(ref)) - set(listed) - {"manifest.json", "README.md"})
for name in extra:
    print(f"not listed in manifest.json: {name}"); bad += 1
print(f"tests/reference: {len(listed) - bad if bad <= len(listed) else 0} of {len(listed)} files as manifest.json lists them"
      + ("" if not bad else f", {bad} problem(s)"))
sys.exit(1 if bad else 0)
PY
  exit $?
fi

if [ ! -d "$SRC" ]; then
  echo "refresh-reference: no upstream reference set at $SRC"
  [ "$mode" = check ] && exit 77
  exit 2
fi
SRC=$(cd "$SRC" && pwd)
[ -f "$SRC/manifest.json" ] || { echo "refresh-reference: $SRC has no manifest.json: not a reference set" >&2; exit 2; }

same=0; changed=(); added=(); gone=()
while IFS= read -r f; do
  if [ ! -f "$REF/$f" ]; then added+=("$f")
  elif [ "$(sha "$SRC/$f")" != "$(sha "$REF/$f")" ]; then changed+=("$f")
  else same=$((same + 1)); fi
done < <(upstream_files "$SRC")
while IFS= read -r f; do
  [ -f "$SRC/$f" ] || gone+=("$f")
done < <(our_files)

report() {
  local verb=$1
  for f in "${changed[@]+"${changed[@]}"}"; do echo "  $verb: $f (changed upstream)"; done
  for f in "${added[@]+"${added[@]}"}"; do echo "  $verb: $f (new upstream)"; done
  for f in "${gone[@]+"${gone[@]}"}"; do echo "  only in tests/reference (no longer upstream): $f"; done
  echo "refresh-reference: $same unchanged, ${#changed[@]} changed, ${#added[@]} new, ${#gone[@]} only here ($SRC)"
}

if [ "$mode" = check ]; then
  report "differs"
  if [ ${#changed[@]} -gt 0 ] || [ ${#added[@]} -gt 0 ] || [ ${#gone[@]} -gt 0 ]; then
    echo "tests/reference is out of date: run scripts/refresh-reference.sh $SRC, then re-run the model tests" \
         "and update tests/reference/README.md"
    exit 1
  fi
  exit 0
fi

mkdir -p "$REF"
for f in "${changed[@]+"${changed[@]}"}" "${added[@]+"${added[@]}"}"; do
  cp "$SRC/$f" "$REF/$f"
  chmod 644 "$REF/$f"
done
report "copied"
if [ ${#gone[@]} -gt 0 ]; then
  echo "Files only in tests/reference were left in place; remove them with git rm if upstream dropped them."
fi
if [ ${#changed[@]} -gt 0 ] || [ ${#added[@]} -gt 0 ]; then
  echo "Next: compare manifest.json's provenance and tolerances with tests/reference/README.md, run the model"
  echo "tests (ctest -R 'test_inference|reference'), and commit tests/reference together with any test changes."
fi
