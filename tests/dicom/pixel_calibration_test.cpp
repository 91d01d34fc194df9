// The in-plane pixel size of classic images (dicom/pixel_calibration.h): Pixel Spacing, then
// Imager Pixel Spacing, then the ultrasound regions' calibration, with the reason when the
// regions give none; and the sample ultrasound cine, whose only scale is its region, read in mm.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/pixel_calibration.h"

#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "dicom/series.h"
#include "tests/dicom/dicom_edit.h"
#include "tests/dicom/sample_fixture.h"
#include "tests/support/test_support.h"

namespace unibiomed::dicom {
namespace {

namespace fs = std::filesystem;

// Appends one ultrasound region (PS3.3 C.8.5.5) with the given spatial format, physical units
// (3 = cm) and deltas (units per pixel).
// `bounds`: RegionLocationMinX0, MinY0, MaxX1, MaxY1, when given.
void add_region(DcmDataset& ds, Uint16 format, Uint16 units_x, Uint16 units_y, double dx, double dy,
                std::vector<Uint32> bounds = {}) {
  DcmItem* region = nullptr;
  ASSERT_TRUE(ds.findOrCreateSequenceItem(DCM_SequenceOfUltrasoundRegions, region, -2).good());
  const DcmTagKey corners[] = {DCM_RegionLocationMinX0, DCM_RegionLocationMinY0, DCM_RegionLocationMaxX1,
                               DCM_RegionLocationMaxY1};
  for (size_t k = 0; k < bounds.size() && k < 4; ++k) region->putAndInsertUint32(corners[k], bounds[k]);
  region->putAndInsertUint16(DCM_RegionSpatialFormat, format);
  region->putAndInsertUint16(DCM_RegionDataType, 1);
  region->putAndInsertUint16(DCM_PhysicalUnitsXDirection, units_x);
  region->putAndInsertUint16(DCM_PhysicalUnitsYDirection, units_y);
  region->putAndInsertFloat64(DCM_PhysicalDeltaX, dx);
  region->putAndInsertFloat64(DCM_PhysicalDeltaY, dy);
}

void expect_spacing(const PlaneSpacing& s, double rows, double columns, const std::string& source) {
  ASSERT_TRUE(s.spacing) << s.problem;
  EXPECT_NEAR((*s.spacing)[0], rows, 1e-12);
  EXPECT_NEAR((*s.spacing)[1], columns, 1e-12);
  EXPECT_EQ(s.source, source);
  EXPECT_EQ(s.problem, "");
}

TEST(PixelCalibration, PixelSpacingThenImagerPixelSpacingThenUltrasoundRegions) {
  DcmDataset ds;
  EXPECT_FALSE(plane_spacing(ds).spacing);
  EXPECT_EQ(plane_spacing(ds).problem, "");
  // A 2D tissue region in cm: rows are PhysicalDeltaY apart, columns PhysicalDeltaX.
  add_region(ds, 1, 3, 3, 0.03, 0.05);
  expect_spacing(plane_spacing(ds), 0.5, 0.3, "SequenceOfUltrasoundRegions (0018,6011)");
  // Imager Pixel Spacing comes before it, Pixel Spacing before both.
  test::put(ds, DCM_ImagerPixelSpacing, "0.2\\0.25");
  expect_spacing(plane_spacing(ds), 0.2, 0.25, "ImagerPixelSpacing (0018,1164)");
  // Corrected by the magnification factor where the image states a plausible one.
  test::put(ds, DCM_EstimatedRadiographicMagnificationFactor, "1.25");
  expect_spacing(plane_spacing(ds), 0.16, 0.2,
                 "ImagerPixelSpacing (0018,1164) / EstimatedRadiographicMagnificationFactor (0018,1114)");
  for (const char* implausible : {"0", "-1.2", "0.5", "40", "abc"}) {
    test::put(ds, DCM_EstimatedRadiographicMagnificationFactor, implausible);
    expect_spacing(plane_spacing(ds), 0.2, 0.25, "ImagerPixelSpacing (0018,1164)");
  }
  test::put(ds, DCM_EstimatedRadiographicMagnificationFactor, "1.25");
  test::put(ds, DCM_PixelSpacing, "0.7\\0.8");
  expect_spacing(plane_spacing(ds), 0.7, 0.8, "PixelSpacing (0028,0030)");
  // Values that are no size do not count: the next source speaks.
  test::put(ds, DCM_PixelSpacing, "0\\0");
  delete ds.remove(DCM_EstimatedRadiographicMagnificationFactor);
  expect_spacing(plane_spacing(ds), 0.2, 0.25, "ImagerPixelSpacing (0018,1164)");
  test::put(ds, DCM_ImagerPixelSpacing, "0.2");  // one value, not two
  expect_spacing(plane_spacing(ds), 0.5, 0.3, "SequenceOfUltrasoundRegions (0018,6011)");
}

TEST(PixelCalibration, UltrasoundRegionsAgreeOrSayWhyTheyGiveNoScale) {
  {
    // A negative delta (an axis running the other way) is a size all the same; an M-mode or
    // spectral region beside the 2D one has other units and is not looked at.
    DcmDataset ds;
    add_region(ds, 1, 3, 3, 0.04, -0.04);
    add_region(ds, 3, 4, 7, 0.01, 2.5);   // spectral Doppler: seconds and cm/s
    add_region(ds, 1, 3, 3, 0.04, 0.04);  // a colour-flow box over the same image, same scale
    expect_spacing(plane_spacing(ds), 0.4, 0.4, "SequenceOfUltrasoundRegions (0018,6011)");
  }
  {
    // Two 2D images side by side at different depths: no one scale for the image, but both
    // regions, each with its bounds, for the findings (mask_spacing).
    DcmDataset ds;
    add_region(ds, 1, 3, 3, 0.03, 0.03, {0, 10, 319, 479});
    add_region(ds, 1, 3, 3, 0.05, 0.05, {320, 10, 639, 479});
    const PlaneSpacing s = plane_spacing(ds);
    EXPECT_FALSE(s.spacing);
    EXPECT_EQ(s.problem,
              "its 2D ultrasound regions (SequenceOfUltrasoundRegions (0018,6011)) have different scales (0.3 x 0.3 mm "
              "and 0.5 x 0.5 mm per pixel)");
    ASSERT_EQ(s.regions.size(), 2u);
    EXPECT_EQ(s.regions[0].bounds, (std::array<long, 4>{0, 10, 319, 479}));
    EXPECT_EQ(s.regions[1].bounds, (std::array<long, 4>{320, 10, 639, 479}));
    EXPECT_EQ(s.regions[1].spacing, (std::array<double, 2>{0.5, 0.5}));
  }
  {
    // Bounds that are incomplete hold the whole image; bounds that are inverted hold nothing
    // (the region is left out).
    DcmDataset ds;
    add_region(ds, 1, 3, 3, 0.03, 0.03, {0, 10});
    add_region(ds, 1, 3, 3, 0.05, 0.05, {400, 10, 300, 479});
    const PlaneSpacing s = plane_spacing(ds);
    expect_spacing(s, 0.3, 0.3, "SequenceOfUltrasoundRegions (0018,6011)");
    ASSERT_EQ(s.regions.size(), 1u);
    EXPECT_FALSE(s.regions[0].bounds);
    // Only a region that holds nothing: said so, not taken for a missing scale.
    DcmDataset inverted;
    add_region(inverted, 1, 3, 3, 0.05, 0.05, {400, 10, 300, 479});
    const PlaneSpacing none = plane_spacing(inverted);
    EXPECT_FALSE(none.spacing);
    EXPECT_EQ(none.problem,
              "its 2D ultrasound regions (SequenceOfUltrasoundRegions (0018,6011)) calibrated in cm have bounds that "
              "hold no pixel (RegionLocationMinX0 after MaxX1, or MinY0 after MaxY1)");
  }
  {
    // A 2D region without physical units, or with zero deltas, states no size.
    DcmDataset ds;
    add_region(ds, 1, 0, 0, 1, 1);
    add_region(ds, 1, 3, 3, 0, 0);
    const PlaneSpacing s = plane_spacing(ds);
    EXPECT_FALSE(s.spacing);
    EXPECT_EQ(s.problem,
              "its 2D ultrasound regions (SequenceOfUltrasoundRegions (0018,6011)) state no size in cm per pixel");
  }
  {
    // Only a spectral region: nothing to say, there is no image region to measure in.
    DcmDataset ds;
    add_region(ds, 3, 4, 7, 0.01, 2.5);
    EXPECT_FALSE(plane_spacing(ds).spacing);
    EXPECT_EQ(plane_spacing(ds).problem, "");
  }
}

// A mask of `rows` x `columns` with the rectangle [x0, x1) x [y0, y1) inside.
std::vector<std::uint8_t> box_mask(long rows, long columns, long x0, long y0, long x1, long y1) {
  std::vector<std::uint8_t> mask(static_cast<size_t>(rows * columns), 0);
  for (long y = y0; y < y1; ++y)
    for (long x = x0; x < x1; ++x) mask[static_cast<size_t>(y * columns + x)] = 1;
  return mask;
}

TEST(PixelCalibration, AFindingIsMeasuredWithTheScaleOfTheRegionsItLiesIn) {
  const long rows = 100, columns = 200;
  auto region = [](std::array<long, 4> bounds, double mm) {
    CalibratedRegion r;
    r.bounds = bounds;
    r.spacing = {mm, mm};
    return r;
  };
  // Dual pane: the left image at 0.3 mm per pixel, the right one at 0.5 mm, a strip of
  // annotations above both; a colour box over the left one at its scale.
  const std::vector<CalibratedRegion> regions = {region({0, 10, 99, 99}, 0.3), region({100, 10, 199, 99}, 0.5),
                                                 region({20, 30, 60, 70}, 0.3)};
  auto scale_of = [&](long x0, long y0, long x1, long y1) {
    const auto mask = box_mask(rows, columns, x0, y0, x1, y1);
    return mask_spacing(regions, mask.data(), rows, columns);
  };
  auto expect_mm = [](const MaskSpacing& m, double mm) {
    ASSERT_TRUE(m.spacing) << m.problem;
    EXPECT_EQ(*m.spacing, (std::array<double, 2>{mm, mm}));
    EXPECT_EQ(m.problem, "");
  };
  expect_mm(scale_of(10, 20, 50, 60), 0.3);    // the left pane, partly under the colour box
  expect_mm(scale_of(120, 40, 180, 90), 0.5);  // the right pane
  // An outline a little past the left pane's edge (4 of 40 columns over it, 10 %) keeps the
  // scale; one more column does not.
  expect_mm(scale_of(64, 40, 104, 60), 0.3);
  const MaskSpacing across = scale_of(65, 40, 105, 60);
  EXPECT_FALSE(across.spacing);
  EXPECT_EQ(across.problem,
            "it spans 2D ultrasound regions of different scales (0.3 x 0.3 mm and 0.5 x 0.5 mm per pixel, "
            "SequenceOfUltrasoundRegions (0018,6011))");
  const MaskSpacing above = scale_of(10, 0, 50, 10);  // in the annotation strip
  EXPECT_FALSE(above.spacing);
  EXPECT_EQ(above.problem,
            "it lies outside the calibrated 2D ultrasound regions (SequenceOfUltrasoundRegions (0018,6011))");
  const MaskSpacing half = scale_of(10, 5, 50, 15);  // half above the left pane
  EXPECT_FALSE(half.spacing);
  EXPECT_EQ(half.problem,
            "50 % of it lies outside the calibrated 2D ultrasound regions (SequenceOfUltrasoundRegions (0018,6011))");
  // Regions of two scales over the same pixels: no telling which applies.
  const std::vector<CalibratedRegion> overlapping = {region({0, 0, 199, 99}, 0.3), region({0, 0, 99, 99}, 0.5)};
  const auto mask = box_mask(rows, columns, 10, 10, 50, 50);
  const MaskSpacing both = mask_spacing(overlapping, mask.data(), rows, columns);
  EXPECT_FALSE(both.spacing);
  EXPECT_EQ(
      both.problem,
      "it lies where 2D ultrasound regions of different scales overlap (SequenceOfUltrasoundRegions (0018,6011))");
  // A region without bounds holds the whole image; an empty mask has no scale and no problem.
  CalibratedRegion whole;
  whole.spacing = {0.2, 0.4};
  const MaskSpacing corner = mask_spacing({whole}, box_mask(rows, columns, 190, 90, 200, 100).data(), rows, columns);
  EXPECT_EQ(corner.spacing, (std::array<double, 2>{0.2, 0.4}));
  const MaskSpacing empty = mask_spacing(regions, box_mask(rows, columns, 0, 0, 0, 0).data(), rows, columns);
  EXPECT_FALSE(empty.spacing);
  EXPECT_EQ(empty.problem, "");
}

TEST(PixelCalibration, TheSampleUltrasoundCineIsMeasuredInMillimetres) {
  SeriesCollection c = read_series({test::sample_folder("us")});
  ASSERT_EQ(c.series.size(), 1u);
  ASSERT_EQ(c.series[0].instances.size(), 1u);
  const auto& frames = c.series[0].instances[0].frames();
  ASSERT_GT(frames.size(), 1u);
  for (const auto& f : frames) {
    ASSERT_TRUE(f.pixel_spacing);
    EXPECT_NEAR((*f.pixel_spacing)[0], 0.3, 1e-12);  // 0.03 cm per pixel
    EXPECT_NEAR((*f.pixel_spacing)[1], 0.3, 1e-12);
    // Its one region, over the whole image, is what a finding's scale is read from.
    ASSERT_EQ(f.calibration_regions.size(), 1u);
    const auto& layout = c.series[0].instances[0].pixels();
    EXPECT_EQ(f.calibration_regions[0].bounds, (std::array<long, 4>{0, 0, layout.columns - 1, layout.rows - 1}));
  }
}

TEST(PixelCalibration, CommandLineInspectShowsTheScaleAndTheUltrasoundRegions) {
  ASSERT_TRUE(fs::exists(test::cli_path())) << test::cli_missing_reason();
  test::TempDir dir("inspect-us");
  // The sample cine as a dual-pane image: its region replaced by two panes of two scales.
  test::edit_dicom(test::sample_file("us"), dir / "us" / "US0001.dcm", [](DcmDataset& ds) {
    delete ds.remove(DCM_SequenceOfUltrasoundRegions);
    add_region(ds, 1, 3, 3, 0.03, 0.03, {0, 0, 319, 479});
    add_region(ds, 1, 3, 3, 0.05, 0.05, {320, 0, 639, 479});
  });
  auto r = test::run_command({test::cli_path().string(), "dicom", "inspect", (dir / "us").string(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto json = nlohmann::json::parse(r.output);
  ASSERT_EQ(json["series"].size(), 1u);
  const auto& s = json["series"][0];
  EXPECT_FALSE(s.contains("pixel_spacing_mm")) << s.dump();
  EXPECT_NE(s["pixel_spacing_problem"].get<std::string>().find("have different scales"), std::string::npos)
      << s["pixel_spacing_problem"].get<std::string>();
  ASSERT_EQ(s["ultrasound_regions"].size(), 2u) << s.dump();
  EXPECT_EQ(s["ultrasound_regions"][1]["columns"], nlohmann::json({320, 639}));
  EXPECT_EQ(s["ultrasound_regions"][1]["spacing_mm"], nlohmann::json({0.5, 0.5}));
  r = test::run_command({test::cli_path().string(), "dicom", "inspect", (dir / "us").string()});
  EXPECT_NE(r.output.find("  ultrasound region: columns 0-319, rows 0-479, 0.3 x 0.3 mm per pixel\n"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("  ultrasound region: columns 320-639, rows 0-479, 0.5 x 0.5 mm per pixel\n"),
            std::string::npos)
      << r.output;
  // The sample as written: one region, the image's scale.
  r = test::run_command({test::cli_path().string(), "dicom", "inspect", test::sample_folder("us").string()});
  EXPECT_NE(r.output.find("  pixel size: 0.3 x 0.3 mm (SequenceOfUltrasoundRegions (0018,6011))\n"), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace unibiomed::dicom
