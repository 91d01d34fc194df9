// The one error type that leaves inference/: says which file, tensor or setting is wrong.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace unibiomed::inference {

class InferenceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The device (a GPU, or the CPU's memory) could not hold what a step needed. what() is one line:
// the step, the device, its free and total memory where known, and what to change
// (device.h, out_of_memory_message). The allocator's cache has been released already, so the
// next, smaller request can run.
class DeviceOutOfMemory : public InferenceError {
 public:
  DeviceOutOfMemory(const std::string& message, std::string device)
      : InferenceError(message), device_(std::move(device)) {}
  const std::string& device() const { return device_; }  // "cuda:0", "cpu"

 private:
  std::string device_;
};

}  // namespace unibiomed::inference
