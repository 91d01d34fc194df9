// The parts of bench_common.h that need libtorch and inference/: the matmul probe and --dtypes.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <torch/torch.h>

#include <cstdio>
#include <stdexcept>

#include "bench/bench_common.h"
#include "inference/runtime.h"

namespace unibiomed::bench {

namespace {

torch::ScalarType scalar_type(const std::string& dtype) {
  if (dtype == "float32") return torch::kFloat32;
  if (dtype == "bfloat16") return torch::kBFloat16;
  throw std::invalid_argument("float32 or bfloat16 only");
}

}  // namespace

std::string MatmulProbe::describe() const {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s matmul %d^2: %.1f GFLOP/s (median of %d after %d warm-up)", dtype.c_str(), n,
                gflops, runs, warmup);
  return buf;
}

MatmulProbe matmul_probe(const std::string& dtype, int n, int warmup, int runs) {
  MatmulProbe r;
  r.dtype = dtype;
  r.n = n;
  r.warmup = warmup;
  r.runs = std::max(1, runs);
  torch::NoGradGuard no_grad;
  const auto options = torch::TensorOptions().dtype(scalar_type(dtype));
  const torch::Tensor a = torch::randn({n, n}, options), b = torch::randn({n, n}, options);
  r.median_seconds = median_seconds([&] { (void)torch::mm(a, b); }, warmup, r.runs);
  r.gflops = 2.0 * n * n * static_cast<double>(n) / r.median_seconds / 1e9;
  return r;
}

DtypeChoice choose_dtypes(const std::string& list) {
  DtypeChoice c;
  if (list == "auto") {
    c.dtypes.push_back("float32");
    if (inference::cpu_has_native_bfloat16())
      c.dtypes.push_back("bfloat16");
    else
      c.note =
          "bfloat16 left out: this CPU has no bfloat16 dot products (AVX512-BF16/AMX-BF16), libtorch's bfloat16 "
          "matmul is far slower than float32 here (--dtypes float32,bfloat16 runs it anyway)";
    return c;
  }
  for (const auto& d : split_list(list)) {
    scalar_type(d);  // throws for anything but float32 and bfloat16
    for (const auto& seen : c.dtypes)
      if (seen == d) throw std::invalid_argument(d + " twice");
    c.dtypes.push_back(d);
  }
  return c;
}

}  // namespace unibiomed::bench
