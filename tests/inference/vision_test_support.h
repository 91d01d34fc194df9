// Helpers of the vision tests: golden tensors as torch tensors, the tiny reference model, and
// a comparison that prints the maximum error next to the tolerance it is held to.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <iostream>
#include <memory>
#include <string>

#include "inference/model_config.h"
#include "inference/safetensors_file.h"
#include "inference/weights.h"
#include "tests/inference/device_test_support.h"
#include "tests/support/test_support.h"

namespace unibiomed::test {

// A golden .safetensors file; tensors come back as CPU tensors of their stored dtype.
class GoldenTorch {
 public:
  explicit GoldenTorch(const std::string& file)
      : weights_(inference::Checkpoint::open(reference_dir() / file), inference::ComputeOptions{}) {}
  torch::Tensor operator[](const std::string& name) { return weights_.get_raw(name, weights_.shape_of(name)); }

 private:
  inference::Weights weights_;
};

// |actual - expected| <= abs_tol everywhere; prints the max error and the tolerance.
inline ::testing::AssertionResult within_tolerance(const std::string& what, const torch::Tensor& actual,
                                                   const torch::Tensor& expected, double abs_tol) {
  auto a = actual.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  auto e = expected.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  if (a.sizes() != e.sizes())
    return ::testing::AssertionFailure() << what << ": shape " << a.sizes() << ", expected " << e.sizes();
  const double max_err = a.numel() ? (a - e).abs().max().item<double>() : 0.0;
  std::cout << "[ compare  ] " << what << ": max abs error " << max_err << " (tolerance " << abs_tol << ")\n";
  if (!(max_err <= abs_tol))
    return ::testing::AssertionFailure() << what << ": max abs error " << max_err << " exceeds " << abs_tol;
  return ::testing::AssertionSuccess();
}

// The tiny reference checkpoint in tests/reference, loaded in float32 on the test device
// (UNIBIOMED_TEST_DEVICE, device_test_support.h).
struct TinyModel {
  inference::ModelConfig config;
  std::unique_ptr<inference::Weights> weights;
  TinyModel()
      : config(inference::ModelConfig::load(reference_dir() / "config.json")),
        weights(std::make_unique<inference::Weights>(inference::Checkpoint::open(reference_dir()), test_compute())) {}
};

}  // namespace unibiomed::test
