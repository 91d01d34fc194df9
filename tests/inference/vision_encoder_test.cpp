// InternViT, pixel shuffle and mlp1 of the tiny reference checkpoint against the reference's
// outputs (tests/reference vision.safetensors, e2e.safetensors). Tolerance abs 1e-4 for float32
// (tests/reference/README.md; an independent re-implementation matched within 5.3e-6).
// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/vision_encoder.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "inference/error.h"
#include "inference/runtime.h"
#include "tests/inference/reference_answer_support.h"
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
  const auto record = test::reference_json("e2e.json");
  const int64_t tiles = record["n_tiles_incl_thumbnail"].get<int64_t>();
  ASSERT_EQ(pixels.size(0), tiles);
  std::vector<torch::Tensor> hidden;
  torch::Tensor last = encoder.vit_forward(pixels, &hidden);
  EXPECT_EQ(last.device(), test::test_device());  // UNIBIOMED_TEST_DEVICE
  // The embeddings and one per layer (config.json vision_config.num_hidden_layers).
  ASSERT_EQ(hidden.size(), static_cast<size_t>(model.config.vision.num_hidden_layers) + 1);
  for (size_t i = 0; i < hidden.size(); ++i)
    EXPECT_TRUE(test::within_tolerance("e2e_hidden_states." + std::to_string(i), hidden[i],
                                       vision["e2e_hidden_states." + std::to_string(i)], kTolerance));
  // Patch grid of a tile: (tile / patch) per side; the class token comes first.
  const int64_t g = model.config.tile_size / model.config.vision.patch_size, C = model.config.vision.hidden_size;
  torch::Tensor grid = last.narrow(1, 1, g * g).reshape({tiles, g, g, C});
  EXPECT_TRUE(test::within_tolerance("pixel_shuffle_in", grid, e2e["pixel_shuffle_in"], kTolerance));
  torch::Tensor shuffled = VisionEncoder::pixel_shuffle(grid, 0.5);
  EXPECT_TRUE(test::within_tolerance("pixel_shuffle_out", shuffled, e2e["pixel_shuffle_out"], kTolerance));
  const int64_t tokens = record["image_tokens_per_tile"].get<int64_t>();
  EXPECT_TRUE(test::within_tolerance("mlp1_out", encoder.project(shuffled.reshape({tiles, tokens, 4 * C})),
                                     e2e["mlp1_out"], kTolerance));
  EXPECT_EQ(encoder.tokens_per_tile(), tokens);
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
  // The e2e tiles, at least three of them (an image that fits one tile has no thumbnail).
  torch::Tensor pixels = e2e["pixel_values"];
  if (pixels.size(0) < 3) pixels = pixels.repeat({3, 1, 1, 1});
  const int64_t n = pixels.size(0);
  encoder.set_max_batch_tiles(n);
  torch::Tensor together = encoder.encode(pixels);
  const int64_t part = (n - 1) / 2;  // two full batches and a last one of the rest (3 + 3 + 1 for 7)
  encoder.set_max_batch_tiles(part);
  EXPECT_TRUE(test::within_tolerance("batches of " + std::to_string(part) + " vs one batch of " + std::to_string(n),
                                     encoder.encode(pixels), together, 1e-5));
  const int64_t first = n / 3;
  torch::Tensor one_by_one =
      torch::cat({encoder.encode(pixels.narrow(0, 0, first)), encoder.encode(pixels.narrow(0, first, n - first))});
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
  // The sizes of the reference checkpoint (config.json).
  const int64_t tile = model.config.tile_size, patch = model.config.vision.patch_size;
  const int64_t big = 8 * tile;
  try {
    encoder.encode(torch::zeros({2, 3, big, big}));
    FAIL() << big << " px tiles accepted by a " << tile << " px model";
  } catch (const InferenceError& e) {
    const std::string b = std::to_string(big), t = std::to_string(tile);
    EXPECT_NE(std::string(e.what()).find("shape [2, 3, " + b + ", " + b + "], expected [N, 3, " + t + ", " + t + "]"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(encoder.encode(torch::zeros({0, 3, tile, tile})), InferenceError);
  EXPECT_THROW(encoder.vit_forward(torch::zeros({1, 3, patch - 4, patch - 4})),
               InferenceError);  // smaller than a patch
  EXPECT_THROW(encoder.vit_forward(torch::zeros({1, 1, tile, tile})), InferenceError);

  // A checkpoint without one layer tensor, and a configuration that does not fit the tensors.
  test::TempDir dir;
  const std::string missing_name =
      "vision_model.encoder.layers." + std::to_string(model.config.vision.num_hidden_layers - 1) + ".mlp.fc2.weight";
  auto checkpoint = Checkpoint::open(test::reference_dir());
  std::vector<TensorBlob> blobs;
  for (const auto& name : checkpoint->names()) {
    if (name == missing_name) continue;
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
    EXPECT_NE(std::string(e.what()).find("missing tensor '" + missing_name + "'"), std::string::npos) << e.what();
  }
  ModelConfig wider = model.config;
  const int inter = model.config.vision.intermediate_size, width = model.config.vision.hidden_size;
  wider.vision.intermediate_size = 2 * inter;
  try {
    VisionEncoder broken(*model.weights, wider);
    FAIL() << "shape mismatch not reported";
  } catch (const InferenceError& e) {
    const std::string w = std::to_string(width);
    EXPECT_NE(std::string(e.what()).find("'vision_model.encoder.layers.0.mlp.fc1.weight' has shape [" +
                                         std::to_string(inter) + ", " + w + "], expected [" +
                                         std::to_string(2 * inter) + ", " + w + "]"),
              std::string::npos)
        << e.what();
  }
  ModelConfig odd = model.config;
  odd.tile_size = 3 * model.config.vision.patch_size;  // 3x3 patches cannot be pixel-shuffled
  EXPECT_THROW(VisionEncoder(*model.weights, odd), InferenceError);
  ModelConfig v1 = model.config;
  v1.ps_version = "v1";
  EXPECT_THROW(VisionEncoder(*model.weights, v1), InferenceError);
}

}  // namespace
}  // namespace unibiomed::inference
