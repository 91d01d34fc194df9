// The tiled SEG of a slide level, on the sample slide written by `unibiomed samples write`:
// dciodvfy clean, every frame placed by its Plane Position (Slide) onto the total pixel matrix
// by pydicom gives back the masks, empty tiles left out, and sources it cannot describe refused
// by name.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "seg-writer/slide_segmentation.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "seg-writer/part10_file.h"
#include "tests/support/test_support.h"
#include "tests/support/validators.h"

namespace unibiomed::seg {
namespace {

namespace fs = std::filesystem;

constexpr int kColumns = 1024, kRows = 768, kTile = 256;  // level 1 of the sample slide

struct SampleLevel {
  test::TempDir dir{"slide-seg"};
  DcmFileFormat file;
  fs::path path;
  SampleLevel() {
    const auto r =
        test::run_command({test::cli_path().string(), "samples", "write", dir.path().string(), "--only", "wsi"});
    if (r.exit_code != 0) throw std::runtime_error(r.output);
    path = dir.path() / "wsi" / "IM0002.dcm";
    if (file.loadFile(path.c_str()).bad()) throw std::runtime_error("cannot read " + path.string());
  }
};

Segment segment_of(const std::string& label, const std::function<bool(int, int)>& inside, bool all_tiles,
                   std::vector<uint8_t>& whole) {
  Segment s;
  s.description.label = label;
  s.description.tracking_uid = "";
  for (int f = 0; f < (kColumns / kTile) * (kRows / kTile); ++f) {
    const int x0 = (f % (kColumns / kTile)) * kTile, y0 = (f / (kColumns / kTile)) * kTile;
    FrameMask m;
    m.frame = size_t(f);
    m.binary.assign(size_t(kTile) * kTile, 0);
    bool any = false;
    for (int y = 0; y < kTile; ++y)
      for (int x = 0; x < kTile; ++x)
        if (inside(x0 + x, y0 + y)) {
          m.binary[size_t(y) * kTile + size_t(x)] = 1;
          whole[size_t(y0 + y) * kColumns + size_t(x0 + x)] = 1;
          any = true;
        }
    if (any || all_tiles) s.masks.push_back(std::move(m));
  }
  return s;
}

SlideTiles tiled_full_positions() {
  SlideTiles t;
  for (int f = 0; f < (kColumns / kTile) * (kRows / kTile); ++f)
    t.frame_positions.push_back({(f % (kColumns / kTile)) * kTile + 1, (f / (kColumns / kTile)) * kTile + 1});
  return t;
}

TEST(SlideSegmentation, TiledSparseSegOnTheLevelIsValidAndReadsBack) {
  ASSERT_TRUE(test::cli_missing_reason().empty()) << test::cli_missing_reason();
  SampleLevel level;
  const SourceImages sources({level.file.getDataset()});
  ASSERT_EQ(sources.frame_count(), 12u);
  std::vector<uint8_t> expected(size_t(2) * kColumns * kRows, 0);
  std::vector<uint8_t> first(expected.begin(), expected.begin() + kColumns * kRows), second = first;
  // An ellipse over eight tiles (every tile given, the empty ones too), a square in one tile.
  std::vector<Segment> segments;
  segments.push_back(segment_of(
      "Tumour", [](int x, int y) { return std::pow((x - 500) / 300.0, 2) + std::pow((y - 400) / 150.0, 2) <= 1; }, true,
      first));
  segments.push_back(segment_of(
      "Nucleus", [](int x, int y) { return x >= 900 && x < 950 && y >= 700 && y < 740; }, false, second));
  SegmentationOptions options;
  options.uid_seed = "slide-seg-test";
  options.algorithm.version = "test";
  auto written = write_slide_segmentation(sources, tiled_full_positions(), segments, options);
  ASSERT_TRUE(written);
  EXPECT_EQ(written->segmentation_type, "BINARY");
  EXPECT_EQ(written->frames_per_segment.at(0).size(), 8u);  // of 12 tiles given
  EXPECT_EQ(written->frames_per_segment.at(1).size(), 1u);
  EXPECT_EQ(written->number_of_frames, 9u);
  const fs::path out = level.dir / "seg.dcm";
  save_part10(*written->file, out);
  std::string report;
  const auto errors = test::dciodvfy_errors(out, &report);
  EXPECT_TRUE(errors.empty()) << report;
  std::copy(first.begin(), first.end(), expected.begin());
  std::copy(second.begin(), second.end(), expected.begin() + kColumns * kRows);
  test::write_file(level.dir / "expected.raw", std::string(expected.begin(), expected.end()));
  const auto check =
      test::run_command({"/usr/bin/python3", (test::source_dir() / "tests/writers/check_slide_seg.py").string(),
                         out.string(), (level.dir / "expected.raw").string(), "2"});
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find("OK 9 frames, 2 segments on 1024x768"), std::string::npos) << check.output;
  // The slide's identity and frame of reference, as the source states them.
  DcmDataset& ds = *written->file->getDataset();
  OFString value;
  ds.findAndGetOFString(DCM_ContainerIdentifier, value);
  EXPECT_EQ(value, "SYN-SLIDE-1");
  OFString source_for, seg_for;
  level.file.getDataset()->findAndGetOFString(DCM_FrameOfReferenceUID, source_for);
  ds.findAndGetOFString(DCM_FrameOfReferenceUID, seg_for);
  EXPECT_EQ(seg_for, source_for);
  EXPECT_FALSE(seg_for.empty());
}

TEST(SlideSegmentation, SourcesItCannotPlaceAreRefusedByName) {
  ASSERT_TRUE(test::cli_missing_reason().empty()) << test::cli_missing_reason();
  SampleLevel level;
  std::vector<uint8_t> whole(size_t(kColumns) * kRows, 0);
  const std::vector<Segment> segments{segment_of(
      "Tumour", [](int x, int y) { return x < 10 && y < 10; }, false, whole)};
  {
    const SourceImages sources({level.file.getDataset()});
    SlideTiles short_list = tiled_full_positions();
    short_list.frame_positions.pop_back();
    try {
      write_slide_segmentation(sources, short_list, segments, {});
      ADD_FAILURE() << "accepted 11 positions for 12 frames";
    } catch (const SegmentationError& e) {
      EXPECT_NE(std::string(e.what()).find("11 tile positions for 12 source frames"), std::string::npos) << e.what();
    }
  }
  for (const char* orientation : {"0\\0\\0\\0\\0\\0", "0\\-1\\0\\0\\-1\\0", "0\\-2\\0\\-1\\0\\0"}) {
    // All zeros (seen in the wild), parallel rows and columns, a vector that is not a unit one.
    SCOPED_TRACE(orientation);
    DcmDataset copy(*level.file.getDataset());
    ASSERT_TRUE(copy.putAndInsertString(DCM_ImageOrientationSlide, orientation).good());
    const SourceImages sources({&copy});
    try {
      write_slide_segmentation(sources, tiled_full_positions(), segments, {});
      ADD_FAILURE() << "accepted a slide whose orientation places no pixel";
    } catch (const SegmentationError& e) {
      EXPECT_NE(std::string(e.what()).find("ImageOrientationSlide (0048,0102) " + std::string(orientation)),
                std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("is not two orthogonal unit vectors"), std::string::npos) << e.what();
    }
  }
  delete level.file.getDataset()->remove(DCM_FrameOfReferenceUID);
  const SourceImages sources({level.file.getDataset()});
  try {
    write_slide_segmentation(sources, tiled_full_positions(), segments, {});
    ADD_FAILURE() << "accepted a slide without a frame of reference";
  } catch (const SegmentationError& e) {
    EXPECT_NE(std::string(e.what()).find("no FrameOfReferenceUID (0020,0052)"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace unibiomed::seg
