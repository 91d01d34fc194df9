// InternViT, pixel shuffle and mlp1 of the tiny reference checkpoint against the reference's
// outputs (tests/reference vision.safetensors, e2e.safetensors). Tolerance abs 1e-4 for float32
// (tests/reference/README.md; an independent re-implementation matched within 5.3e-6).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "inference/error.h"
#include "inference/runtime.h"
#include "inference/vision_encoder.h"
#include "tests/inference/vision_test_support.h"

namespace unibiomed::inference {
namespace {

constexpr double kTolerance = 1e-4;

class VisionGolden : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
    ASSERT_TRUE(test::test_device_usable());
    configure_cpu_threads();
  }
};

TEST(PixelShuffle, GathersEach2x2BlockInRowMajorOrder) {
  // Independent of the goldens: token (r, c) of a 4x4 grid holds value 10*r + c in each of its
  // 2 channels; output (i, j) must hold tokens (2i,2j), (2i,2j+1), (2i+1,2j), (2i+1,2j+1).
  torch::Tensor x = torch::empty({1, 4, 4, 2});
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) x[0][r][c].fill_(10 * r + c);
  torch::Tensor y = VisionEncoder::pixel_shuffle(x, 0.5);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{1, 2, 2, 8}));
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) {
      const int expected[4] = {10 * (2 * i) + 2 * j, 10 * (2 * i) + 2 * j + 1, 10 * (2 * i + 1) + 2 * j,
                               10 * (2 * i + 1) + 2 * j + 1};
      for (int b = 0; b < 4; ++b)
        for (int ch = 0; ch < 2; ++ch)
          EXPECT_EQ(y[0][i][j][2 * b + ch].item<float>(), expected[b]) << i << "," << j << " block " << b;
    }
  EXPECT_THROW(VisionEncoder::pixel_shuffle(torch::zeros({1, 3, 3, 2}), 0.5), InferenceError);
  EXPECT_THROW(VisionEncoder::pixel_shuffle(torch::zeros({4, 2}), 0.5), InferenceError);
}

TEST_F(VisionGolden, PixelShuffleIndexLayout) {
  test::GoldenTorch vision("vision.safetensors");
  EXPECT_TRUE(test::within_tolerance("pixel_shuffle_index", VisionEncoder::pixel_shuffle(vision["pixel_shuffle_index_in"], 0.5),
                                     vision["pixel_shuffle_index_out"], 0.0));
}

TEST_F(VisionGolden, E2eHiddenStatesShuffleAndProjector) {
  test::TinyModel model;
  VisionEncoder encoder(*model.weights, model.config);
  test::GoldenTorch vision("vision.safetensors");
  test::GoldenTorch e2e("e2e.safetensors");
  const torch::Tensor pixels = e2e["pixel_values"];
  std::vector<torch::Tensor> hidden;
  torch::Tensor last = encoder.vit_forward(pixels, &hidden);
  EXPECT_EQ(last.device(), test::test_device());  // UNIBIOMED_TEST_DEVICE
  ASSERT_EQ(hidden.size(), 3u);  // embeddings + 2 layers
  for (size_t i = 0; i < hidden.size(); ++i)
    EXPECT_TRUE(test::within_tolerance("e2e_hidden_states." + std::to_string(i), hidden[i],
                                       vision["e2e_hidden_states." + std::to_string(i)], kTolerance));
  torch::Tensor grid = last.narrow(1, 1, 16).reshape({7, 4, 4, 64});
  EXPECT_TRUE(test::within_tolerance("pixel_shuffle_in", grid, e2e["pixel_shuffle_in"], kTolerance));
  torch::Tensor shuffled = VisionEncoder::pixel_shuffle(grid, 0.5);
  EXPECT_TRUE(test::within_tolerance("pixel_shuffle_out", shuffled, e2e["pixel_shuffle_out"], kTolerance));
  EXPECT_TRUE(test::within_tolerance("mlp1_out", encoder.project(shuffled.reshape({7, 4, 256})), e2e["mlp1_out"], kTolerance));
  EXPECT_EQ(encoder.tokens_per_tile(), 4);
  torch::Tensor embeds = encoder.encode(pixels);
  EXPECT_TRUE(test::within_tolerance("encode -> image_token_embeds", embeds, e2e["image_token_embeds"], kTolerance));
}

TEST_F(VisionGolden, PositionEmbeddingInterpolatedForOtherGrids) {
  test::TinyModel model;
  VisionEncoder encoder(*model.weights, model.config);
  test::GoldenTorch vision("vision.safetensors");
  for (const char* size : {"42", "70"}) {
    torch::Tensor out = encoder.vit_forward(vision[std::string("pixel_values_") + size]);
    EXPECT_TRUE(test::within_tolerance(std::string("last_hidden_state_") + size, out,
                                       vision[std::string("last_hidden_state_") + size], kTolerance));
  }
}

