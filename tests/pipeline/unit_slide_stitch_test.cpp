// Stitching a slide's region masks: each pixel once (from the region whose core holds it), one
// finding for a lesion cut by several regions, pieces joined across tile edges and corners,
// measurements in mm with the level's spacing, only tiles with a mask pixel kept.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <stdexcept>

#include "pipeline/measurements.h"
#include "pipeline/slide_stitch.h"

namespace unibiomed::pipeline {
namespace {

// A level of 200 x 150 pixels in regions of 64 px overlapping by 16 (step 48), tiles of 16.
SlideGrid small_grid() {
  SlideGrid g;
  g.total_columns = 200;
  g.total_rows = 150;
  g.size = 64;
  g.overlap = 16;
  g.tile_size = 16;
  return g;
}

using Shape = std::function<bool(int x, int y)>;

// Every region of the grid, each given `shape` as the model would see it through the region.
void add_all(SlideStitcher& s, const Shape& shape, const std::string& phrase = "Lesion") {
  const SlideGrid& g = s.grid();
  const int step = g.size - g.overlap;
  for (int y = 0;; y += step) {
    for (int x = 0;; x += step) {
      const int w = std::min(g.size, g.total_columns - x), h = std::min(g.size, g.total_rows - y);
      std::vector<uint8_t> mask(size_t(w) * size_t(h)), probability(mask.size());
      for (int yy = 0; yy < h; ++yy)
        for (int xx = 0; xx < w; ++xx) {
          mask[size_t(yy) * size_t(w) + size_t(xx)] = shape(x + xx, y + yy);
          probability[size_t(yy) * size_t(w) + size_t(xx)] = shape(x + xx, y + yy) ? 204 : 10;
        }
      s.add(x, y, w, h, mask, probability, 0.75, phrase, phrase + " here.", "It is [SEG]. " + phrase + ".");
      if (x + g.size >= g.total_columns) break;
    }
    if (y + g.size >= g.total_rows) break;
  }
}

// The stitched labels as one image of the level.
std::vector<int32_t> whole(const SlideStitcher& s) {
  const SlideGrid& g = s.grid();
  std::vector<int32_t> out(size_t(g.total_columns) * size_t(g.total_rows), 0);
  for (int ty = 0; ty * g.tile_size < g.total_rows; ++ty)
    for (int tx = 0; tx * g.tile_size < g.total_columns; ++tx) {
      const auto& labels = s.tile_labels(tx, ty);
      if (labels.empty()) continue;
      for (int y = 0; y < g.tile_size; ++y)
        for (int x = 0; x < g.tile_size; ++x) {
          const int gx = tx * g.tile_size + x, gy = ty * g.tile_size + y;
          const int32_t l = labels[size_t(y) * size_t(g.tile_size) + size_t(x)];
          if (gx >= g.total_columns || gy >= g.total_rows) {
            EXPECT_EQ(l, 0) << "a label outside the level at " << gx << "," << gy;
            continue;
          }
          out[size_t(gy) * size_t(g.total_columns) + size_t(gx)] = l;
        }
    }
  return out;
}

TEST(SlideStitch, ALesionAcrossFourRegionsIsOneFindingCountedOnce) {
  SlideStitcher s(small_grid());
  // A disc of radius 20 centred where four regions (and their overlaps) meet.
  const Shape disc = [](int x, int y) { return std::hypot(x + 0.5 - 56, y + 0.5 - 52) <= 20; };
  add_all(s, disc);
  EXPECT_EQ(s.regions_added(), 12u);  // 4 x 3 regions
  const double spacing = 0.0005;      // mm per pixel (0.5 um)
  const auto found = s.components(spacing, spacing);
  ASSERT_EQ(found.size(), 1u);
  size_t expected = 0;
  std::vector<uint8_t> truth(200 * 150);
  for (int y = 0; y < 150; ++y)
    for (int x = 0; x < 200; ++x) expected += truth[size_t(y) * 200 + size_t(x)] = disc(x, y);
  EXPECT_EQ(found[0].pixels, expected);
  EXPECT_NEAR(found[0].area, double(expected) * spacing * spacing, 1e-15);
  EXPECT_EQ(found[0].box, (std::array<int, 4>{36, 32, 76, 72}));
  const auto labels = whole(s);
  for (size_t i = 0; i < labels.size(); ++i) ASSERT_EQ(labels[i] != 0, truth[i] != 0) << "pixel " << i;
  // The component on one region is the truth there.
  const auto region = s.component_mask(1, 48, 48, 64, 64);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x)
      ASSERT_EQ(region[size_t(y) * 64 + size_t(x)], truth[size_t(48 + y) * 200 + size_t(48 + x)]) << x << "," << y;
  EXPECT_EQ(s.component_mask(2, 48, 48, 64, 64), std::vector<uint8_t>(64 * 64, 0));
  // The long axis is the mask's own maximum Feret diameter.
  EXPECT_NEAR(found[0].long_axis, longest_diameter(truth, 200, 150, spacing, spacing).length, 1e-12);
  EXPECT_EQ(found[0].phrase, "Lesion");
  EXPECT_EQ(found[0].text, "Lesion here.");
  EXPECT_DOUBLE_EQ(found[0].label_agreement, 1.0);
  EXPECT_NEAR(found[0].mean_probability, 0.8, 1e-9);
  EXPECT_NEAR(found[0].mean_iou, 0.75, 1e-12);
  // Only the tiles the disc touches are held: x 36..75 -> tiles 2..4, y 32..71 -> tiles 2..4.
  EXPECT_EQ(s.tiles_held(), 9u);
  EXPECT_EQ(found[0].tiles.size(), 9u);
  EXPECT_EQ(found[0].tiles.front(), (std::pair<int, int>{2, 2}));
}

TEST(SlideStitch, EachPixelComesFromTheRegionWhoseCoreHoldsIt) {
  SlideStitcher s(small_grid());
  // Region (0, 0) sees a speck at x 55..57 (in its overlap band: its core ends at 56); region
  // (48, 0), whose core starts at 56, sees nothing there. Only the part in (0, 0)'s core stays.
  std::vector<uint8_t> left(64 * 64, 0), right(64 * 64, 0);
  for (int y = 10; y < 13; ++y)
    for (int x = 53; x < 58; ++x) left[size_t(y) * 64 + size_t(x)] = 1;
  s.add(0, 0, 64, 64, left, {}, 0.5, "A", "", "");
  s.add(48, 0, 64, 64, right, {}, 0.5, "B", "", "");
  const auto found = s.components(0, 0);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].pixels, 9u);  // columns 53..55 of 3 rows
  EXPECT_EQ(found[0].box, (std::array<int, 4>{53, 10, 56, 13}));
  EXPECT_DOUBLE_EQ(found[0].area, 9.0);  // pixels without a spacing
  EXPECT_EQ(found[0].phrase, "A");
  EXPECT_EQ(found[0].mean_probability, 0.0);
}

