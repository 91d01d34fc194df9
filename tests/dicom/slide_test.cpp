// Whole-slide pyramids: levels of the sample slide, the tile iterator against the phantom,
// pixel data staying on disk while tiles are read, and a TILED_SPARSE level (positions per
// frame, frames out of order, tiles missing) that reads like its TILED_FULL original.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/slide.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "dicom/pixel_data.h"
#include "samples/phantom.h"
#include "tests/dicom/dicom_edit.h"
#include "tests/dicom/sample_fixture.h"

namespace unibiomed::dicom {
namespace {

namespace fs = std::filesystem;

Series slide_series(const std::vector<fs::path>& paths) {
  SeriesCollection c = read_series(paths);
  if (c.series.size() != 1) throw std::runtime_error("expected one series");
  return c.series.front();
}

// The sample slide's three instances (IM0001..IM0003) written to `dir` with `edit(i, dataset)`.
Series edited_slide(const fs::path& dir, const std::function<void(int, DcmDataset&)>& edit) {
  for (int i = 1; i <= 3; ++i)
    test::edit_dicom(test::sample_file("wsi", i), dir / ("IM000" + std::to_string(i) + ".dcm"),
                     [&](DcmDataset& ds) { edit(i, ds); });
  return slide_series({dir});
}

TEST(Slide, PyramidLevelsOfTheSampleSlide) {
  const Series series = slide_series({test::sample_folder("wsi")});
  SlidePyramid pyramid(series);
  ASSERT_EQ(pyramid.levels().size(), 3u);
  const int widths[] = {2048, 1024, 512};
  for (size_t l = 0; l < 3; ++l) {
    const SlideLevel& level = pyramid.levels()[l];
    EXPECT_EQ(level.total_columns, widths[l]);
    EXPECT_EQ(level.total_rows, widths[l] * 3 / 4);
    EXPECT_DOUBLE_EQ(level.downsample, double(1 << l));
    EXPECT_NEAR(level.mm_per_pixel_x, 0.00025 * (1 << l), 1e-12);
    EXPECT_EQ(level.dimension_organization, "TILED_FULL");
  }
  EXPECT_EQ(pyramid.level_for_resolution(0.00025), 0);
  EXPECT_EQ(pyramid.level_for_resolution(0.0005), 1);
  EXPECT_EQ(pyramid.level_for_resolution(0.002), 2);
  EXPECT_THROW(pyramid.tiles(3), DicomError);
}

TEST(Slide, TilesOneAtATimeMatchThePhantomAndStayOnDisk) {
  const Series series = slide_series({test::sample_folder("wsi")});
  SlidePyramid pyramid(series);
  const samples::Phantom phantom = samples::make_slide_tissue();
  auto iterator = pyramid.tiles(0);
  ASSERT_EQ(iterator.count(), 48u);  // 8 x 6 tiles of 256
  SlideTile tile;
  size_t n = 0;
  int worst = 0;
  const Instance* level0 = nullptr;
  while (iterator.next(tile)) {
    ++n;
    level0 = &series.instances[tile.ref.instance_index];
    ASSERT_EQ(tile.image.width, 256);
    for (int y = 0; y < tile.valid_rows; ++y)
      for (int x = 0; x < tile.valid_columns; ++x)
        for (int c = 0; c < 3; ++c) {
          const int expected =
              int(std::lround(phantom.values[phantom.index(tile.ref.x + x, tile.ref.y + y, 0) * 3 + size_t(c)]));
          worst =
              std::max(worst, std::abs(int(tile.image.rgb[(size_t(y) * 256 + size_t(x)) * 3 + size_t(c)]) - expected));
        }
    // Only the tile just decoded was read; the level's pixel data stays in the file.
    DcmElement* pixels = nullptr;
    ASSERT_TRUE(level0->dataset()->findAndGetElement(DCM_PixelData, pixels).good());
    ASSERT_FALSE(pixels->valueLoaded()) << "the whole level was loaded into memory";
  }
  EXPECT_EQ(n, 48u);
  EXPECT_EQ(worst, 0);
}

TEST(Slide, TiledSparseLevelReadsLikeItsTiledFullOriginal) {
  const fs::path original = test::sample_file("wsi", 2);  // level 1: 1024 x 768, 4 x 3 tiles
  test::TempDir dir("sparse");
  const fs::path sparse = dir / "IM0002.dcm";
  const int tile = 256, across = 4, down = 3;
  const std::vector<int> omitted = {0, 11};  // top-left and bottom-right corners: glass
  test::edit_dicom(original, sparse, [&](DcmDataset& ds) {
    const Uint8* pixels = nullptr;
    unsigned long length = 0;
    ds.findAndGetUint8Array(DCM_PixelData, pixels, &length);
    const size_t frame_bytes = size_t(tile) * tile * 3;
    std::vector<Uint8> reordered;
    for (int k = across * down - 1; k >= 0; --k) {  // reverse order
      if (std::find(omitted.begin(), omitted.end(), k) != omitted.end()) continue;
      reordered.insert(reordered.end(), pixels + size_t(k) * frame_bytes, pixels + size_t(k + 1) * frame_bytes);
      DcmItem* frame = nullptr;
      ds.findOrCreateSequenceItem(DCM_PerFrameFunctionalGroupsSequence, frame, -2);
      DcmItem* position = nullptr;
      frame->findOrCreateSequenceItem(DCM_PlanePositionSlideSequence, position, -2);
      test::put(*position, DCM_ColumnPositionInTotalImagePixelMatrix, std::to_string((k % across) * tile + 1));
      test::put(*position, DCM_RowPositionInTotalImagePixelMatrix, std::to_string((k / across) * tile + 1));
      test::put(*position, DCM_XOffsetInSlideCoordinateSystem, "20");
      test::put(*position, DCM_YOffsetInSlideCoordinateSystem, "40");
      test::put(*position, DCM_ZOffsetInSlideCoordinateSystem, "0");
    }
    ds.putAndInsertUint8Array(DCM_PixelData, reordered.data(), reordered.size());
    test::put(ds, DCM_NumberOfFrames, std::to_string(across * down - int(omitted.size())));
    test::put(ds, DCM_DimensionOrganizationType, "TILED_SPARSE");
  });
  const Series full = slide_series({original});
  const Series sparse_series = slide_series({sparse});
  SlidePyramid a(full), b(sparse_series);
  ASSERT_EQ(b.levels().size(), 1u);
  EXPECT_EQ(b.levels()[0].tiles.size(), 10u);
  EXPECT_EQ(b.levels()[0].dimension_organization, "TILED_SPARSE");
  RgbImage ra = a.read_region(0, 0, 0, 1024, 768);
  std::vector<SlideTileRef> used;
  RgbImage rb = b.read_region(0, 0, 0, 1024, 768, &used);
  EXPECT_EQ(used.size(), 10u);
  size_t differ_present = 0, white_missing = 0, missing = 0;
  for (int y = 0; y < 768; ++y)
    for (int x = 0; x < 1024; ++x) {
      const int k = (y / tile) * across + x / tile;
      const size_t i = (size_t(y) * 1024 + size_t(x)) * 3;
      if (std::find(omitted.begin(), omitted.end(), k) != omitted.end()) {
        ++missing;
        white_missing += rb.rgb[i] == 255 && rb.rgb[i + 1] == 255 && rb.rgb[i + 2] == 255;
      } else {
        differ_present += ra.rgb[i] != rb.rgb[i] || ra.rgb[i + 1] != rb.rgb[i + 1] || ra.rgb[i + 2] != rb.rgb[i + 2];
      }
    }
  EXPECT_EQ(differ_present, 0u);
  EXPECT_EQ(white_missing, missing);
  // A region straddling tiles, clipped at the matrix edge.
  RgbImage edge = b.read_region(0, 900, 700, 300, 300);
  EXPECT_EQ(edge.width, 124);
  EXPECT_EQ(edge.height, 68);
}

TEST(Slide, MissingTilePositionsAreReported) {
  const fs::path original = test::sample_file("wsi", 3);
  test::TempDir dir("nopos");
  const fs::path broken = dir / "IM0003.dcm";
  test::edit_dicom(original, broken, [](DcmDataset& ds) {
    test::put(ds, DCM_DimensionOrganizationType, "TILED_SPARSE");  // but no per-frame positions
  });
  const Series series = slide_series({broken});
  try {
    SlidePyramid pyramid(series);
    ADD_FAILURE() << "tiles without positions accepted";
  } catch (const DicomError& e) {
    EXPECT_NE(std::string(e.what()).find("PlanePositionSlideSequence (0048,021A)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("IM0003.dcm"), std::string::npos) << e.what();
  }
}

TEST(Slide, AnInstanceThatCannotBePlacedIsLeftOutOfThePyramid) {
  // The middle level without tile positions, the coarsest without a total pixel matrix: the
  // finest level is still read, and the pyramid says which instances it left out and why.
  test::TempDir dir("misplaced");
  const Series series = edited_slide(dir.path(), [](int i, DcmDataset& ds) {
    if (i == 2) test::put(ds, DCM_DimensionOrganizationType, "TILED_SPARSE");  // no per-frame positions
    if (i == 3) ds.findAndDeleteElement(DCM_TotalPixelMatrixColumns);
  });
  ASSERT_TRUE(series.modality.modality);
  SlidePyramid pyramid(series);
  ASSERT_EQ(pyramid.levels().size(), 1u);
  EXPECT_EQ(pyramid.levels()[0].total_columns, 2048);
  ASSERT_EQ(pyramid.problems().size(), 2u);
  EXPECT_NE(pyramid.problems()[0].find("IM0002.dcm: frame 1 has no position"), std::string::npos)
      << pyramid.problems()[0];
  EXPECT_NE(pyramid.problems()[1].find("IM0003.dcm: TotalPixelMatrixColumns (0048,0006)"), std::string::npos)
      << pyramid.problems()[1];
  EXPECT_NE(pyramid.problems()[1].find("(left out of the pyramid)"), std::string::npos);
}

TEST(Slide, ALabelImageFirstInTheSeriesDoesNotHideTheTissue) {
  // A converter that puts the label image into the pyramid's series, first by Instance Number:
  // the series is still a slide, and the label is left out of it.
  test::TempDir dir("label-first");
  const Series series = edited_slide(dir.path(), [](int i, DcmDataset& ds) {
    if (i == 3) {
      test::put(ds, DCM_ImageType, "ORIGINAL\\PRIMARY\\LABEL\\NONE");
      test::put(ds, DCM_InstanceNumber, "0");
    }
  });
  ASSERT_TRUE(series.modality.modality) << series.modality.reason;
  EXPECT_EQ(*series.modality.modality, ModelModality::Pathology);
  EXPECT_EQ(series.instances.size(), 2u);
  ASSERT_EQ(series.problems.size(), 1u);
  EXPECT_NE(series.problems[0].find("IM0003.dcm: a slide LABEL image (not tissue) (left out;"), std::string::npos)
      << series.problems[0];
  SlidePyramid pyramid(series);
  EXPECT_EQ(pyramid.levels().size(), 2u);
  EXPECT_TRUE(pyramid.problems().empty());
}

}  // namespace
}  // namespace unibiomed::dicom
