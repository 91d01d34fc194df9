// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/device.h"

#include <torch/cuda.h>
#include <torch/version.h>

#include <cstdio>

#ifdef UNIBIOMED_TORCH_CUDA
#include <ATen/cuda/CUDAContext.h>
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
    const cudaDeviceProp* p = at::cuda::getDeviceProperties(index_of(device));
    char buf[160];
    std::snprintf(buf, sizeof buf, " %s (%.1f GiB, compute %d.%d)", p->name,
                  static_cast<double>(p->totalGlobalMem) / (1024.0 * 1024.0 * 1024.0), p->major, p->minor);
    out += buf;
  }
#endif
  return out + ", libtorch " + libtorch_version();
}

}  // namespace unibiomed::inference
