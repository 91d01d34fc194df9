#!/usr/bin/env bash
# The demo (`make demo`): a UniBiomed DICOM node, end to end, on this machine.
#   1. starts Orthanc with the UniBiomed plugin (config/orthanc-demo.json), on free ports, storing
#      into ./demo-output/orthanc, and a storescp standing in for the PACS (./demo-output/pacs);
#   2. writes the sample studies (`unibiomed samples write`) and sends them with storescu;
#   3. waits for the UniBiomedAnalysis jobs, prints each study's findings and where to see them;
#   4. stops everything cleanly (UNIBIOMED_DEMO_KEEP=1 keeps the node running until Ctrl-C).
# Usage: scripts/demo.sh [BUILD_DIR]
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail

BUILD_DIR=${1:-build}
# The model the demo runs: $UNIBIOMED_MODEL (e.g. the real weights), else a trained demo
# checkpoint in samples/demo-checkpoint when one is there, else a tiny fixture made on the fly
# (and the demo says which one ran).
MODEL_DIR=${UNIBIOMED_MODEL:-${UNIBIOMED_DEMO_MODEL:-samples/demo-checkpoint}}
OUT=${UNIBIOMED_DEMO_OUT:-demo-output}
CT_SLICES=${UNIBIOMED_DEMO_CT_SLICES:-24}   # the sample CT's length (the generator's default is 64)
CT_SIZE=${UNIBIOMED_DEMO_CT_SIZE:-256}      # and its rows = columns
TIMEOUT_S=${UNIBIOMED_DEMO_TIMEOUT:-1800}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)
BIN="$BUILD_DIR/cli/unibiomed"
PLUGIN="$BUILD_DIR/orthanc-plugin/libUniBiomedOrthanc.so"
for f in "$BIN" "$PLUGIN" /usr/sbin/Orthanc; do
  [ -e "$f" ] || { echo "demo: $f is missing (run 'make build' and scripts/install-deps.sh)" >&2; exit 1; }
done
for p in storescu storescp curl; do
  command -v "$p" >/dev/null || { echo "demo: $p is missing (scripts/install-deps.sh)" >&2; exit 1; }
done

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -rf "$OUT/orthanc" "$OUT/pacs" "$OUT/samples"
mkdir -p "$OUT/orthanc" "$OUT/pacs"

# --- the model ---------------------------------------------------------------
MODEL_NOTE=""
if [ -f "$MODEL_DIR/config.json" ]; then
  MODEL_DIR=$(cd "$MODEL_DIR" && pwd)
  if [ -n "${UNIBIOMED_MODEL:-}" ]; then
    MODEL_NOTE="model: $MODEL_DIR (from UNIBIOMED_MODEL)."
  else
    MODEL_NOTE="model: the project's demo checkpoint ($MODEL_DIR): small, trained by 'unibiomed model
      train' on synthetic phantoms (see its CARD.md), for demonstration only: its findings are
      not clinical results. Real weights: UNIBIOMED_MODEL=DIR make demo."
  fi
  echo "demo: $MODEL_NOTE"
else
  [ -n "${UNIBIOMED_MODEL:-}" ] && { echo "demo: UNIBIOMED_MODEL=$UNIBIOMED_MODEL has no config.json" >&2; exit 1; }
  MODEL_DIR="$OUT/model-tiny-fixture"
  if [ ! -f "$MODEL_DIR/config.json" ]; then
    "$BIN" model make-random --config tiny --answer "Sure, [SEG]." "$MODEL_DIR" >/dev/null
  fi
  MODEL_NOTE="NOTE: no model given (UNIBIOMED_MODEL) and no trained demo checkpoint (samples/demo-checkpoint),
      so this demo runs a TINY TEST FIXTURE ($MODEL_DIR): the real architecture and code with
      random weights, its language model rewired to answer \"Sure, [SEG].\" to every question.
      Everything around the model is real (DICOM in, jobs, SEG + SR stored, forwarded, DICOMweb),
      but the outlines and findings mean nothing. Real weights: UNIBIOMED_MODEL=DIR make demo."
  echo "demo: $MODEL_NOTE"
fi