TEST_F(VisionGolden, BatchSizeDoesNotChangeTheResult) {
  test::TinyModel model;
  VisionEncoder encoder(*model.weights, model.config);
  test::GoldenTorch e2e("e2e.safetensors");
  const torch::Tensor pixels = e2e["pixel_values"];
  encoder.set_max_batch_tiles(7);
  torch::Tensor together = encoder.encode(pixels);
  encoder.set_max_batch_tiles(3);  // 3 + 3 + 1
  EXPECT_TRUE(test::within_tolerance("batches of 3 vs one batch of 7", encoder.encode(pixels), together, 1e-5));
  torch::Tensor one_by_one = torch::cat({encoder.encode(pixels.narrow(0, 0, 2)), encoder.encode(pixels.narrow(0, 2, 5))});
  EXPECT_TRUE(test::within_tolerance("two calls vs one batch", one_by_one, together, 1e-5));
  EXPECT_THROW(encoder.set_max_batch_tiles(0), InferenceError);
}

TEST_F(VisionGolden, Bfloat16ComputeStaysCloseToTheReference) {
  // The released model runs in bfloat16; 8 mantissa bits give about 1e-2 relative error
  // (tests/reference/README.md), measured here against the largest golden magnitude.
  test::TinyModel model;
  Weights bf16(Checkpoint::open(test::reference_dir()), test::test_compute(torch::kBFloat16));
  VisionEncoder encoder(bf16, model.config);
  test::GoldenTorch e2e("e2e.safetensors");
  torch::Tensor expected = e2e["image_token_embeds"];
  torch::Tensor embeds = encoder.encode(e2e["pixel_values"]);
  EXPECT_EQ(embeds.scalar_type(), torch::kBFloat16);
  const double scale = expected.abs().max().item<double>();
  EXPECT_TRUE(test::within_tolerance("bfloat16 image_token_embeds", embeds, expected, 3e-2 * scale));
}

TEST_F(VisionGolden, WrongInputsAndCheckpointsAreNamed) {
  test::TinyModel model;
  VisionEncoder encoder(*model.weights, model.config);
  try {
    encoder.encode(torch::zeros({2, 3, 448, 448}));
    FAIL() << "448 tiles accepted by a 56-pixel model";
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("shape [2, 3, 448, 448], expected [N, 3, 56, 56]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(encoder.encode(torch::zeros({0, 3, 56, 56})), InferenceError);
  EXPECT_THROW(encoder.vit_forward(torch::zeros({1, 3, 10, 10})), InferenceError);
  EXPECT_THROW(encoder.vit_forward(torch::zeros({1, 1, 56, 56})), InferenceError);

  // A checkpoint without one layer tensor, and a configuration that does not fit the tensors.
  test::TempDir dir;
  auto checkpoint = Checkpoint::open(test::reference_dir());
  std::vector<TensorBlob> blobs;
  for (const auto& name : checkpoint->names()) {
    if (name == "vision_model.encoder.layers.1.mlp.fc2.weight") continue;
    const TensorView* v = checkpoint->find(name);
    TensorBlob b{name, v->dtype, v->shape, std::vector<std::byte>(v->data, v->data + v->nbytes)};
    blobs.push_back(std::move(b));
  }
  write_safetensors(dir / "model.safetensors", blobs);
  Weights missing(Checkpoint::open(dir / "model.safetensors"), ComputeOptions{});
  try {
    VisionEncoder broken(missing, model.config);
    FAIL() << "missing tensor not reported";
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor 'vision_model.encoder.layers.1.mlp.fc2.weight'"), std::string::npos)
        << e.what();
  }
  ModelConfig wider = model.config;
  wider.vision.intermediate_size = 256;
  try {
    VisionEncoder broken(*model.weights, wider);
    FAIL() << "shape mismatch not reported";
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("'vision_model.encoder.layers.0.mlp.fc1.weight' has shape [128, 64], expected [256, 64]"),
              std::string::npos)
        << e.what();
  }
  ModelConfig odd = model.config;
  odd.tile_size = 42;  // 3x3 patches cannot be pixel-shuffled
  EXPECT_THROW(VisionEncoder(*model.weights, odd), InferenceError);
  ModelConfig v1 = model.config;
  v1.ps_version = "v1";
  EXPECT_THROW(VisionEncoder(*model.weights, v1), InferenceError);
}

}  // namespace
}  // namespace unibiomed::inference
