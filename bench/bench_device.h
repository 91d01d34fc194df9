// The device a model benchmark runs on, so that a figure means the same thing on the CPU and on
// a CUDA GPU (issue 23):
//
//   - --device cpu|cuda|cuda:N (parse_device), and the dtypes it implies: on a GPU "auto" is
//     bfloat16, what the model runs in there by default;
//   - median_device_seconds: bench_common.h's median, but each timed call ends with
//     inference::synchronize(device), so that the clock is read after the GPU finished the work
//     queued by the call and not when it was merely queued (a no-op on the CPU);
//   - matmul_probe(device, ...): the throughput reference on the device itself, in the same
//     dtype, with a GEMM large enough to keep the device busy (2048^2 on the CPU as before, 8192^2
//     on a GPU), so that "efficiency" is achieved FLOP/s over what this device's GEMM reaches;
//   - read_bandwidth: what a decode step streaming weights is compared with: on the CPU the
//     std::thread probe of bench_common.h, on a GPU a reduction over a 1 GiB tensor;
//   - StagePeak: the peak memory of one stage (reset before it): the GPU's peak of allocated
//     tensor bytes (libtorch's caching allocator) on a GPU, the peak resident size (VmHWM) on the
//     CPU, with the field name each writes into a RESULT line (peak_gpu_mib, peak_rss_mib).
//
// Only inference/device.h is used for the GPU: no CUDA header here (the same source builds
// against a CPU-only libtorch, where --device cuda is refused as a usage error).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <c10/core/Device.h>

#include <functional>
#include <string>

#include "bench/bench_common.h"

namespace unibiomed::bench {

// "cpu", "cuda", "cuda:N" -> the device; "cuda" is cuda:0. Throws std::invalid_argument for
// anything else, and for a GPU when this libtorch has no CUDA or sees no such device.
c10::Device parse_device(const std::string& text);
// "cpu" or "cuda:N" (always with its index).
std::string device_name(const c10::Device& device);
inline constexpr const char* kDeviceHelp =
    "where the model runs: cpu, cuda or cuda:N (on cuda the dtype defaults to bfloat16 and every timing waits for "
    "the GPU to finish)";

// --dtypes on `device`: "auto" is choose_dtypes("auto") on the CPU, bfloat16 on a GPU; a list is
// taken as given (float32, bfloat16).
DtypeChoice choose_dtypes(const std::string& list, const c10::Device& device);
// The dtype a model loaded with `dtype` computes in on `device` ("auto" resolved as the model
// resolves it: bfloat16 on a GPU and on a CPU with bfloat16 dot products, else float32).
std::string resolved_dtype(const std::string& dtype, const c10::Device& device);

// Median of `runs` timed calls after `warmup` untimed ones, each call followed by
// inference::synchronize(device) inside the timed part; the device is synchronised once before
// the first timed call too (work queued earlier is not charged to it).
double median_device_seconds(const c10::Device& device, const std::function<void()>& fn, int warmup, int runs);

// The probe's GEMM side on `device`: kProbeMatmulSize on the CPU, 8192 on a GPU (1.1 TFLOP per
// product: about a millisecond on an H100, long enough to time, and large enough to fill it).
int probe_matmul_size(const c10::Device& device);
// matmul_probe of bench_common.h on `device` (operands made there, timing synchronised).
MatmulProbe matmul_probe(const c10::Device& device, const std::string& dtype, int warmup = 1, int runs = 5);

// Read bandwidth in GB/s: on the CPU memory_read_probe(threads) (threads as there); on a GPU the
// median time of torch::sum over a 1 GiB float32 tensor made on it (after a warm-up).
struct DeviceBandwidth {
  double gbps = 0;
  int threads = 0;               // CPU workers; 0 on a GPU
  std::string describe() const;  // "54.5 GB/s on 2 threads" or "3010.2 GB/s (torch::sum of 1 GiB on cuda:0)"
  std::string where;
};
DeviceBandwidth read_bandwidth(const c10::Device& device, int threads = 0);

// The peak memory of a stage: reset() before it, peak_mib() after it.
//   GPU: the most bytes in tensors since reset() (inference::device_memory().peak_allocated);
//   CPU: VmHWM since reset() (the whole process's peak where the kernel refuses the reset).
class StagePeak {
 public:
  explicit StagePeak(const c10::Device& device);
  void reset();
  double peak_mib() const;
  // Bytes in tensors now (GPU) or resident now (CPU), in MiB.
  double current_mib() const;
  bool gpu() const { return gpu_; }
  // The RESULT field: "peak_gpu_mib" or "peak_rss_mib".
  const char* field() const { return gpu_ ? "peak_gpu_mib" : "peak_rss_mib"; }
  // For prose: "peak GPU memory" or "peak resident memory".
  const char* label() const { return gpu_ ? "peak GPU memory" : "peak resident memory"; }
  // Whether reset() worked (always on a GPU; VmHWM reset allowed on the CPU).
  bool resets() const { return resets_; }

 private:
  c10::Device device_;
  bool gpu_ = false;
  bool resets_ = true;
};

}  // namespace unibiomed::bench
