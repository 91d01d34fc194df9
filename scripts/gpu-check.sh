#!/usr/bin/env bash
# The whole product on a GPU machine, in one prepared run: build against the CUDA libtorch of the
# machine's PyTorch wheel, check the model against the reference numbers on the GPU (float32 with
# the CPU tolerances, bfloat16 against float32), then measure it (and the original Python code on
# the same GPU, same run) and write every figure to one file.
#
#   scripts/gpu-check.sh [--cpu] [--phase LIST] [--out DIR] [--jobs N] [--budget SECONDS]
#
#   --cpu           the same steps on this CPU machine with Debian's libtorch and packages and
#                   small sizes (a tiny checkpoint, few slices, one timed run): the script is
#                   debugged here before device time is spent
#   --bundle        with --cpu: take the Debian packages from .gpu/deps as on the GPU machine
#                   (unpacked into .gpu/prefix) instead of the system's, e.g. in a bare chroot
#   --phase LIST    comma list of: env, build, test, bench, ref (default env,build,test,bench,ref).
#                   On a lent GPU (15 minutes, at most 10 per command) run two commands back to
#                   back while the machine is warm: `--phase env,build,test`, then
#                   `--phase bench,ref` (the build folder and /tmp stay between them)
#   --out DIR       where the logs and figures go (default $OUT, else ./gpu-check-out)
#   --jobs N        build jobs (default: all cores)
#   --build-dir D   the build folder (default build-gpu, with --cpu build-gpucheck-cpu); with
#                   --cpu and an already built folder, `--phase test,bench,ref --build-dir build`
#                   checks the later phases without building again
#   --targets LIST  what the build phase builds (comma list of CMake targets, or "all"); default:
#                   the product (the CLI and the Orthanc plugin) and what this script runs (the
#                   model test binaries, the CLI tests, the benchmarks): the test binaries that
#                   need Orthanc, PostgreSQL, validators or Node stay for CI, which runs them
#   --budget S      stop starting new steps once S seconds have passed (default 570: a command
#                   on the device machine may run 600 s); every step also has its own timeout
#
# What travels to the GPU machine (no network, no apt there): the working tree, and `.gpu/`
# made here by `scripts/gpu-bundle.sh make` (the Debian packages the build needs, unpacked there
# into .gpu/prefix by `scripts/gpu-bundle.sh unpack`) and `.gpu/ref` made by
# `scripts/gpu-ref-prepare.sh` (the original UniBiomed code for the side-by-side timing). The
# device call is then, for example:
#   run(command="scripts/gpu-check.sh --phase env,build,test", carry=[".gpu/deps", ".gpu/ref"], timeout_s=590)
#   run(command="scripts/gpu-check.sh --phase bench,ref", carry=[".gpu/deps", ".gpu/ref"], timeout_s=590)
# (.gpu/prefix, where the packages are unpacked, stays behind: it is made there.)
#
# Files written to the output folder (at most 8, for the device tool's limit): summary.md (the
# figures, the checks, where each came from), figures.tsv (one RESULT line per figure),
# environment.txt, build.log, test.log, bench.log, ref.log.
#
# SPDX-License-Identifier: GPL-3.0-or-later
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cpu=0
bundle=0
phases="env,build,test,bench,ref"
out=${OUT:-$root/gpu-check-out}
jobs=$(nproc)
budget=570
build_dir=""
targets="unibiomed,UniBiomedOrthanc,test_inference_core,test_inference_llm,test_inference_vision"
targets+=",test_inference_grounding,test_inference_dtype,test_cli,bench_device_test,bench_grounded"
targets+=",bench_pipeline,bench_vision,bench_llm,bench_video,bench_agreement"

usage() { sed -n '2,/^# SPDX/p' "$0" | sed 's/^# \{0,1\}//' | sed '$d'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) cpu=1 ;;
    --bundle) bundle=1 ;;
    --phase) phases=${2:?--phase needs a list}; shift ;;
    --out) out=${2:?--out needs a folder}; shift ;;
    --jobs) jobs=${2:?--jobs needs a number}; shift ;;
    --build-dir) build_dir=${2:?--build-dir needs a folder}; shift ;;
    --budget) budget=${2:?--budget needs seconds}; shift ;;
    --targets) targets=${2:?--targets needs a list}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu-check.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
for p in ${phases//,/ }; do
  case "$p" in env|build|test|bench|ref) ;; *) echo "gpu-check.sh: unknown phase '$p'" >&2; exit 2 ;; esac
done

mkdir -p "$out"
out=$(cd "$out" && pwd)
start=$(date +%s)
summary="$out/summary.md"
figures="$out/figures.tsv"
touch "$summary" "$figures"

