// The parts of bench_common.h that need libtorch and inference/ (the matmul probe and --dtypes),
// and bench_device.h.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <torch/torch.h>

#include <torch/cuda.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "bench/bench_common.h"
#include "bench/bench_device.h"
#include "inference/device.h"
#include "inference/error.h"
#include "inference/runtime.h"
#include "inference/weights.h"

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
  const std::string where = device == "cpu" || device.empty() ? "" : " on " + device;
  std::snprintf(buf, sizeof buf, "%s matmul %d^2%s: %.1f GFLOP/s (median of %d after %d warm-up)", dtype.c_str(), n,
                where.c_str(), gflops, runs, warmup);
  return buf;
}

namespace {

MatmulProbe run_matmul_probe(const c10::Device& device, const std::string& dtype, int n, int warmup, int runs) {
  MatmulProbe r;
  r.dtype = dtype;
  r.device = device_name(device);
  r.n = n;
  r.warmup = warmup;
  r.runs = std::max(1, runs);
  torch::NoGradGuard no_grad;
  const auto options = torch::TensorOptions().dtype(scalar_type(dtype)).device(device);
  const torch::Tensor a = torch::randn({n, n}, options), b = torch::randn({n, n}, options);
  r.median_seconds = median_device_seconds(device, [&] { (void)torch::mm(a, b); }, warmup, r.runs);
  r.gflops = 2.0 * n * n * static_cast<double>(n) / r.median_seconds / 1e9;
  return r;
}

}  // namespace

MatmulProbe matmul_probe(const std::string& dtype, int n, int warmup, int runs) {
  return run_matmul_probe(c10::Device(c10::kCPU), dtype, n, warmup, runs);
}

MatmulProbe matmul_probe(const c10::Device& device, const std::string& dtype, int warmup, int runs) {
  return run_matmul_probe(device, dtype, probe_matmul_size(device), warmup, runs);
}

// ---- bench_device.h ----

c10::Device parse_device(const std::string& text) {
  // The model's own reading of a device (the CLI's and the plugin's): a name it refuses, or a
  // GPU this libtorch cannot see, is a usage error of the bench before any work starts.
  c10::Device device(c10::kCPU);
  try {
    device = inference::ComputeOptions::from_strings(text, "float32").device;
  } catch (const inference::InferenceError& e) {
    throw std::invalid_argument(e.what());
  }
  if (device.is_cpu()) return device;
  return c10::Device(c10::kCUDA, device.has_index() ? device.index() : static_cast<c10::DeviceIndex>(0));
}

std::string device_name(const c10::Device& device) {
  if (device.is_cpu()) return "cpu";
  return std::string(device.is_cuda() ? "cuda" : c10::DeviceTypeName(device.type(), /*lower_case=*/true)) + ":" +
         std::to_string(device.has_index() ? static_cast<int>(device.index()) : 0);
}

DtypeChoice choose_dtypes(const std::string& list, const c10::Device& device) {
  if (list == "auto" && !device.is_cpu()) return DtypeChoice{{"bfloat16"}, ""};
  return choose_dtypes(list);
}

std::string resolved_dtype(const std::string& dtype, const c10::Device& device) {
  if (dtype != "auto") return dtype;
  return inference::ComputeOptions::auto_dtype(device) == torch::kBFloat16 ? "bfloat16" : "float32";
}

double median_device_seconds(const c10::Device& device, const std::function<void()>& fn, int warmup, int runs) {
  for (int i = 0; i < warmup; ++i) fn();
  inference::synchronize(device);
  return median_seconds(
      [&] {
        fn();
        inference::synchronize(device);
      },
      0, runs);
}

int probe_matmul_size(const c10::Device& device) {
  return device.is_cpu() ? kProbeMatmulSize : 8192;
}

std::string DeviceBandwidth::describe() const {
  char buf[160];
  if (threads > 0)
    std::snprintf(buf, sizeof buf, "%.1f GB/s on %d threads", gbps, threads);
  else
    std::snprintf(buf, sizeof buf, "%.1f GB/s (%s)", gbps, where.c_str());
  return buf;
}

DeviceBandwidth read_bandwidth(const c10::Device& device, int threads) {
  DeviceBandwidth r;
  if (device.is_cpu()) {
    const BandwidthProbe p = memory_read_probe(threads);
    r.gbps = p.gbps;
    r.threads = p.threads;
    r.where = "std::thread workers";
    return r;
  }
  torch::NoGradGuard no_grad;
  const int64_t elements = (int64_t{1} << 30) / 4;
  const torch::Tensor x = torch::ones({elements}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  const double s = median_device_seconds(device, [&] { (void)x.sum(); }, 2, 7);
  r.gbps = static_cast<double>(elements) * 4 / s / 1e9;
  r.where = "torch::sum of 1 GiB on " + device_name(device);
  return r;
}

StagePeak::StagePeak(const c10::Device& device) : device_(device), gpu_(!device.is_cpu()) {}

void StagePeak::reset() {
  if (gpu_) {
    inference::synchronize(device_);
    inference::reset_device_peak(device_);
  } else {
    resets_ = reset_peak_memory();
  }
}

double StagePeak::peak_mib() const {
  if (!gpu_) return status_mib("VmHWM:");
  inference::synchronize(device_);
  return static_cast<double>(inference::device_memory(device_).peak_allocated) / 1048576.0;
}

double StagePeak::current_mib() const {
  if (!gpu_) return status_mib("VmRSS:");
  return static_cast<double>(inference::device_memory(device_).allocated) / 1048576.0;
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
