// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/device.h"

#include <c10/util/Exception.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <cstdio>
#include <sstream>

#include "inference/error.h"

#ifdef UNIBIOMED_TORCH_CUDA
// Only c10_cuda and the CUDA runtime: ATen/cuda/CUDAContext.h would also want the headers of
// cuBLAS, cuSPARSE and cuSOLVER, which a machine with only the runtime may lack.
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace unibiomed::inference {

bool cuda_usable() {
  return torch::cuda::is_available() && torch::cuda::device_count() > 0;
}

namespace {
#ifdef UNIBIOMED_TORCH_CUDA
c10::DeviceIndex index_of(const c10::Device& device) {
  return device.has_index() ? device.index() : static_cast<c10::DeviceIndex>(0);
}
#endif
}  // namespace

void synchronize(const c10::Device& device) {
  if (!device.is_cuda()) return;
#ifdef UNIBIOMED_TORCH_CUDA
  const c10::cuda::CUDAGuard guard(index_of(device));
  torch::cuda::synchronize(index_of(device));
#endif
}

DeviceMemory device_memory(const c10::Device& device) {
  DeviceMemory m;
#ifdef UNIBIOMED_TORCH_CUDA
  if (!device.is_cuda() || !cuda_usable()) return m;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index_of(device));
  // Index 0 of every StatArray is the aggregate over the small and large pools (StatType
  // AGGREGATE, the same in every libtorch version).
  m.allocated = stats.allocated_bytes[0].current;
  m.peak_allocated = stats.allocated_bytes[0].peak;
  m.reserved = stats.reserved_bytes[0].current;
  const c10::cuda::CUDAGuard guard(index_of(device));
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
    m.free = static_cast<int64_t>(free_bytes);
    m.total = static_cast<int64_t>(total_bytes);
  }
  m.known = true;
#else
  (void)device;
#endif
  return m;
}

void reset_device_peak(const c10::Device& device) {
#ifdef UNIBIOMED_TORCH_CUDA
  if (device.is_cuda() && cuda_usable()) c10::cuda::CUDACachingAllocator::resetPeakStats(index_of(device));
#else
  (void)device;
#endif
}

void release_device_cache(const c10::Device& device) {
#ifdef UNIBIOMED_TORCH_CUDA
  if (device.is_cuda() && cuda_usable()) c10::cuda::CUDACachingAllocator::emptyCache();
#else
  (void)device;
#endif
}

std::string libtorch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

std::string describe_device(const c10::Device& device) {
  std::string out = device.str();
#ifdef UNIBIOMED_TORCH_CUDA
  if (device.is_cuda() && cuda_usable()) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, index_of(device)) == cudaSuccess) {
      char buf[320];
      std::snprintf(buf, sizeof buf, " %s (%.1f GiB, compute %d.%d)", p.name,
                    static_cast<double>(p.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0), p.major, p.minor);
      out += buf;
    }
  }
#endif
  return out + ", libtorch " + libtorch_version();
}

namespace {

std::string gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

// "2.00 GiB" out of "... Tried to allocate 2.00 GiB. GPU 0 has ...", or "".
std::string requested_size(const std::string& message) {
  const std::string key = "Tried to allocate ";
  const size_t at = message.find(key);
  if (at == std::string::npos) return "";
  std::istringstream words(message.substr(at + key.size()));
  std::string amount, unit;
  words >> amount >> unit;
  while (!unit.empty() && (unit.back() == '.' || unit.back() == ',' || unit.back() == ';' || unit.back() == ')'))
    unit.pop_back();
  return amount.empty() || unit.empty() ? std::string() : amount + " " + unit;
}

std::string first_line(const std::string& text) {
  const size_t end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

}  // namespace

std::string out_of_memory_message(const std::string& step, const c10::Device& device, const DeviceMemory& memory,
                                  const std::string& libtorch_message, bool loading) {
  std::string out = step + ": out of memory on " + device.str();
  std::string facts;
  const std::string asked = requested_size(libtorch_message);
  if (!asked.empty()) facts = asked + " more asked for";
  if (memory.known && memory.total > 0)
    facts += (facts.empty() ? "" : ", ") + gib(memory.free) + " free of " + gib(memory.total);
  if (!facts.empty()) out += " (" + facts + ")";
  if (loading)
    return out + ": the model does not fit there; use a device with more free memory, or the CPU "
                 "(--device cpu, \"Device\": \"cpu\")";
  return out + ": lower the batch size (\"BatchSize\" in the plugin's configuration, --batch-size of unibiomed "
               "analyze), ask fewer tasks at once, or run on the CPU (--device cpu, \"Device\": \"cpu\")";
}

void throw_inference_error(const std::string& step, const c10::Error& error, const c10::Device& device, bool loading) {
  const std::string message = first_line(error.what_without_backtrace());
  // The caching allocator throws c10::OutOfMemoryError; a CUDA call that failed to allocate
  // (cuBLAS or cuDNN workspaces, a kernel's launch) reports it in a plain c10::Error.
  const bool out_of_memory = dynamic_cast<const c10::OutOfMemoryError*>(&error) != nullptr ||
                             message.find("CUDA error: out of memory") != std::string::npos ||
                             message.find("STATUS_ALLOC_FAILED") != std::string::npos;
  if (out_of_memory) {
    // What the caching allocator keeps for reuse goes back first, so that the free memory
    // reported is what the next request will find.
    release_device_cache(device);
    throw DeviceOutOfMemory(out_of_memory_message(step, device, device_memory(device), message, loading), device.str());
  }
  throw InferenceError(step + ": libtorch: " + message);
}

void throw_inference_error(const std::string& step, const c10::Error& error, const std::string& device, bool loading) {
  c10::Device where(c10::kCPU);
  try {
    where = c10::Device(device);
  } catch (const c10::Error&) {
  }
  throw_inference_error(step, error, where, loading);
}

}  // namespace unibiomed::inference