if [ $cpu -eq 1 ]; then
  device=cpu
  build="$root/build-gpucheck-cpu"
else
  device=cuda
  build="$root/build-gpu"
fi
[ -n "$build_dir" ] && build=$(mkdir -p "$build_dir" && cd "$build_dir" && pwd)
prefix="$root/.gpu/prefix"   # the unpacked Debian packages (GPU machine)
work=${GPU_CHECK_WORK:-/tmp/unibiomed-gpu-check}
mkdir -p "$work"

elapsed() { echo $(( $(date +%s) - start )); }
note() { echo "$*" | tee -a "$summary"; }
has_phase() { case ",$phases," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
# step NAME TIMEOUT LOG CMD... : runs CMD with a timeout unless the budget is spent; its output
# goes to LOG and its RESULT lines to figures.tsv; one line per step in summary.md.
step() {
  local name=$1 limit=$2 log=$3; shift 3
  local left=$(( budget - $(elapsed) ))
  if [ "$left" -le 10 ]; then
    note "- $name: NOT RUN (budget of ${budget}s spent)"
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$(date +%s)
  echo "=== $name ($(date -Is), limit ${limit}s): $*" >> "$log"
  timeout --kill-after=10 "$limit" "$@" > "$work/step.out" 2>&1
  local rc=$?
  cat "$work/step.out" >> "$log"
  grep -E '^RESULT ' "$work/step.out" | sed "s/^RESULT /step=$name /" >> "$figures"
  local took=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then
    note "- $name: ok (${took}s)"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    note "- $name: TIMED OUT after ${took}s (log: $(basename "$log"))"
  else
    note "- $name: FAILED rc=$rc after ${took}s (log: $(basename "$log")); last lines:"
    tail -n 15 "$work/step.out" | sed 's/^/      /' | tee -a "$summary"
  fi
  return $rc
}

echo "# gpu-check $(date -Is) on $(hostname), device $device, phases $phases" >> "$summary"

# ---------------------------------------------------------------- toolchain and libtorch
torch_prefix=""
# Python (the original code, the figures) runs with the library path it came with: env.sh's
# Debian libraries (OpenSSL, GnuTLS...) are for our programs, not for the machine's Python.
python_ld=${LD_LIBRARY_PATH:-}
if [ $cpu -eq 0 ]; then
  py=${PYTHON:-python3}
  torch_prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null) || {
    note "- no PyTorch in $py: cannot find the CUDA libtorch"; exit 1; }
  torch_lib=$("$py" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
  # The wheel's libraries and the unpacked Debian ones, for every program this script runs.
  export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
if { [ $cpu -eq 0 ] || [ $bundle -eq 1 ]; } && [ -f "$prefix/env.sh" ]; then
  # shellcheck disable=SC1091
  . "$prefix/env.sh"  # the unpacked packages' libraries and DCMTK's data dictionary
fi

if has_phase env; then
  {
    echo "date: $(date -Is)"; echo "host: $(hostname), $(nproc) cores, $(awk '/MemTotal/{print int($2/1048576) " GiB"}' /proc/meminfo)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
    # Issue 19's bfloat16 CPU figures need these (bench_* --device cpu --dtypes float32,bfloat16).
    echo "cpu bfloat16 dot products: $(grep -o -w -E 'avx512_bf16|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    echo "os: $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-?}"), glibc $(ldd --version 2>/dev/null | head -1 | awk '{print $NF}')"
    echo "compiler: $(c++ --version 2>/dev/null | head -1)"; echo "cmake: $(cmake --version | head -1)"; echo "ninja: $(ninja --version 2>/dev/null)"
    echo "git: $(git -C "$root" rev-parse --short HEAD 2>/dev/null) $(git -C "$root" status --short 2>/dev/null | wc -l) files changed"
    if [ $cpu -eq 0 ]; then
      nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
      LD_LIBRARY_PATH="$python_ld" "${PYTHON:-python3}" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))' 2>&1
      echo "libtorch cmake: $torch_prefix"
      nvcc --version 2>&1 | tail -1
    else
      echo "libtorch: Debian $(dpkg-query -W -f='${Version}' libtorch-dev 2>/dev/null)"
    fi
  } > "$out/environment.txt" 2>&1
  note "- env: $(grep -E '^(os|compiler|cpu bfloat16 dot products):' "$out/environment.txt" | tr '\n' ' ')"
fi

