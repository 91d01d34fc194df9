// The device the model tests run on. UNIBIOMED_TEST_DEVICE names it: "cpu" (the default),
// "cuda" or "cuda:N". The golden tests then build the model on that device in float32 and compare
// with the CPU tolerances (the comparisons read every tensor back to the CPU first), so that one
// `ctest -R test_inference_` on a GPU machine checks the CUDA kernels against the reference too.
//
// On a GPU, float32 convolutions would run in TF32 (cuDNN's default on Ampere and later: 10
// mantissa bits, about 5e-4 relative per product), which is not the float32 arithmetic the
// reference's 1e-4 tolerances describe; the tests turn TF32 off for cuDNN and cuBLAS (cuBLAS's
// default is off already) when the test device is CUDA.
//
// A device that was asked for but cannot be used is a failure of every test that needs it, with
// the reason, never a silent fall-back to the CPU: a GPU run that quietly tested the CPU would
// look like a pass.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <ATen/Context.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>

#include "inference/device.h"
#include "inference/weights.h"

namespace unibiomed::test {

struct TestDevice {
  std::string asked;                  // the variable's value ("cpu" when unset)
  torch::Device device = torch::kCPU;  // with an index for CUDA (cuda:0 for "cuda")
  std::string problem;                // empty when the device can be used
};

// The device is read as the model reads it (inference::ComputeOptions::from_strings: cpu or
// cuda, CUDA present, index within the cards); what it refuses becomes the problem.
inline TestDevice parse_test_device(const std::string& asked) {
  TestDevice d;
  d.asked = asked;
  try {
    d.device = inference::ComputeOptions::from_strings(asked, "float32").device;
  } catch (const std::exception& e) {
    d.problem = "UNIBIOMED_TEST_DEVICE=" + asked + ": " + e.what() + " (libtorch " + inference::libtorch_version() + ")";
    return d;
  }
  if (d.device.is_cuda() && !d.device.has_index()) d.device = torch::Device(torch::kCUDA, 0);
  return d;
}

// The choice of this process, read once; the first call prints which device the tests use.
inline const TestDevice& test_device_choice() {
  static const TestDevice d = [] {
    const char* v = std::getenv("UNIBIOMED_TEST_DEVICE");
    TestDevice r = parse_test_device(v && *v ? v : "cpu");
    if (r.problem.empty() && r.device.is_cuda()) {
      at::globalContext().setAllowTF32CuDNN(false);
      at::globalContext().setAllowTF32CuBLAS(false);
    }
    if (r.problem.empty())
      std::cout << "[ device   ] model tests on " << inference::describe_device(r.device) << " (UNIBIOMED_TEST_DEVICE="
                << r.asked << (r.device.is_cuda() ? ", TF32 off" : "") << ")\n";
    else
      std::cout << "[ device   ] " << r.problem << "\n";
    return r;
  }();
  return d;
}

// For ASSERT_TRUE in a fixture's SetUp (and before a suite builds its model): fails naming why.
inline ::testing::AssertionResult test_device_usable() {
  const TestDevice& d = test_device_choice();
  if (d.problem.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << d.problem;
}

// The device; throws (a test failure with the reason) when it cannot be used.
inline torch::Device test_device() {
  const TestDevice& d = test_device_choice();
  if (!d.problem.empty()) throw std::runtime_error(d.problem);
  return d.device;
}
// As LoadOptions::device takes it: "cpu" or "cuda:N".
inline std::string test_device_string() { return test_device().str(); }

// Compute options of the model under test: the test device, float32 unless asked otherwise.
inline inference::ComputeOptions test_compute(torch::ScalarType dtype = torch::kFloat32) {
  inference::ComputeOptions o;
  o.device = test_device();
  o.dtype = dtype;
  return o;
}

// A model input on the test device, dtype kept (golden tensors are read onto the CPU).
inline torch::Tensor on_test_device(const torch::Tensor& t) { return t.to(test_device()); }

}  // namespace unibiomed::test
