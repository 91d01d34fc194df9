// Normalised model inputs: InternVL tiles and the SAM2 input against the reference's tensors
// (tests/reference e2e.safetensors, preprocess.safetensors). The float32 operations are the
// reference's own, so the tensors are compared exactly (tolerance 0; the goldens allow 1e-6).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "inference/error.h"
#include "inference/image_preprocess.h"
#include "inference/model_config.h"
#include "tests/inference/image_test_support.h"
#include "tests/inference/reference_answer_support.h"
#include "tests/inference/vision_test_support.h"

namespace unibiomed::inference {
namespace {

class PreprocessGolden : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  }
};

// The tiling of the reference checkpoint (config.json tiny_test: tile size, tile limits, thumbnail).
TilingOptions tiny_tiles() {
  return TilingOptions::from_config(ModelConfig::load(test::reference_dir() / "config.json"));
}

// A procedural image as preprocess.json describes a source ({"W", "H", "kind"}).
RgbImage source_image(const nlohmann::json& src) {
  return test::procedural_image(src.at("kind").get<int>(), src.at("W").get<int>(), src.at("H").get<int>());
}

TEST_F(PreprocessGolden, E2eTilesAreTheReferencePixelValues) {
  test::GoldenTorch e2e("e2e.safetensors");
  test::GoldenFile raw("e2e.safetensors");
  RgbImage image = raw.image("image_rgb_u8");
  const auto record = test::reference_json("e2e.json");
  const auto& described = record.at("image");
  ASSERT_EQ(test::count_differences(
                image, test::procedural_image(described.at("procedural_kind").get<int>(), described.at("W").get<int>(),
                                              described.at("H").get<int>())),
            0u);
  InternVlInput input = preprocess_internvl({image}, tiny_tiles());
  const int tiles = record.at("n_tiles_incl_thumbnail").get<int>();
  ASSERT_EQ(input.tiles_per_image, std::vector<int>{tiles});
  // A grid of one tile has no thumbnail; any other is followed by one.
  EXPECT_EQ(input.grids[0].tiles() + (input.grids[0].tiles() > 1 ? 1 : 0), tiles);
  EXPECT_TRUE(test::within_tolerance("e2e pixel_values", input.pixel_values, e2e["pixel_values"], 0.0));
}

TEST_F(PreprocessGolden, ThumbnailNormalisedAsTheReferenceTransform) {
  test::GoldenTorch golden("preprocess.safetensors");
  TiledImage tiled =
      tile_image(source_image(test::reference_json("preprocess.json")["thumb448_up"]["src"]), TilingOptions{});
  ASSERT_TRUE(tiled.thumbnail.has_value());
  torch::Tensor pv = internvl_pixel_values(tiled);
  ASSERT_EQ(pv.size(0), tiled.tile_count());
  EXPECT_TRUE(test::within_tolerance("thumb448_up.normalized", pv[tiled.tile_count() - 1],
                                     golden["thumb448_up.normalized"], 0.0));
}

TEST_F(PreprocessGolden, Sam2MeanStdAreTheBfloat16RoundedImageNetValues) {
  test::GoldenTorch golden("preprocess.safetensors");
  ChannelNormalization n = ChannelNormalization::sam2();
  torch::Tensor mean = torch::tensor(std::vector<float>(n.mean.begin(), n.mean.end()));
  torch::Tensor std = torch::tensor(std::vector<float>(n.std.begin(), n.std.end()));
  EXPECT_TRUE(test::within_tolerance("sam_preprocess_effective_mean", mean, golden["sam_preprocess_effective_mean"], 0.0));
  EXPECT_TRUE(test::within_tolerance("sam_preprocess_effective_std", std, golden["sam_preprocess_effective_std"], 0.0));
  // Independently: libtorch's own float -> bfloat16 conversion.
  torch::Tensor imagenet = torch::tensor({0.485f, 0.456f, 0.406f});
  EXPECT_TRUE(torch::equal(mean, imagenet.to(torch::kBFloat16).to(torch::kFloat32)));
}