# --- free ports (nothing answers on them) -----------------------------------
port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
  local p=$1
  while ! port_is_free "$p" || [[ " ${TAKEN:-} " == *" $p "* ]]; do p=$((p + 1)); done
  TAKEN="${TAKEN:-} $p"
  echo "$p"
}
HTTP_PORT=$(pick_port 8042); TAKEN=" $HTTP_PORT"
DICOM_PORT=$(pick_port 4242); TAKEN="$TAKEN $DICOM_PORT"
PACS_PORT=$(pick_port 11112)

# --- configuration: the documented file, with this run's ports ---------------
sed -e "s/\"HttpPort\": 8042/\"HttpPort\": $HTTP_PORT/" \
    -e "s/\"DicomPort\": 4242/\"DicomPort\": $DICOM_PORT/" \
    -e "s/\"DEMOPACS\", \"127.0.0.1\", 11112/\"DEMOPACS\", \"127.0.0.1\", $PACS_PORT/" \
    "$ROOT/config/orthanc-demo.json" > "$OUT/orthanc.json"
export UNIBIOMED_DEMO_STORAGE="$OUT/orthanc" UNIBIOMED_PLUGIN="$PLUGIN" UNIBIOMED_MODEL_DIR="$MODEL_DIR"

# --- start the PACS and the node; stop them by PID whatever happens ----------
ORTHANC_PID=""; PACS_PID=""
stop_all() {
  if [ -n "$ORTHANC_PID" ] && kill -0 "$ORTHANC_PID" 2>/dev/null; then
    echo "demo: stopping Orthanc (pid $ORTHANC_PID)"
    kill -TERM "$ORTHANC_PID"; wait "$ORTHANC_PID" 2>/dev/null || true
  fi
  if [ -n "$PACS_PID" ] && kill -0 "$PACS_PID" 2>/dev/null; then
    kill -TERM "$PACS_PID"; wait "$PACS_PID" 2>/dev/null || true
  fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

storescp -aet DEMOPACS -od "$OUT/pacs" "$PACS_PORT" > "$OUT/pacs.log" 2>&1 &
PACS_PID=$!
/usr/sbin/Orthanc "$OUT/orthanc.json" > "$OUT/orthanc.log" 2>&1 &
ORTHANC_PID=$!
API="http://127.0.0.1:$HTTP_PORT"
echo "demo: starting Orthanc with the UniBiomed plugin (log: $OUT/orthanc.log)"
for _ in $(seq 1 600); do
  curl -sf "$API/system" >/dev/null 2>&1 && break
  kill -0 "$ORTHANC_PID" 2>/dev/null || { echo "demo: Orthanc exited; see $OUT/orthanc.log" >&2; tail -20 "$OUT/orthanc.log" >&2; exit 1; }
  sleep 0.2
done
curl -sf "$API/system" >/dev/null || { echo "demo: Orthanc did not answer; see $OUT/orthanc.log" >&2; exit 1; }

# --- the sample studies ----------------------------------------------------
echo "demo: writing the sample studies into $OUT/samples"
"$BIN" samples write "$OUT/samples" --ct-slices "$CT_SLICES" --ct-size "$CT_SIZE"
mapfile -t FILES < <(find "$OUT/samples" -name '*.dcm' | sort)
echo "demo: sending ${#FILES[@]} files with storescu to UNIBIOMED@127.0.0.1:$DICOM_PORT"
storescu -R -aet DEMOSCU -aec UNIBIOMED 127.0.0.1 "$DICOM_PORT" "${FILES[@]}"

# --- wait until every study is analysed -------------------------------------
STUDIES=$(curl -sf "$API/studies" | tr -d '[]", ' | grep -v '^$' || true)
COUNT=$(echo "$STUDIES" | grep -c . || true)
echo "demo: $COUNT studies received; waiting for the UniBiomedAnalysis jobs (Orthanc Explorer: $API/app/explorer.html#jobs)"
START=$(date +%s)
# Progress: one line rewritten in place on a terminal; in a log, a line each time the count changes.
PROGRESS_TTY=0
if [ -t 1 ]; then PROGRESS_TTY=1; fi
reported=-1
while :; do
  finished=0
  for s in $STUDIES; do
    # Top-level keys of the pretty-printed answer are indented by exactly 3 spaces.
    answer=$(curl -sf "$API/unibiomed/studies/$s" || true)
    # grep reads the whole record (a study with many findings is larger than a pipe's buffer:
    # `echo | grep -m1` would end echo with SIGPIPE, fatal under pipefail).
    state=$(grep '^   "State"' <<< "$answer" | sed -n '1s/.*: "\(.*\)".*/\1/p' || true)
    queued=$(grep '^   "Queued"' <<< "$answer" | grep -c true || true)
    if { [ "$state" = done ] || [ "$state" = failed ]; } && [ "$queued" = 0 ]; then finished=$((finished + 1)); fi
  done
  if [ "$PROGRESS_TTY" = 1 ]; then
    printf '\rdemo: %d/%d studies finished' "$finished" "$COUNT"
  elif [ "$finished" != "$reported" ]; then
    echo "demo: $finished/$COUNT studies finished"
  fi
  reported=$finished
  [ "$finished" -ge "$COUNT" ] && break
  if [ $(( $(date +%s) - START )) -gt "$TIMEOUT_S" ]; then
    if [ "$PROGRESS_TTY" = 1 ]; then echo; fi
    echo "demo: gave up after ${TIMEOUT_S}s; the node's status:" >&2
    curl -s "$API/unibiomed/status" >&2; exit 1
  fi
  sleep 2
done
if [ "$PROGRESS_TTY" = 1 ]; then echo; fi

# --- the findings ------------------------------------------------------------
for s in $STUDIES; do
  curl -sf "$API/unibiomed/studies/$s" > "$OUT/study-$s.json"
done
echo
echo "=================================== findings ==================================="
if command -v python3 >/dev/null; then
  python3 - "$OUT" $STUDIES <<'PY'
import json, sys
out, studies = sys.argv[1], sys.argv[2:]
for sid in studies:
    s = json.load(open(f"{out}/study-{sid}.json"))
    series = ", ".join(f"{x['Modality'] or '?'} {x['State']}" + (f" ({x['Reason']})" if x['Reason'] else "")
                       for x in s["Series"])
    print(f"\nstudy {s['StudyInstanceUID']}  [{s['State']}, run {s['Run']}]  series: {series or '-'}")
    if s.get("Error"):
        print(f"  error: {s['Error']}")
    for f in s["Findings"]:
        # One decimal, but two significant digits below 1 (a 0.04 mm2 exudate is not "0.0 mm2").
        m = ", ".join(f"{x['Name']} " + (f"{x['Value']:.1f}" if abs(x['Value']) >= 1 else f"{x['Value']:.2g}")
                      + f" {x['Unit']}" for x in f["Measurements"])
        said = f['Text'] if f['Text'].rstrip('. ').lower() != f['Label'].lower() else ""  # "Liver." for Liver: once
        print(f"  - {f['Label']}" + (f": {said[:120]}" if said else "") + (f"  [{m}]" if m else ""))
    for a in s["Answers"]:
        print(f"  > {a[:160]}")
    for r in s["ResultSeries"]:
        print(f"  result series {r['Modality']}: {r['SeriesDescription']} ({r['Instances']} instance(s))")
    if s.get("Forward"):
        print(f"  forwarded to {s['Forward']['Modality']}: {s['Forward']['State']}")
PY
else
  cat "$OUT"/study-*.json
fi
echo
echo "=================================== where to look =============================="
echo "  Orthanc Explorer     $API/app/explorer.html   (jobs: $API/app/explorer.html#jobs)"
echo "  plugin status        $API/unibiomed/status"
echo "  one study            $API/unibiomed/studies/{StudyInstanceUID}"
echo "  results over QIDO    $API/dicom-web/studies/{StudyInstanceUID}/series?Modality=SEG"
echo "  results at the PACS  $OUT/pacs ($(find "$OUT/pacs" -type f | wc -l) files received by storescp)"
echo "  study summaries      $OUT/study-*.json"
echo "  Orthanc storage/log  $OUT/orthanc, $OUT/orthanc.log"
echo "  model                $MODEL_DIR"
[ -n "$MODEL_NOTE" ] && echo && echo "  $MODEL_NOTE"
if [ "${UNIBIOMED_DEMO_KEEP:-0}" = 1 ]; then
  echo; echo "demo: the node keeps running (UNIBIOMED_DEMO_KEEP=1); press Ctrl-C to stop it."
  wait "$ORTHANC_PID" || true
fi