TEST(SlideStitch, PiecesJoinAcrossTileEdgesAndCornersAndAreOrderedBySize) {
  SlideStitcher s(small_grid());
  // A diagonal line of single pixels through a tile corner (15,15)-(16,16): one piece; a
  // 5x4 block far away; a 2x2 block: three pieces, largest first.
  const Shape shape = [](int x, int y) {
    if (x == y && x >= 10 && x < 22) return true;
    if (x >= 150 && x < 155 && y >= 100 && y < 104) return true;
    return x >= 100 && x < 102 && y >= 20 && y < 22;
  };
  add_all(s, shape);
  const auto found = s.components(0.001, 0.002);
  ASSERT_EQ(found.size(), 3u);
  EXPECT_EQ(found[0].pixels, 20u);
  EXPECT_EQ(found[0].label, 1);
  EXPECT_EQ(found[1].pixels, 12u);
  EXPECT_EQ(found[1].box, (std::array<int, 4>{10, 10, 22, 22}));
  EXPECT_EQ(found[2].pixels, 4u);
  // Anisotropic pixels: the 5x4 block's long axis is its diagonal in mm.
  EXPECT_NEAR(found[0].long_axis, std::hypot(5 * 0.001, 4 * 0.002), 1e-12);
  EXPECT_NEAR(found[0].area, 20 * 0.001 * 0.002, 1e-15);
  const auto labels = whole(s);
  EXPECT_EQ(labels[size_t(15) * 200 + 15], 2);
  EXPECT_EQ(labels[size_t(16) * 200 + 16], 2);
  EXPECT_EQ(labels[size_t(100) * 200 + 150], 1);
  EXPECT_EQ(labels[size_t(20) * 200 + 100], 3);
  // Several pieces at once (one finding made of them): exactly the pixels of either, none of the
  // third.
  const auto both = s.components_mask({1, 3}, 0, 0, 200, 150);
  size_t in_both = 0;
  for (size_t i = 0; i < both.size(); ++i) {
    ASSERT_EQ(both[i] != 0, labels[i] == 1 || labels[i] == 3) << "pixel " << i;
    in_both += both[i];
  }
  EXPECT_EQ(in_both, size_t(found[0].pixels + found[2].pixels));
}

TEST(SlideStitch, BadGridsRegionsAndMasksAreRefusedNamingThem) {
  SlideGrid g = small_grid();
  g.overlap = 40;
  try {
    SlideStitcher bad(g);
    ADD_FAILURE() << "an overlap over half the region was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("overlap 40"), std::string::npos) << e.what();
  }
  g = small_grid();
  g.tile_size = 12;
  EXPECT_THROW(SlideStitcher{g}, std::invalid_argument);
  SlideStitcher s(small_grid());
  std::vector<uint8_t> mask(64 * 64, 1);
  try {
    s.add(50, 0, 64, 64, mask, {}, 0, "", "", "");
    ADD_FAILURE() << "a region off the grid was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("slide region at (50, 0) is not on the grid"), std::string::npos) << e.what();
  }
  try {
    s.add(144, 0, 64, 64, mask, {}, 0, "", "", "");  // the last column is 56 px wide
    ADD_FAILURE() << "a region of the wrong size was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("64x64 is not the grid's region size"), std::string::npos) << e.what();
  }
  try {
    s.add(0, 0, 64, 64, std::vector<uint8_t>(100, 1), {}, 0, "", "", "");
    ADD_FAILURE() << "a short mask was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("mask of 100 values for 64x64"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace unibiomed::pipeline