TEST_F(PreprocessGolden, Sam2InputsAreTheReferenceTensors) {
  test::GoldenTorch golden("preprocess.safetensors");
  test::GoldenTorch e2e("e2e.safetensors");
  test::GoldenFile raw("e2e.safetensors");
  const auto json = test::reference_json("preprocess.json");
  // The tiny checkpoint's side (config.json) from the sam1024_mixed source, and the e2e image.
  const int side = ModelConfig::load(test::reference_dir() / "config.json").grounding.image_size;
  EXPECT_TRUE(test::within_tolerance("sam128.normalized",
                                     sam2_pixel_values(source_image(json["sam1024_mixed"]["src"]), side),
                                     golden["sam128.normalized"], 0.0));
  EXPECT_TRUE(test::within_tolerance("e2e sam_input_normalized", sam2_pixel_values(raw.image("image_rgb_u8"), side),
                                     e2e["sam_input_normalized"], 0.0));
  // Release side 1024: the stored 64x64 crop at rows/cols 480.
  torch::Tensor full = sam2_pixel_values(source_image(json["sam1024_same_as_thumb448_up"]["src"]), 1024);
  ASSERT_EQ(full.sizes(), (std::vector<int64_t>{3, 1024, 1024}));
  EXPECT_TRUE(test::within_tolerance("sam1024 normalized crop", full.narrow(1, 480, 64).narrow(2, 480, 64),
                                     golden["sam1024_same_as_thumb448_up.normalized_crop_r480_c480_64x64"], 0.0));
}

TEST(Preprocess, ImagesOfABatchAreConcatenatedInOrder) {
  TilingOptions o;
  o.tile_size = 56;
  std::vector<RgbImage> images = {test::procedural_image(0, 100, 70), test::procedural_image(1, 56, 56),
                                  test::procedural_image(1, 300, 120)};
  InternVlInput batch = preprocess_internvl(images, o);
  ASSERT_EQ(batch.tiles_per_image.size(), 3u);
  int64_t start = 0;
  for (size_t i = 0; i < images.size(); ++i) {
    torch::Tensor alone = internvl_pixel_values(tile_image(images[i], o));
    EXPECT_EQ(batch.tiles_per_image[i], alone.size(0));
    EXPECT_TRUE(torch::equal(batch.pixel_values.narrow(0, start, alone.size(0)), alone)) << "image " << i;
    start += alone.size(0);
  }
  EXPECT_EQ(start, batch.pixel_values.size(0));
  EXPECT_EQ(batch.tiles_per_image[1], 1);  // a single tile gets no thumbnail
}

TEST(Preprocess, BadImagesAreNamedByTheirPlaceInTheBatch) {
  std::vector<RgbImage> images = {test::procedural_image(0, 20, 20), RgbImage(), test::procedural_image(0, 20, 20)};
  try {
    preprocess_internvl(images, TilingOptions{});
    FAIL() << "an empty image was accepted";
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("image 2 of 3: size 0x0 has no pixels"), std::string::npos) << e.what();
  }
  TilingOptions small;
  small.max_pixels = 100;
  try {
    preprocess_internvl({test::procedural_image(0, 20, 20)}, small);
    FAIL();
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("image: 20x20 = 400 pixels exceeds the limit of 100"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(preprocess_internvl({}, TilingOptions{}), InferenceError);
  EXPECT_THROW(sam2_pixel_values(test::procedural_image(0, 20, 20), 1024, 100), InferenceError);
  EXPECT_THROW(sam2_pixel_values(test::procedural_image(0, 20, 20), 0), InferenceError);
}

TEST(Preprocess, BfloatRoundingIsNearestEven) {
  // 1 + 2^-8 lies exactly between two bfloat16 values (1 and 1 + 2^-7): ties go to even (1).
  EXPECT_EQ(round_to_bfloat16(1.0f + 1.0f / 256), 1.0f);
  EXPECT_EQ(round_to_bfloat16(1.0f + 3.0f / 256), 1.0f + 4.0f / 256);
  EXPECT_EQ(round_to_bfloat16(-2.5f), -2.5f);
}

}  // namespace
}  // namespace unibiomed::inference
