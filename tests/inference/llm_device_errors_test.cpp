// A libtorch error met by the model becomes the one error type that leaves inference/: an
// allocator's out-of-memory error a DeviceOutOfMemory whose single line names the step, the
// device, its free and total memory and what to change; any other error its first line.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "inference/device.h"
#include "inference/error.h"

namespace unibiomed::inference {
namespace {

// What libtorch's CUDA caching allocator says (its first sentence and size, as in 2.x).
const char* const kCudaMessage =
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB of which 1.20 GiB "
    "is free. Of the allocated memory 70.50 GiB is allocated by PyTorch.";

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(DeviceErrors, OutOfMemoryMessageNamesStepDeviceMemoryAndRemedy) {
  DeviceMemory m;
  m.known = true;
  m.free = int64_t{3} << 29;    // 1.5 GiB
  m.total = int64_t{80} << 30;  // 80 GiB
  const std::string line = out_of_memory_message("answering", c10::Device("cuda:1"), m, kCudaMessage);
  EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  EXPECT_EQ(line.rfind("answering: out of memory on cuda:1 (2.00 GiB more asked for, 1.5 GiB free of 80.0 GiB): ", 0),
            0u)
      << line;
  EXPECT_TRUE(contains(line, "\"BatchSize\"")) << line;
  EXPECT_TRUE(contains(line, "--batch-size")) << line;
  EXPECT_TRUE(contains(line, "fewer tasks")) << line;
  EXPECT_TRUE(contains(line, "--device cpu")) << line;

  // Memory not known (the CPU), no size in the allocator's message: neither is made up.
  const std::string cpu = out_of_memory_message("encoding images", c10::Device("cpu"), DeviceMemory{}, "no memory");
  EXPECT_EQ(cpu.rfind("encoding images: out of memory on cpu: ", 0), 0u) << cpu;
  EXPECT_FALSE(contains(cpu, "GiB")) << cpu;

  // Loading: a smaller batch would not help.
  const std::string load = out_of_memory_message("loading the model", c10::Device("cuda"), m, kCudaMessage, true);
  EXPECT_TRUE(contains(load, "does not fit")) << load;
  EXPECT_FALSE(contains(load, "BatchSize")) << load;
}

TEST(DeviceErrors, LibtorchOutOfMemoryBecomesDeviceOutOfMemory) {
  try {
    TORCH_CHECK_WITH(OutOfMemoryError, false, kCudaMessage);
    FAIL() << "TORCH_CHECK_WITH did not throw";
  } catch (const c10::Error& e) {
    try {
      throw_inference_error("encoding images for SAM2", e, c10::Device("cpu"));
    } catch (const DeviceOutOfMemory& oom) {
      const std::string line = oom.what();
      EXPECT_EQ(oom.device(), "cpu");
      EXPECT_EQ(line.rfind("encoding images for SAM2: out of memory on cpu (2.00 GiB more asked for): ", 0), 0u)
          << line;
      EXPECT_EQ(line.find('\n'), std::string::npos) << line;
    } catch (const std::exception& other) {
      FAIL() << "not a DeviceOutOfMemory: " << other.what();
    }
  }
}

TEST(DeviceErrors, CudaCallsThatCouldNotAllocateAreOutOfMemoryToo) {
  for (const char* said : {"CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported",
                           "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"}) {
    try {
      TORCH_CHECK(false, said);
      FAIL() << "TORCH_CHECK did not throw";
    } catch (const c10::Error& e) {
      try {
        throw_inference_error("answering", e, c10::Device("cpu"));
      } catch (const DeviceOutOfMemory& oom) {
        EXPECT_EQ(std::string(oom.what()).rfind("answering: out of memory on cpu: ", 0), 0u) << oom.what();
      } catch (const std::exception& other) {
        FAIL() << "not a DeviceOutOfMemory: " << other.what();
      }
    }
  }
}

TEST(DeviceErrors, OtherLibtorchErrorsKeepTheirFirstLine) {
  try {
    (void)torch::ones({2, 3}).matmul(torch::ones({4, 5}));
    FAIL() << "the shapes were accepted";
  } catch (const c10::Error& e) {
    try {
      throw_inference_error("answering", e, c10::Device("cpu"));
    } catch (const DeviceOutOfMemory& oom) {
      FAIL() << "a shape error was called out of memory: " << oom.what();
    } catch (const InferenceError& error) {
      const std::string line = error.what();
      EXPECT_EQ(line.rfind("answering: libtorch: ", 0), 0u) << line;
      EXPECT_EQ(line.find('\n'), std::string::npos) << line;
      EXPECT_GT(line.size(), std::string("answering: libtorch: ").size()) << line;
    }
  }
}

}  // namespace
}  // namespace unibiomed::inference
