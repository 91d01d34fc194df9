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

#include <functional>
#include <string>

namespace unibiomed::inference {

// Gives the BLAS `threads` threads (0: the cores this process may run on) and libtorch's intra-op
// pool the same, or 1 when the BLAS is OpenBLAS with its own pthread pool (see above). Returns
// `threads` as resolved. Also installs the CPU tensor memory cache (below).
int configure_cpu_threads(int threads = 0);

// bfloat16 matrix products on the CPU do not go to the BLAS: libtorch sends them to oneDNN, which
// runs on libtorch's own (OpenMP) pool. With the float32 split above (libtorch 1 thread) they ran
// on one core: a 2048^2 bfloat16 product at 208 GFLOP/s against 414 on both cores of the AVX512-BF16
// machine we measure on, and the SAM2 image encoder took 11.7 s instead of 7.0 s. So a model that
// computes in bfloat16 on the CPU runs with libtorch's pool at the thread count
// configure_cpu_threads resolved (the BLAS, which bfloat16 work leaves idle, keeps its threads), and
// one that computes in float32 with the split above. Called at the entry of every GroundedModel
// call, and by the benches per dtype. libtorch's OpenMP thread count belongs to the calling thread
// (threads started later take the last value set), which is why it is set per call, not once. No
// effect before configure_cpu_threads has run; a no-op when the count is already right.
void use_cpu_threads_for(bool bfloat16_compute);

// The thread count configure_cpu_threads resolved (0 before it ran). The decoding matrix-vector
// products (cpu_matvec.h) use this many threads in both dtypes: they replace the BLAS while they
// run, so the float32 split above does not apply to them.
int configured_cpu_threads();

// How many threads at::parallel_for gives a loop compiled into this library (the model's own
// parallel loops) with libtorch's current thread count: at::parallel_for's OpenMP backend is a
// pragma in a header, so a library compiled without -fopenmp runs every such loop on one thread
// whatever the thread count says (decoding then ran at half the memory bandwidth). Counts the
// distinct threads that run the chunks of one small loop.
int library_parallel_for_threads();

// The cores this process may run on (sched_getaffinity), at least 1.
int available_cores();

// Many small independent matrix products (SAM2's windowed attention: a thousand 64 x 64 windows
// per block) run faster as one slice per core with a serial BLAS than all at once on the BLAS's
// own threads, whose wake-ups then cost more than the products: on a 2-core VM, 1024 windows x 2
// heads x 64 tokens ran at 13 GFLOP/s with 2 BLAS threads and 16 with 1 on one core.
//
// How many slices pay: the BLAS's threads when it is OpenBLAS with its own pthread pool and
// libtorch has one thread (configure_cpu_threads), else 1 (libtorch's own pool splits the work).
int small_product_parts();
// Runs work(0) .. work(parts - 1) on `parts` threads at once with the BLAS serial meanwhile (the
// threads restored when the last concurrent caller leaves), each under a NoGradGuard and in the
// caller's InferenceMode. parts <= 1:
// work(0) in this thread. An exception of a part is rethrown here after every part ended.
void run_parts_with_serial_blas(int parts, const std::function<void(int)>& work);

// One line for logs and benchmarks: libtorch threads, BLAS name, version and threads, and the
// tensor memory cache below.
std::string describe_cpu_runtime();

// Whether this CPU has bfloat16 dot-product instructions (x86 AVX512-BF16 or AMX-BF16, from
// /proc/cpuinfo): only there does bfloat16 compute pay on the CPU. false where unknown.
bool cpu_has_native_bfloat16();

// The CPU tensor memory cache. Writing a page of fresh memory costs the kernel a page fault:
// 8-14 us per 4 KiB page on the 2-core VMs we measure on (0.3-0.5 GB/s, against 8-24 GB/s to
// rewrite memory already mapped). glibc maps every block over 32 MiB afresh and unmaps it on
// free, so each large activation of the encoders (attention scores, MLP hidden states, stage
// outputs) paid that cost again on every layer. libtorch's CPU tensors are therefore allocated
// through a cache that keeps freed blocks of 1 MiB and more (sizes rounded up to 1/8 of their
// power of two) and hands them out again, up to `max_cached_bytes` of free blocks (beyond that
// the largest other blocks are released first). Memory in use is unaffected; what the cache
// holds is at most what a previous step had in use. Installed once per process by
// configure_cpu_threads with the limit of UNIBIOMED_CPU_TENSOR_CACHE_MB (default 2048; 0 turns
// the cache off). Thread-safe.
struct CpuTensorCacheStats {
  bool installed = false;
  size_t max_cached_bytes = 0;
  size_t cached_bytes = 0;  // free blocks held now
  size_t hits = 0, misses = 0;
};
// Installs the cache (once; later calls only change the limit). Returns false when libtorch kept
// another allocator (one registered with a higher priority).
bool install_cpu_tensor_cache(size_t max_cached_bytes);
// Frees every cached block (memory in use is unaffected).
void release_cpu_tensor_cache();
CpuTensorCacheStats cpu_tensor_cache_stats();

// Caches nothing while it lives (what was cached is freed), then restores the limit: for model
// loading, which converts every tensor once, so that its freed temporaries, each of another size,
// would only raise the peak.
class CpuTensorCachePause {
 public:
  CpuTensorCachePause();
  ~CpuTensorCachePause();
  CpuTensorCachePause(const CpuTensorCachePause&) = delete;
  CpuTensorCachePause& operator=(const CpuTensorCachePause&) = delete;

 private:
  size_t limit_ = 0;
  bool installed_ = false;
};

}  // namespace unibiomed::inference
