// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/runtime.h"

#include <dlfcn.h>
#include <sched.h>
#include <torch/torch.h>

#include <thread>

namespace unibiomed::inference {

namespace {

// OpenBLAS's control functions, looked up at run time: a libtorch built with MKL (PyTorch
// wheels) has no OpenBLAS in the process, and then there is nothing to configure.
template <typename F>
F openblas_function(const char* name) {
  return reinterpret_cast<F>(::dlsym(RTLD_DEFAULT, name));
}

}  // namespace

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

int configure_cpu_threads(int threads) {
  const int n = threads > 0 ? threads : available_cores();
  auto set_blas = openblas_function<void (*)(int)>("openblas_set_num_threads");
  auto blas_parallel = openblas_function<int (*)()>("openblas_get_parallel");  // 0 serial, 1 pthreads, 2 OpenMP
  if (set_blas) set_blas(n);
  // With OpenBLAS's own pthread pool next to libtorch's OpenMP pool, every switch between a BLAS
  // call and an element-wise op finds the other pool's workers still spinning on the cores: a
  // 300-token prefill ran 5x slower (bench_llm). libtorch then keeps one thread and the BLAS,
  // where the time goes, gets them all.
  const bool separate_blas_pool = set_blas && blas_parallel && blas_parallel() == 1;
  torch::set_num_threads(separate_blas_pool && n > 1 ? 1 : n);
  return n;
}

std::string describe_cpu_runtime() {
  std::string out = "libtorch threads " + std::to_string(torch::get_num_threads());
  auto config = openblas_function<const char* (*)()>("openblas_get_config");
  auto get_threads = openblas_function<int (*)()>("openblas_get_num_threads");
  if (config && get_threads)
    out += ", " + std::string(config()) + ", OpenBLAS threads " + std::to_string(get_threads());
  else
    out += ", BLAS: not OpenBLAS (libtorch's own, e.g. MKL)";
  return out;
}

}  // namespace unibiomed::inference
