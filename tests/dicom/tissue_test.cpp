// Tissue detection on the sample slide's coarsest level against the phantom's own label map,
// and the regions over tissue: overlap, clipping, order, and the glass left out.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/tissue.h"

#include <gtest/gtest.h>

#include <set>

#include "dicom/view.h"
#include "samples/phantom.h"
#include "tests/dicom/dicom_test_support.h"
#include "tests/dicom/sample_fixture.h"

namespace unibiomed::dicom {
namespace {

Series slide_series() {
  SeriesCollection c = read_series({test::sample_folder("wsi")});
  if (c.series.size() != 1) throw std::runtime_error("expected one slide series");
  return c.series.front();
}

// Phantom tissue (label > 0) inside [x0, x1) x [y0, y1) of level 0, clipped.
bool phantom_tissue(const samples::Phantom& p, int x0, int y0, int x1, int y1) {
  for (int y = std::max(0, y0); y < std::min(p.rows, y1); ++y)
    for (int x = std::max(0, x0); x < std::min(p.columns, x1); ++x)
      if (p.labels[p.index(x, y, 0)] > 0) return true;
  return false;
}

TEST(Tissue, MapOnTheCoarsestLevelMatchesThePhantom) {
  const Series series = slide_series();
  const SlidePyramid pyramid(series);
  ASSERT_EQ(pyramid.levels().size(), 3u);
  const TissueMap map = detect_tissue(pyramid);
  EXPECT_EQ(map.level, 2);
  EXPECT_EQ(map.level_columns, 512);
  EXPECT_EQ(map.level_rows, 384);
  EXPECT_EQ(map.cell_size, 1);  // 512 px fit in 512 cells
  ASSERT_EQ(map.tissue.size(), size_t(512 * 384));
  const samples::Phantom phantom = samples::make_slide_tissue();
  // Each cell covers 4x4 level-0 pixels: compare with the phantom's labels there.
  size_t agree = 0, tissue_cells = 0;
  for (int cy = 0; cy < map.rows; ++cy)
    for (int cx = 0; cx < map.columns; ++cx) {
      const bool truth = phantom_tissue(phantom, cx * 4, cy * 4, cx * 4 + 4, cy * 4 + 4);
      agree += truth == map.at(cx, cy);
      tissue_cells += map.at(cx, cy);
    }
  EXPECT_GT(double(agree) / double(map.tissue.size()), 0.995);
  EXPECT_GT(tissue_cells, map.tissue.size() / 3);       // the section covers most of the slide
  EXPECT_LT(tissue_cells, map.tissue.size() * 9 / 10);  // and the corners are glass
  EXPECT_FALSE(map.at(0, 0));
  EXPECT_FALSE(map.at(511, 383));

  // A coarser map of the same level (cells of 4 px): the same tissue, fewer cells.
  TissueOptions coarse;
  coarse.max_cells = 128;
  const TissueMap small = detect_tissue(pyramid, coarse);
  EXPECT_EQ(small.cell_size, 4);
  EXPECT_EQ(small.columns, 128);
  EXPECT_EQ(small.rows, 96);
  EXPECT_NEAR(double(small.tissue_cells()) * 16 / double(tissue_cells), 1.0, 0.05);
}

TEST(Tissue, RegionsOverTissueOnlyWithOverlapInRowMajorOrder) {
  const Series series = slide_series();
  const SlidePyramid pyramid(series);
  const TissueMap map = detect_tissue(pyramid);
  const RegionGrid grid = tissue_regions(pyramid, map, 0, 512, 64);
  // Step 448: x at 0, 448, 896, 1344, 1792 (clipped to 256 px), y at 0, 448, 896, 1344 (192 px).
  EXPECT_EQ(grid.grid_columns, 5);
  EXPECT_EQ(grid.grid_rows, 4);
  ASSERT_FALSE(grid.regions.empty());
  EXPECT_LT(grid.regions.size(), 20u) << "the glass corners are left out";
  const samples::Phantom phantom = samples::make_slide_tissue();
  std::set<std::pair<int, int>> kept;
  for (size_t i = 0; i < grid.regions.size(); ++i) {
    const auto& [x, y, w, h] = grid.regions[i];
    kept.insert({x, y});
    EXPECT_EQ(x % 448, 0);
    EXPECT_EQ(y % 448, 0);
    EXPECT_EQ(w, std::min(512, 2048 - x));
    EXPECT_EQ(h, std::min(512, 1536 - y));
    // Over tissue, give or take one cell (4 px) and the closing (another cell).
    EXPECT_TRUE(phantom_tissue(phantom, x - 8, y - 8, x + w + 8, y + h + 8)) << x << "," << y;
    if (i > 0) {
      const auto& p = grid.regions[i - 1];
      EXPECT_TRUE(p[1] < y || (p[1] == y && p[0] < x)) << "row-major order";
    }
  }
  for (int y = 0; y < 1536; y += 448)
    for (int x = 0; x < 2048; x += 448)
      if (!kept.count({x, y})) {
        EXPECT_FALSE(phantom_tissue(phantom, x, y, x + 512, y + 512)) << "tissue left out at " << x << "," << y;
      }

  // plan_views cuts the same regions and says how many lie over tissue; the same twice.
  RenderOptions options;
  options.slide_level = 0;
  options.slide_region_size = 512;
  options.slide_region_overlap = 64;
  std::string note;
  const auto requests = plan_views(series, options, &note);
  ASSERT_EQ(requests.size(), grid.regions.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(requests[i].slide_region->x, grid.regions[i][0]);
    EXPECT_EQ(requests[i].slide_region->y, grid.regions[i][1]);
  }
  EXPECT_EQ(note.rfind(std::to_string(grid.regions.size()) + " of 20 regions of 512 px (overlap 64)", 0), 0u) << note;
  const auto again = plan_views(series, options);
  ASSERT_EQ(again.size(), requests.size());
  for (size_t i = 0; i < again.size(); ++i) EXPECT_EQ(again[i].slide_region->x, requests[i].slide_region->x);
}

TEST(Tissue, BadGridsAreRefusedNamingTheValue) {
  const Series series = slide_series();
  const SlidePyramid pyramid(series);
  const TissueMap map = detect_tissue(pyramid);
  try {
    tissue_regions(pyramid, map, 0, 512, 300);
    ADD_FAILURE() << "an overlap over half the region was accepted";
  } catch (const DicomError& e) {
    EXPECT_NE(std::string(e.what()).find("overlap 300"), std::string::npos) << e.what();
  }
  try {
    tissue_regions(pyramid, map, 3, 512, 0);
    ADD_FAILURE() << "a level that does not exist was accepted";
  } catch (const DicomError& e) {
    EXPECT_NE(std::string(e.what()).find("slide level 3 does not exist"), std::string::npos) << e.what();
  }
  TissueOptions bad;
  bad.max_cells = 0;
  EXPECT_THROW(detect_tissue(pyramid, bad), DicomError);
}

}  // namespace
}  // namespace unibiomed::dicom
