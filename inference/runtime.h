// CPU thread setup for libtorch and the BLAS under it, done once by each program (the CLI, the
// Orthanc plugin, benchmarks) before the model runs.
//
// Why: libtorch detects a single core on these machines unless told otherwise, and its matrix
// products go to OpenBLAS, which keeps its own thread pool. Both pools are set to the same
// number: OpenBLAS is called from one libtorch thread at a time (linear, mm, mv), so the two do
// not multiply; with OpenBLAS at one thread a single large GEMM runs at about half speed.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <string>

namespace unibiomed::inference {

// Sets libtorch's intra-op threads and OpenBLAS's threads (when the BLAS in the process is
// OpenBLAS) to `threads`; 0 means the cores this process may run on. Returns the number set.
int configure_cpu_threads(int threads = 0);

// The cores this process may run on (sched_getaffinity), at least 1.
int available_cores();

// One line for logs and benchmarks: libtorch threads, BLAS name, version and threads.
std::string describe_cpu_runtime();

}  // namespace unibiomed::inference