# ---------------------------------------------------------------- build
if has_phase build; then
  cmake_args=(-G Ninja -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DUNIBIOMED_WERROR=OFF)
  if [ $cpu -eq 0 ] || [ $bundle -eq 1 ]; then
    if [ ! -f "$prefix/cmake-args" ]; then
      if [ -d "$root/.gpu/deps" ]; then
        # The wheel's libtorch goes into cmake-args' CMAKE_PREFIX_PATH beside the packages'.
        step unpack 120 "$out/build.log" "$root/scripts/gpu-bundle.sh" unpack "$root/.gpu/deps" "$prefix" "$torch_prefix" || exit 1
      else
        note "- no .gpu/deps: make it here with scripts/gpu-bundle.sh make and carry .gpu/deps"; exit 1
      fi
      # shellcheck disable=SC1091
      . "$prefix/env.sh"
    fi
    mapfile -t extra < <(sed '/^$/d' "$prefix/cmake-args")  # one -D option per line
    cmake_args+=("${extra[@]}")
  fi
  step configure 180 "$out/build.log" cmake "${cmake_args[@]}" || {
    grep -n -m 20 -A3 "CMake Error" "$out/build.log" | tee -a "$summary"; exit 1; }
  # -k 0: every error of the first try is in the log, so one run shows all there is to fix.
  target_args=()
  [ "$targets" != all ] && target_args=(--target ${targets//,/ })
  step build "${GPU_CHECK_BUILD_LIMIT:-480}" "$out/build.log" cmake --build "$build" -j "$jobs" "${target_args[@]}" -- -k 0
  rc=$?
  if [ $rc -ne 0 ]; then
    note "- first compiler errors:"
    grep -n -m 30 -E "error:|undefined reference" "$out/build.log" | tee -a "$summary"
    exit 1
  fi
fi

cli="$build/cli/unibiomed"
[ -x "$cli" ] || { note "- no $cli: run the build phase first"; exit 1; }

# ---------------------------------------------------------------- tests on the device
if has_phase test; then
  # The golden checks (tests/reference, numbers of the original code) on the device in float32
  # with the CPU tolerances, and bfloat16 against float32 (derived tolerances); the torch-free
  # suites as a check of the build. Tests that need Orthanc, PostgreSQL, Java or Node are left
  # to CI (none of them runs model code that the device changes).
  # The cases that need Debian's Python modules (Pillow, regex, pydicom's test files for
  # /usr/bin/python3) or the tokenizer files of ../shared are left to CI: a GPU image has
  # neither. CommandLine.* (in test_inference_grounding) are CLI runs on the CPU.
  export UNIBIOMED_TEST_DEVICE=$device
  step golden 300 "$out/test.log" env GTEST_FILTER='-CommandLine.*' ctest --test-dir "$build" \
    --output-on-failure -j 2 -R '^test_inference_(llm|vision|grounding|dtype)$'
  # The same tests on exact variants of the reference set (tests/reference/README.md): the video
  # tests on its first 7 frames, and the tests that read the answer on the answer less its last
  # id, as CTest runs them on the CPU (test_inference_*_variant*), here on the device.
  tests="$build/tests/inference"
  step variants 240 "$out/test.log" sh -c "
    sh '$root/tests/inference/video_variant_test.sh' 7 '$root' '$tests/test_inference_grounding' &&
    sh '$root/tests/inference/answer_variant_test.sh' -1 '$root' \\
      '$tests/test_inference_llm' '*-CommandLine.*' '$tests/test_inference_vision' '*-CommandLine.*' \\
      '$tests/test_inference_dtype' '*-CommandLine.*' '$tests/test_inference_grounding' '*-Video*:CommandLine.*'
  "
  unset UNIBIOMED_TEST_DEVICE
  step unit 180 "$out/test.log" ctest --test-dir "$build" --output-on-failure -j "$jobs" \
    -R 'Safetensors|Tokenizer|Tiling|Resize|Prompt|AnswerParser|CheckpointLayout|CliProgram|bench_device_test' \
    -E 'RealTokenizer|Pillow|PythonRegex|AskChecksTheImageFirst'
  # End to end through the CLI on the device: a grounded answer with a mask (tiny random
  # checkpoint rewired to answer "Sure, [SEG].") and a CT series through the Analyzer with the
  # demo checkpoint.
  rm -rf "$work/tiny" "$work/samples" "$work/analysis"
  step cli-ask 120 "$out/test.log" bash -c "
    set -e
    '$cli' model make-random --config tiny --seed 3 --answer 'Sure, [SEG].' '$work/tiny'
    '$cli' samples write '$work/samples' --only ct --ct-slices 8
    img=\$(find '$work/samples/ct' -name '*.dcm' | sort | head -1)
    '$cli' ask --model '$work/tiny' --device $device --mask-out '$work/masks' \"\$img\" 'Please segment the liver in this CT.'
    ls '$work/masks'
  "
  step cli-analyze 180 "$out/test.log" bash -c "
    set -e
    '$cli' analyze '$work/samples/ct' -o '$work/analysis' --model '$root/samples/demo-checkpoint' --device $device --seed gpu-check
    find '$work/analysis' -name '*.dcm' | wc -l
    cat '$work/analysis/summary.json' | head -c 2000
  "
fi

# ---------------------------------------------------------------- benchmarks
if has_phase bench; then
  model="$work/real-model"
  if [ $cpu -eq 1 ]; then
    model="$work/tiny-bench-model"
    [ -f "$model/config.json" ] || "$cli" model make-random --config tiny --seed 1 --answer "Sure, [SEG]." "$model" >> "$out/bench.log" 2>&1
  elif [ ! -f "$model/config.json" ]; then
    step make-real 240 "$out/bench.log" "$cli" model make-random --config real --seed 1 --answer "Sure, [SEG]." "$model"
  fi
  b="$build/bench"
  # In the order of what the issue asks most: the 2D answer's latency, the 300-slice CT, then
  # the stages' throughput, video propagation and the bf16 agreement (GPU bf16 vs CPU float32).
  if [ $cpu -eq 1 ]; then
    step bench-grounded 300 "$out/bench.log" "$b/bench_grounded" --config tiny --runs 1 --sam2-batch 1,2
    step bench-pipeline 300 "$out/bench.log" "$b/bench_pipeline" --config tiny --slices 4
    step bench-vision 300 "$out/bench.log" "$b/bench_vision" --layers 1 --slices 2 --runs 1 --image-runs 1 --batch 1,2
    step bench-llm 300 "$out/bench.log" "$b/bench_llm" --layers 2 --prefill 64 --decode-context 32 \
      --decode-tokens 4 --runs 1 --batch 1,2 --prefill-batch 1,2 --no-thread-study
    step bench-video 300 "$out/bench.log" "$b/bench_video" --config tiny --frames 6
    step bench-agreement 300 "$out/bench.log" "$b/bench_agreement" --config tiny
  else
    step bench-grounded 120 "$out/bench.log" "$b/bench_grounded" --device cuda --model "$model" --sam2-batch 1,8 \
      --runs 5 --answer-runs 10
    step bench-pipeline 240 "$out/bench.log" "$b/bench_pipeline" --device cuda --model "$model" --slices 300
    step bench-vision 90 "$out/bench.log" "$b/bench_vision" --device cuda --batch 1,8,32 --runs 5 --image-runs 5 --slices 32
    step bench-llm 120 "$out/bench.log" "$b/bench_llm" --device cuda --prefill 300,2600 --prefill-batch 1,8 --batch 1,8 \
      --runs 5 --decode-tokens 32
    step bench-video 120 "$out/bench.log" "$b/bench_video" --device cuda --model "$model" --frames 64
    step bench-agreement 150 "$out/bench.log" "$b/bench_agreement" --device cuda --model "$model"
  fi
fi

# ---------------------------------------------------------------- the original code, same device
if has_phase ref; then
  refpy="$root/.gpu/ref/py"
  if [ ! -d "$refpy/unibiomed_hf" ]; then
    note "- ref: NOT RUN: no $refpy (make it here with scripts/gpu-ref-prepare.sh and carry .gpu)"
  else
    if [ $cpu -eq 1 ]; then
      refpython=${REF_PYTHON:-/usr/bin/python3}
      common=(--device cpu --dtype float32 --warmup 0 --reps 1 --threads "$(nproc)")
      vit=(--batch 1); llm=(--batch 1 --prefill 16 --decode-tokens 3); sam=(--batch 1)
    else
      refpython=${PYTHON:-python3}
      common=(--device cuda --dtype bfloat16)
      vit=(--batch 1,8,32); llm=(--batch 1,8); sam=(--batch 1,8)
    fi
    for stage in vit llm sam2; do
      case $stage in vit) extra=("${vit[@]}") ;; llm) extra=("${llm[@]}") ;; sam2) extra=("${sam[@]}") ;; esac
      step "ref-$stage" 200 "$out/ref.log" env LD_LIBRARY_PATH="$python_ld" PYTHONPATH="$refpy" PYTHONUNBUFFERED=1 \
        "$refpython" "$root/bench/ref/ref_gpu.py" "$stage" "${common[@]}" "${extra[@]}"
    done
  fi
fi

if [ -s "$figures" ]; then
  {
    echo
    echo "## Figures ($device)"
    echo
    LD_LIBRARY_PATH="$python_ld" "${PYTHON:-python3}" "$root/scripts/gpu-figures.py" "$figures"
  } >> "$summary"
fi
note "- total $(elapsed)s"
cat "$summary"
