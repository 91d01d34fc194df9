// Helpers of the grounding tests: golden tensors as torch tensors, and the comparison that
// prints the maximum error next to the tolerance (the habit of llm.c's test_gpt2.c).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <string>

#include "inference/safetensors_file.h"
#include "inference/weights.h"
#include "tests/inference/device_test_support.h"
#include "tests/support/test_support.h"

namespace unibiomed::test {

// One golden .safetensors file, tensors as float32/int64/bool CPU tensors.
class GoldenTensors {
 public:
  explicit GoldenTensors(const std::string& file)
      : weights_(inference::Checkpoint::open(reference_dir() / file), inference::ComputeOptions{}) {}
  torch::Tensor operator[](const std::string& name) {
    return weights_.get_raw(name, weights_.shape_of(name));
  }
  bool has(const std::string& name) const { return weights_.has(name); }

 private:
  inference::Weights weights_;
};

// |actual - expected| <= abs_tol + rel_tol * |expected| everywhere; prints the max error.
inline ::testing::AssertionResult close(const std::string& what, const torch::Tensor& actual,
                                        const torch::Tensor& expected, double abs_tol, double rel_tol = 0.0) {
  auto a = actual.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  auto e = expected.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  if (a.sizes() != e.sizes())
    return ::testing::AssertionFailure() << what << ": shape " << a.sizes() << ", expected " << e.sizes();
  auto diff = (a - e).abs();
  const double max_err = diff.numel() ? diff.max().item<double>() : 0.0;
  auto excess = diff - (abs_tol + rel_tol * e.abs());
  const int64_t bad = (excess > 0).sum().item<int64_t>();
  std::cout << "[ compare  ] " << what << ": max abs error " << max_err << " (tolerance abs " << abs_tol << ", rel "
            << rel_tol << ")\n";
  if (bad || !std::isfinite(max_err))
    return ::testing::AssertionFailure() << what << ": " << bad << " of " << a.numel()
                                         << " values outside tolerance; max abs error " << max_err;
  return ::testing::AssertionSuccess();
}

// Boolean masks: a pixel may differ only where the golden logit is within `margin` of 0
// (tests/reference/README.md: final bool masks).
inline ::testing::AssertionResult masks_agree(const std::string& what, const torch::Tensor& actual,
                                              const torch::Tensor& expected, const torch::Tensor& golden_logits,
                                              double margin = 1e-3) {
  auto a = actual.to(torch::kCPU, torch::kBool).contiguous();
  auto e = expected.to(torch::kCPU, torch::kBool).contiguous();
  if (a.sizes() != e.sizes())
    return ::testing::AssertionFailure() << what << ": shape " << a.sizes() << ", expected " << e.sizes();
  auto differ = a.ne(e);
  const int64_t n_diff = differ.sum().item<int64_t>();
  const int64_t n_bad = (differ & golden_logits.to(torch::kCPU).abs().gt(margin)).sum().item<int64_t>();
  std::cout << "[ compare  ] " << what << ": " << n_diff << " of " << a.numel() << " pixels differ, " << n_bad
            << " of them where |golden logit| >= " << margin << " (foreground " << e.sum().item<int64_t>() << ")\n";
  if (n_bad) return ::testing::AssertionFailure() << what << ": " << n_bad << " pixels differ away from the boundary";
  return ::testing::AssertionSuccess();
}

}  // namespace unibiomed::test
