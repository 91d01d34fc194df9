// The decoding kernel (a few rows times a weight matrix) against libtorch's own linear().
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "inference/cpu_matvec.h"
#include "inference/error.h"
#include "tests/inference/llm_test_support.h"

namespace unibiomed::inference {
namespace {

TEST(Matvec, EqualsLinearForEveryRowCountWithAndWithoutBias) {
  torch::manual_seed(11);
  // K = 896 (the real hidden size) and K = 37 (not a multiple of the vector width).
  for (int64_t K : {int64_t{896}, int64_t{37}}) {
    const torch::Tensor w = torch::randn({1000, K});
    const torch::Tensor b = torch::randn({1000});
    for (int64_t rows = 1; rows <= kMatvecMaxRows; ++rows) {
      const torch::Tensor x = torch::randn({rows, K});
      ASSERT_TRUE(matvec_rows_applies(x, w));
      const std::string what = std::to_string(rows) + " rows, K " + std::to_string(K);
      // float32 sums of K products in another order: within 1e-5 of the largest output.
      const torch::Tensor expected = torch::linear(x, w), expected_b = torch::linear(x, w, b);
      EXPECT_TRUE(test::close_to(what, matvec_rows(x, w), expected, 1e-5 * expected.abs().max().item<double>()));
      EXPECT_TRUE(test::close_to(what + " + bias", matvec_rows(x, w, b), expected_b,
                                 1e-5 * expected_b.abs().max().item<double>()));
    }
  }
}

TEST(Matvec, Bfloat16WeightsAreSummedInFloat32AndRoundedOnce) {
  torch::manual_seed(12);
  for (int64_t K : {int64_t{896}, int64_t{37}}) {
    const torch::Tensor w = torch::randn({1000, K}).to(torch::kBFloat16);
    const torch::Tensor b = torch::randn({1000}).to(torch::kBFloat16);
    for (int64_t rows : {int64_t{1}, int64_t{3}, kMatvecMaxRows}) {
      const torch::Tensor x = torch::randn({rows, K}).to(torch::kBFloat16);
      ASSERT_TRUE(matvec_rows_applies(x, w));
      const std::string what = "bfloat16, " + std::to_string(rows) + " rows, K " + std::to_string(K);
      // The exact sums of the bfloat16 inputs (float64): the result differs by its one rounding to
      // bfloat16 (half a unit in the last place: at most 2^-8 of the value, 8 significant bits) plus
      // float32 summation error.
      const torch::Tensor exact = torch::linear(x.to(torch::kFloat64), w.to(torch::kFloat64));
      const torch::Tensor exact_b = torch::linear(x.to(torch::kFloat64), w.to(torch::kFloat64), b.to(torch::kFloat64));
      const auto bound = [](const torch::Tensor& e) {
        return (std::ldexp(1.0, -8) + 1e-5) * e.abs().max().item<double>();
      };
      // Both kernels wherever this CPU runs them: the AVX512-BF16 pair products (kBest there) and
      // the widening one (kBest elsewhere).
      for (const MatvecKernel kernel : {MatvecKernel::kBest, MatvecKernel::kWidening}) {
        const std::string which = what + (kernel == MatvecKernel::kBest && matvec_has_bf16_pair_kernel()
                                              ? ", AVX512-BF16 pairs"
                                              : ", widened weights");
        const torch::Tensor y = matvec_rows(x, w, {}, kernel), y_b = matvec_rows(x, w, b, kernel);
        EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
        EXPECT_TRUE(test::close_to(which, y.to(torch::kFloat64), exact, bound(exact)));
        EXPECT_TRUE(test::close_to(which + " + bias", y_b.to(torch::kFloat64), exact_b, bound(exact_b)));
      }
    }
  }
}

TEST(Matvec, RowsThatAreViewsAndWhatItDoesNotTake) {
  const torch::Tensor w = torch::randn({64, 16});
  const torch::Tensor wide = torch::randn({3, 32});
  const torch::Tensor view = wide.narrow(1, 8, 16);  // rows with a stride of 32
  EXPECT_TRUE(test::close_to("strided rows", matvec_rows(view, w), torch::linear(view, w), 1e-5));
  EXPECT_FALSE(matvec_rows_applies(torch::randn({kMatvecMaxRows + 1, 16}), w));
  EXPECT_FALSE(matvec_rows_applies(torch::randn({2, 16}).to(torch::kBFloat16), w));  // dtypes differ
  EXPECT_FALSE(matvec_rows_applies(torch::randn({2, 16}), w.to(torch::kBFloat16)));
  EXPECT_FALSE(matvec_rows_applies(torch::randn({2, 16}).to(torch::kFloat64), w.to(torch::kFloat64)));
  EXPECT_FALSE(matvec_rows_applies(torch::randn({2, 15}), w));
  EXPECT_THROW(matvec_rows(torch::randn({2, 15}), w), InferenceError);
  EXPECT_THROW(matvec_rows(torch::randn({2, 16}), w, torch::randn({63})), InferenceError);
}

}  // namespace
}  // namespace unibiomed::inference
