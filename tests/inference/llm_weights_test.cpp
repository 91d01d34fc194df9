// Weights: conversion to the compute dtype, shape checks, unused-tensor report.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "inference/error.h"
#include "inference/runtime.h"
#include "inference/weights.h"
#include "tests/support/test_support.h"

namespace unibiomed::inference {
namespace {

TEST(Weights, ReferenceTensorInComputeDtypeAndShapeErrors) {
  ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  const auto golden = test::reference_dir();
  // The sizes of the reference checkpoint (config.json llm_config) and its tensor count (manifest.json).
  const auto config = nlohmann::json::parse(test::read_file(golden / "config.json"))["llm_config"];
  const int64_t H = config["hidden_size"].get<int64_t>(), V = config["vocab_size"].get<int64_t>();
  const int64_t I = config["intermediate_size"].get<int64_t>(), L = config["num_hidden_layers"].get<int64_t>();
  const auto tensors =
      nlohmann::json::parse(test::read_file(golden / "manifest.json"))["files"]["model.safetensors"]["n_tensors"]
          .get<size_t>();
  auto shape = [](int64_t rows, int64_t cols) {
    return "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
  };
  Weights w(Checkpoint::open(golden), ComputeOptions{});
  torch::Tensor norm = w.get("language_model.model.norm.weight", {H});
  EXPECT_EQ(norm.scalar_type(), torch::kFloat32);
  EXPECT_EQ(norm.sizes(), (std::vector<int64_t>{H}));
  try {
    w.get("language_model.lm_head.weight", {V + 1, H});
    FAIL() << "shape mismatch not reported";
  } catch (const InferenceError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("'language_model.lm_head.weight' has shape " + shape(V, H) + ", expected " + shape(V + 1, H)),
              std::string::npos)
        << m;
  }
  // A layer past the last one.
  const std::string missing = "language_model.model.layers." + std::to_string(L) + ".mlp.up_proj.weight";
  try {
    w.get(missing, {I, H});
    FAIL();
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor '" + missing + "'"), std::string::npos);
  }
  auto unused = w.unused();
  EXPECT_EQ(unused.size(), tensors - 1);  // all but the norm weight (lm_head failed its shape check)
}

TEST(Weights, Bf16IsConvertedToFloat32) {
  test::TempDir dir;
  TensorBlob b{"x", DType::BF16, {2}, {}};
  // bf16 1.5 = 0x3FC0, -2.0 = 0xC000 (little endian)
  b.bytes = {std::byte{0xC0}, std::byte{0x3F}, std::byte{0x00}, std::byte{0xC0}};
  write_safetensors(dir / "m.safetensors", {b});
  Weights w(Checkpoint::open(dir / "m.safetensors"), ComputeOptions{});
  torch::Tensor t = w.get("x", {2});
  EXPECT_EQ(t.scalar_type(), torch::kFloat32);
  EXPECT_FLOAT_EQ(t[0].item<float>(), 1.5f);
  EXPECT_FLOAT_EQ(t[1].item<float>(), -2.0f);
}

TEST(Weights, DeviceAndDtypeStrings) {
  // auto: bfloat16 where the CPU has bfloat16 dot products, float32 on other CPUs.
  EXPECT_EQ(ComputeOptions::from_strings("cpu").dtype,
            cpu_has_native_bfloat16() ? torch::kBFloat16 : torch::kFloat32);
  EXPECT_EQ(ComputeOptions::from_strings("cpu", "float32").dtype, torch::kFloat32);
  EXPECT_EQ(ComputeOptions::from_strings("cpu", "bfloat16").dtype, torch::kBFloat16);
  EXPECT_THROW(ComputeOptions::from_strings("tpu"), InferenceError);
  EXPECT_THROW(ComputeOptions::from_strings("cpu", "int4"), InferenceError);
  if (!torch::cuda::is_available()) {
    EXPECT_THROW(ComputeOptions::from_strings("cuda"), InferenceError);
  }
}

}  // namespace
}  // namespace unibiomed::inference
