// What the programs need to know about the device the model runs on, the same calls for the CPU
// and a CUDA GPU, so that benchmarks and logs need no #ifdef:
//
//   - synchronize: CUDA kernels are queued, so a timer read right after a call measures only the
//     queuing; benchmarks wait for the device before reading the clock (a no-op on the CPU);
//   - device memory: what libtorch's caching allocator holds on a GPU now and at its peak since
//     the last reset, plus the card's free and total memory; on the CPU `known` is false (the
//     process's resident memory is the figure there, bench_common.h);
//   - describe_device: one line naming the card (or "cpu") and the libtorch version.
//
// The CUDA parts are compiled only where libtorch was built with CUDA (the CMake target
// c10_cuda exists: UNIBIOMED_TORCH_CUDA); a CPU-only libtorch gets the CPU answers.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace c10 {
class Error;
}

namespace unibiomed::inference {

// Whether this build's libtorch has CUDA and sees at least one device.
bool cuda_usable();

// Waits until the work queued on `device` has finished (no-op for the CPU).
void synchronize(const c10::Device& device);

struct DeviceMemory {
  bool known = false;          // false on the CPU and where libtorch has no CUDA
  int64_t allocated = 0;       // bytes in tensors now
  int64_t peak_allocated = 0;  // the most bytes in tensors since the last reset_device_peak
  int64_t reserved = 0;        // bytes the caching allocator holds (in tensors or cached)
  int64_t free = 0, total = 0; // the card's free and total memory (the driver's view)
};
DeviceMemory device_memory(const c10::Device& device);
// Starts a new peak (peak_allocated = allocated now).
void reset_device_peak(const c10::Device& device);
// Gives the cached, unused blocks back to the driver (no-op on the CPU).
void release_device_cache(const c10::Device& device);

// "cuda:0 NVIDIA H200 (139.8 GiB, compute 9.0), libtorch 2.11.0" or "cpu, libtorch 1.13.1".
std::string describe_device(const c10::Device& device);

// The libtorch version this program was built against, e.g. "1.13.1".
std::string libtorch_version();

// ---- Errors of the device ------------------------------------------------------------------
// One line for a step that ran out of memory on `device`: "<step>: out of memory on cuda:0
// (2.00 GiB more asked for, 1.2 GiB free of 79.1 GiB): <what to do>". `libtorch_message` is
// the allocator's message (its "Tried to allocate N" is kept); `memory` the device's figures
// (left out when not known); `loading`: the step loads the model (then the advice is a larger
// device or the CPU, not a smaller batch).
std::string out_of_memory_message(const std::string& step, const c10::Device& device, const DeviceMemory& memory,
                                  const std::string& libtorch_message, bool loading = false);

// Throws the InferenceError for a libtorch error met while `step` ran on `device`: for an
// out-of-memory error (c10::OutOfMemoryError) a DeviceOutOfMemory (error.h) with
// out_of_memory_message, after giving the allocator's cached blocks back; for any other the
// first line of libtorch's message, without its C++ backtrace.
[[noreturn]] void throw_inference_error(const std::string& step, const c10::Error& error, const c10::Device& device,
                                        bool loading = false);
// The same for a device given as text ("cpu", "cuda:1"), as options carry it; text that names no
// device (the error may be about it) is taken as the CPU.
[[noreturn]] void throw_inference_error(const std::string& step, const c10::Error& error, const std::string& device,
                                        bool loading = false);

}  // namespace unibiomed::inference
