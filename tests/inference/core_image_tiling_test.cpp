// InternVL dynamic tiling: candidate order, grid choice for every size listed in
// tests/reference/preprocess.json, tiles and thumbnail, the pixel limit.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <sstream>

#include "inference/error.h"
#include "inference/image_resize.h"
#include "inference/image_tiling.h"
#include "inference/model_config.h"
#include "tests/inference/image_test_support.h"

namespace unibiomed::inference {
namespace {

nlohmann::json preprocess_json() { return nlohmann::json::parse(test::read_file(test::reference_dir() / "preprocess.json")); }

std::string grids_string(const std::vector<TileGrid>& grids) {
  std::string s;
  for (const auto& g : grids) s += "(" + std::to_string(g.cols) + "," + std::to_string(g.rows) + ")";
  return s;
}

TEST(Tiling, CandidateOrderIsTheReferenceIterationOrder) {
  ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  const nlohmann::json expected = preprocess_json()["target_ratios_min1_max12_in_iteration_order"];
  std::vector<TileGrid> want;
  for (const auto& p : expected) want.push_back(TileGrid{p[0], p[1]});
  ASSERT_EQ(want.size(), 35u);
  EXPECT_EQ(grids_string(candidate_grids(1, 12)), grids_string(want));
}

TEST(Tiling, CandidateOrderMatchesCPythonForOtherLimits) {
  // The emulated set order, checked against the interpreter itself for limits the goldens do
  // not list (the tables grow through several resizes for the larger ones).
  auto r = test::run_command({"/usr/bin/python3", "-c",
                              "for lo, hi in [(1, 6), (2, 24), (1, 40), (3, 3), (5, 64)]:\n"
                              "    s = set((i, j) for n in range(lo, hi + 1) for i in range(1, n + 1)\n"
                              "            for j in range(1, n + 1) if i * j <= hi and i * j >= lo)\n"
                              "    print(''.join('(%d,%d)' % p for p in sorted(s, key=lambda x: x[0] * x[1])))\n"});
  ASSERT_EQ(r.exit_code, 0) << test::install_hint("a working /usr/bin/python3", "Debian's python3") << "\n" << r.output;
  std::istringstream lines(r.output);
  const std::pair<int, int> limits[] = {{1, 6}, {2, 24}, {1, 40}, {3, 3}, {5, 64}};
  for (auto [lo, hi] : limits) {
    std::string line;
    ASSERT_TRUE(std::getline(lines, line));
    EXPECT_EQ(grids_string(candidate_grids(lo, hi)), line) << "min " << lo << " max " << hi;
  }
}

TEST(Tiling, GridChoiceForEveryListedSize) {
  ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  const nlohmann::json json = preprocess_json();
  int checked = 0, tables = 0;
  // Every table "dynamic_preprocess_<tile>_min1_max12_thumb" (448, the release, and the tiny tile).
  const std::string prefix = "dynamic_preprocess_", suffix = "_min1_max12_thumb";
  for (const auto& [key, table] : json.items()) {
    if (key.rfind(prefix, 0) != 0 || key.size() <= prefix.size() + suffix.size() ||
        key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    TilingOptions options;
    options.tile_size = std::stoi(key.substr(prefix.size(), key.size() - prefix.size() - suffix.size()));
    ++tables;
    ASSERT_FALSE(table.empty()) << key;
    for (const auto& c : table) {
      const int w = c["W"], h = c["H"];
      TileGrid g = choose_grid(w, h, options);
      EXPECT_EQ(g.cols, c["cols"].get<int>()) << key << " " << w << "x" << h;
      EXPECT_EQ(g.rows, c["rows"].get<int>()) << key << " " << w << "x" << h;
      const int tiles = g.tiles() + (g.tiles() > 1 ? 1 : 0);
      EXPECT_EQ(tiles, c["n_tiles_incl_thumbnail"].get<int>()) << key << " " << w << "x" << h;
      ++checked;
    }
  }
  // The release's tile and the tiny checkpoint's (config.json tiny_test.internvl_tile_size).
  const int tiny_tile = ModelConfig::load(test::reference_dir() / "config.json").tile_size;
  EXPECT_TRUE(json.contains(prefix + "448" + suffix));
  EXPECT_TRUE(json.contains(prefix + std::to_string(tiny_tile) + suffix));
  EXPECT_GE(tables, 2);
  std::cout << "grid choices checked: " << checked << " in " << tables << " tables\n";
}

TEST(Tiling, TilesAreRowMajorCropsOfTheResizedImageThenTheThumbnail) {
  RgbImage image = test::procedural_image(1, 1300, 600);  // 2x1 grid at 448 -> 2 tiles + thumbnail
  TilingOptions options;
  TiledImage tiled = tile_image(image, options);
  EXPECT_EQ(tiled.grid, (TileGrid{2, 1}));
  ASSERT_EQ(tiled.tile_count(), 3);
  RgbImage resized = resize_bicubic(image, 896, 448);
  EXPECT_EQ(tiled.resized.rgb, resized.rgb);
  EXPECT_EQ(tiled.tile(0).rgb, crop(resized, 0, 0, 448, 448).rgb);
  EXPECT_EQ(tiled.tile(1).rgb, crop(resized, 448, 0, 448, 448).rgb);
  EXPECT_EQ(tiled.tile(2).rgb, resize_bicubic(image, 448, 448).rgb);
  EXPECT_EQ(std::memcmp(tiled.tile_pixel(1, 5, 7), resized.row(7) + 3 * (448 + 5), 3), 0);
  EXPECT_THROW(tiled.tile(3), InferenceError);

  // The tiny tiles (config.json) of the e2e image (e2e.json), row-major: tile k is row k / cols,
  // column k % cols of the resized image.
  ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  const auto e2e = nlohmann::json::parse(test::read_file(test::reference_dir() / "e2e.json"));
  const int S = ModelConfig::load(test::reference_dir() / "config.json").tile_size;
  options.tile_size = S;
  const auto& im = e2e["image"];
  TiledImage small = tile_image(test::procedural_image(im["procedural_kind"], im["W"], im["H"]), options);
  EXPECT_EQ(small.tile_count(), e2e["n_tiles_incl_thumbnail"].get<int>());
  ASSERT_EQ(small.resized.width, small.grid.cols * S);
  ASSERT_EQ(small.resized.height, small.grid.rows * S);
  for (int k = 0; k < small.grid.tiles(); ++k)
    EXPECT_EQ(small.tile(k).rgb, crop(small.resized, (k % small.grid.cols) * S, (k / small.grid.cols) * S, S, S).rgb)
        << k;
}

TEST(Tiling, OneTileHasNoThumbnailAndThumbnailCanBeOff) {
  TilingOptions options;
  TiledImage one = tile_image(test::procedural_image(0, 500, 510), options);
  EXPECT_EQ(one.grid.tiles(), 1);
  EXPECT_FALSE(one.thumbnail.has_value());
  EXPECT_EQ(one.tile_count(), 1);
  options.use_thumbnail = false;
  TiledImage wide = tile_image(test::procedural_image(0, 1344, 448), options);
  EXPECT_EQ(wide.grid, (TileGrid{3, 1}));
  EXPECT_EQ(wide.tile_count(), 3);
}

TEST(Tiling, OptionsFromTheTinyConfig) {
  ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  ModelConfig config = ModelConfig::load(test::reference_dir() / "config.json");
  TilingOptions o = TilingOptions::from_config(config);
  // What predict_forward uses there (config.json tiny_test).
  const auto tiny = nlohmann::json::parse(test::read_file(test::reference_dir() / "config.json"))["tiny_test"];
  EXPECT_EQ(o.tile_size, tiny["internvl_tile_size"].get<int>());
  EXPECT_EQ(o.min_tiles, tiny["min_dynamic_patch_used_by_predict_forward"].get<int>());
  EXPECT_EQ(o.max_tiles, tiny["max_dynamic_patch_used_by_predict_forward"].get<int>());
  EXPECT_EQ(o.use_thumbnail, tiny["use_thumbnail"].get<bool>());
}

TEST(Tiling, PixelLimitAndBadInputNameTheImage) {
  TilingOptions options;
  options.max_pixels = 1000;
  try {
    tile_image(RgbImage(40, 30), options, "slice 12 of series 1.2.3");
    FAIL() << "image above the limit accepted";
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("slice 12 of series 1.2.3: 40x30 = 1200 pixels exceeds the limit of 1000"),
              std::string::npos)
        << e.what();
  }
  EXPECT_NO_THROW(tile_image(RgbImage(40, 25), options));  // exactly at the limit
  try {
    tile_image(RgbImage(), TilingOptions{});
    FAIL();
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("image: size 0x0 has no pixels"), std::string::npos) << e.what();
  }
  EXPECT_THROW(candidate_grids(0, 12), InferenceError);
  EXPECT_THROW(candidate_grids(5, 4), InferenceError);
  TilingOptions zero;
  zero.tile_size = 0;
  EXPECT_THROW(tile_image(RgbImage(4, 4), zero), InferenceError);
}

TEST(Tiling, ExtremeShapesTileWithinTheLimits) {
  TilingOptions options;
  for (auto [w, h] : {std::pair{1, 1}, {1, 4000}, {4000, 1}, {3, 2}}) {
    TiledImage t = tile_image(RgbImage(w, h), options);
    EXPECT_GE(t.grid.tiles(), 1);
    EXPECT_LE(t.grid.tiles(), 12);
    EXPECT_EQ(t.resized.width, t.grid.cols * 448);
    EXPECT_EQ(t.resized.height, t.grid.rows * 448);
  }
}

}  // namespace
}  // namespace unibiomed::inference
