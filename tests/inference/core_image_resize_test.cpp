// PIL-exact bicubic resize: bit-exact against the reference's Pillow outputs in
// tests/reference/preprocess.safetensors, and against Pillow itself on sizes the goldens lack.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "inference/error.h"
#include "inference/image_resize.h"
#include "tests/inference/image_test_support.h"

namespace unibiomed::inference {
namespace {

using test::count_differences;
using test::GoldenFile;
using test::procedural_image;

std::string sha256_of(const RgbImage& image, const test::TempDir& dir) {
  const auto path = dir / "image.rgb";
  test::write_file(path, std::string(image.rgb.begin(), image.rgb.end()));
  auto r = test::run_command({"sha256sum", path.string()});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return r.output.substr(0, 64);
}

nlohmann::json preprocess_json() { return nlohmann::json::parse(test::read_file(test::reference_dir() / "preprocess.json")); }

// A procedural image as preprocess.json describes a source ({"W", "H", "kind"}).
RgbImage source_image(const nlohmann::json& src) {
  return procedural_image(src.at("kind").get<int>(), src.at("W").get<int>(), src.at("H").get<int>());
}

// The small_resizes cases of preprocess.json, as many as preprocess.safetensors holds sources for.
nlohmann::json small_resize_cases() {
  const nlohmann::json cases = preprocess_json()["small_resizes"];
  const auto manifest = nlohmann::json::parse(test::read_file(test::reference_dir() / "manifest.json"));
  size_t stored = 0;
  for (const auto& [name, tensor] : manifest["files"]["preprocess.safetensors"]["tensors"].items())
    stored += name.rfind("small_resize.", 0) == 0 && name.size() > 7 && name.substr(name.size() - 7) == ".src_u8";
  EXPECT_EQ(cases.size(), stored) << "preprocess.json small_resizes vs preprocess.safetensors";
  EXPECT_FALSE(cases.empty());
  return cases;
}

class ResizeGolden : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  }
};

TEST_F(ResizeGolden, ProceduralSourcesMatchTheStoredOnes) {
  // The generator is checked on every stored source, so the sources that are given only by
  // formula and hash (thumb448_down, sam1024_mixed) are the reference's too.
  GoldenFile golden("preprocess.safetensors");
  const nlohmann::json cases = small_resize_cases();
  for (const auto& c : cases) {
    const int index = c["index"];
    RgbImage expected = golden.image("small_resize." + std::to_string(index) + ".src_u8");
    RgbImage made = procedural_image(c["src"]["kind"], c["src"]["W"], c["src"]["H"]);
    EXPECT_EQ(count_differences(made, expected), 0u) << "small_resize " << index;
  }
  auto json = preprocess_json();
  EXPECT_EQ(count_differences(source_image(json["thumb448_up"]["src"]), golden.image("thumb448_up.src_u8")), 0u);
  test::TempDir dir;
  EXPECT_EQ(sha256_of(source_image(json["thumb448_down"]["src"]), dir), json["thumb448_down"]["src_sha256"]);
  EXPECT_EQ(sha256_of(source_image(json["sam1024_mixed"]["src"]), dir), json["sam1024_mixed"]["src"]["src_sha256"]);
}

TEST_F(ResizeGolden, SmallResizesAreBitExact) {
  GoldenFile golden("preprocess.safetensors");
  const nlohmann::json cases = small_resize_cases();
  for (const auto& c : cases) {
    const std::string prefix = "small_resize." + std::to_string(c["index"].get<int>());
    RgbImage src = golden.image(prefix + ".src_u8");
    RgbImage expected = golden.image(prefix + ".out_u8");
    RgbImage out = resize_bicubic(src, c["dst"]["W"], c["dst"]["H"]);
    std::string first;
    const size_t diff = count_differences(out, expected, &first);
    std::cout << prefix << ": " << src.width << "x" << src.height << " -> " << out.width << "x" << out.height
              << ", differing bytes " << diff << "\n";
    EXPECT_EQ(diff, 0u) << prefix << " first difference: " << first;
  }
}

TEST_F(ResizeGolden, ThumbnailsUpAndDownAreBitExact) {
  GoldenFile golden("preprocess.safetensors");
  std::string first;
  RgbImage up = resize_bicubic(golden.image("thumb448_up.src_u8"), 448, 448);
  EXPECT_EQ(count_differences(up, golden.image("thumb448_up.resized_u8"), &first), 0u) << first;
  RgbImage down = resize_bicubic(source_image(preprocess_json()["thumb448_down"]["src"]), 448, 448);
  EXPECT_EQ(count_differences(down, golden.image("thumb448_down.resized_u8"), &first), 0u) << first;
}

void expect_sam1024_views(const RgbImage& out, const GoldenFile& golden, const std::string& prefix) {
  ASSERT_EQ(out.width, 1024);
  ASSERT_EQ(out.height, 1024);
  auto pick = [&](int w, int h, auto pixel) {
    RgbImage view(w, h);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) std::memcpy(view.row(y) + 3 * x, pixel(x, y), 3);
    return view;
  };
  auto at = [&](int x, int y) { return out.row(y) + 3 * x; };
  std::string first;
  EXPECT_EQ(count_differences(pick(128, 128, [&](int x, int y) { return at(8 * x, 8 * y); }),
                              golden.image(prefix + ".every8th_u8"), &first), 0u) << prefix << " every8th " << first;
  EXPECT_EQ(count_differences(pick(64, 64, [&](int x, int y) { return at(480 + x, 480 + y); }),
                              golden.image(prefix + ".crop_r480_c480_64x64_u8"), &first), 0u) << prefix << " crop " << first;
  // The row/column views are stored as [1024, 3]: compare them as 1 x 1024 images.
  auto line = [&](const std::string& name) {
    const auto& t = golden.tensor(name);
    RgbImage im(1024, 1);
    std::memcpy(im.rgb.data(), t.data, t.nbytes);
    return im;
  };
  EXPECT_EQ(count_differences(pick(1024, 1, [&](int x, int) { return at(x, 0); }), line(prefix + ".row0_u8")), 0u);
  EXPECT_EQ(count_differences(pick(1024, 1, [&](int x, int) { return at(x, 1023); }), line(prefix + ".row1023_u8")), 0u);
  EXPECT_EQ(count_differences(pick(1024, 1, [&](int x, int) { return at(0, x); }), line(prefix + ".col0_u8")), 0u);
  EXPECT_EQ(count_differences(pick(1024, 1, [&](int x, int) { return at(1023, x); }), line(prefix + ".col1023_u8")), 0u);
}

