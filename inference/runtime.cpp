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
  torch::set_num_threads(n);
  if (auto set_blas = openblas_function<void (*)(int)>("openblas_set_num_threads")) set_blas(n);
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
