// CPU thread setup for libtorch and the BLAS under it, done once by each program (the CLI, the
// Orthanc plugin, benchmarks) before the model runs.
//
// Why: libtorch detects a single core on these machines unless told otherwise, and its matrix
// products go to OpenBLAS. Debian's OpenBLAS (openblas-pthread) keeps its own thread pool beside
// libtorch's OpenMP pool, and the two spin-wait against each other on a small machine: with both
// at 2 threads on 2 cores a 300-token Qwen2 prefill took 16.5 s, with libtorch at 1 thread 3.3 s
// (bench_llm, back to back, GEMM at 90 GFLOP/s in both). So when the BLAS has its own pthread pool it gets the
// threads and libtorch keeps one; with an OpenMP OpenBLAS or MKL (no separate pool) libtorch gets
// them. OPENBLAS_NUM_THREADS=1 instead would halve every large GEMM.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <string>

namespace unibiomed::inference {

// Gives the BLAS `threads` threads (0: the cores this process may run on) and libtorch's intra-op
// pool the same, or 1 when the BLAS is OpenBLAS with its own pthread pool (see above). Returns
// `threads` as resolved.
int configure_cpu_threads(int threads = 0);

// The cores this process may run on (sched_getaffinity), at least 1.
int available_cores();

// One line for logs and benchmarks: libtorch threads, BLAS name, version and threads.
std::string describe_cpu_runtime();

}  // namespace unibiomed::inference