TEST_F(ResizeGolden, Sam2DirectResizesTo1024AreBitExact) {
  GoldenFile golden("preprocess.safetensors");
  auto json = preprocess_json();
  test::TempDir dir;
  RgbImage up = resize_bicubic(source_image(json["sam1024_same_as_thumb448_up"]["src"]), 1024, 1024);
  expect_sam1024_views(up, golden, "sam1024_same_as_thumb448_up");
  EXPECT_EQ(sha256_of(up, dir), json["sam1024_same_as_thumb448_up"]["sha256_of_full_1024x1024x3_u8_HWC_rowmajor"]);
  RgbImage mixed = resize_bicubic(source_image(json["sam1024_mixed"]["src"]), 1024, 1024);
  expect_sam1024_views(mixed, golden, "sam1024_mixed");
  EXPECT_EQ(sha256_of(mixed, dir), json["sam1024_mixed"]["sha256_of_full_1024x1024x3_u8_HWC_rowmajor"]);
  // The tiny checkpoint's SAM2 input side (config.json) from the same source as sam1024_mixed.
  const int side = nlohmann::json::parse(
                       test::read_file(test::reference_dir() / "config.json"))["grounding_encoder_config"]["image_size"]
                       .get<int>();
  std::string first;
  EXPECT_EQ(count_differences(resize_bicubic(source_image(json["sam1024_mixed"]["src"]), side, side),
                              golden.image("sam128.direct_resize_u8"), &first),
            0u)
      << first;
}

TEST(Resize, SameSizeIsACopy) {
  RgbImage src = test::random_image(13, 7, 1);
  RgbImage out = resize_bicubic(src, 13, 7);
  EXPECT_EQ(out.rgb, src.rgb);
}

TEST(Resize, ConstantImageStaysConstant) {
  // Weights are normalised to sum 1, so a flat image must come out flat in every direction
  // (catches weights that do not sum to 2^22 or an off-by-one window).
  RgbImage flat(29, 17);
  for (size_t i = 0; i < flat.rgb.size(); ++i) flat.rgb[i] = static_cast<uint8_t>(i % 3 == 0 ? 200 : i % 3 == 1 ? 7 : 255);
  for (auto [w, h] : {std::pair{448, 448}, {3, 2}, {1, 1}, {29, 90}, {100, 17}}) {
    RgbImage out = resize_bicubic(flat, w, h);
    for (size_t i = 0; i < out.rgb.size(); ++i)
      ASSERT_EQ(out.rgb[i], flat.rgb[i % 3]) << w << "x" << h << " byte " << i;
  }
}

TEST(Resize, MatchesPillowOnOddSizes) {
  ASSERT_TRUE(test::have_pillow()) << test::install_hint("Pillow for /usr/bin/python3", "Debian's python3-pil");
  test::TempDir dir;
  struct Case { int w, h, W, H; };
  // Extreme ratios, 1-pixel sides, large downscales (wide kernels), upscales, one axis only.
  const Case cases[] = {{1, 1, 448, 448}, {1, 1, 1, 1},    {5000, 3, 7, 2},    {3, 999, 448, 448}, {640, 480, 1792, 1344},
                        {1023, 1025, 1024, 1024}, {448, 300, 448, 448}, {300, 448, 448, 448}, {2, 2, 1, 1},
                        {997, 13, 56, 56}, {1500, 1100, 1792, 1344}};
  uint32_t seed = 7;
  for (const Case& c : cases) {
    RgbImage src = test::random_image(c.w, c.h, seed++);
    RgbImage expected = test::pillow_resize(src, c.W, c.H, dir.path());
    std::string first;
    const size_t diff = count_differences(resize_bicubic(src, c.W, c.H), expected, &first);
    std::cout << c.w << "x" << c.h << " -> " << c.W << "x" << c.H << ": differing bytes vs Pillow " << diff << "\n";
    EXPECT_EQ(diff, 0u) << c.w << "x" << c.h << " -> " << c.W << "x" << c.H << ": " << first;
  }
}

TEST(Resize, BadInputIsRefusedWithTheSizes) {
  RgbImage empty;
  try {
    resize_bicubic(empty, 10, 10);
    FAIL() << "empty image accepted";
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("0x0 has no pixels"), std::string::npos) << e.what();
  }
  RgbImage truncated(4, 4);
  truncated.rgb.resize(40);
  try {
    resize_bicubic(truncated, 2, 2);
    FAIL() << "short buffer accepted";
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("buffer holds 40 bytes, a 4x4 RGB8 image needs 48"), std::string::npos) << e.what();
  }
  try {
    resize_bicubic(RgbImage(4, 4), 0, 3);
    FAIL() << "zero target accepted";
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("to 0x3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(crop(RgbImage(4, 4), 2, 2, 3, 1), InferenceError);
  EXPECT_THROW(crop(RgbImage(4, 4), -1, 0, 1, 1), InferenceError);
}

}  // namespace
}  // namespace unibiomed::inference
