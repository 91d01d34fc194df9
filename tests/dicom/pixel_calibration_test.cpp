// The in-plane pixel size of classic images (dicom/pixel_calibration.h): Pixel Spacing, then
// Imager Pixel Spacing, then the ultrasound regions' calibration, with the reason when the
// regions give none; and the sample ultrasound cine, whose only scale is its region, read in mm.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/pixel_calibration.h"

#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <gtest/gtest.h>

#include "dicom/series.h"
#include "tests/dicom/dicom_edit.h"
#include "tests/dicom/sample_fixture.h"

namespace unibiomed::dicom {
namespace {

// Appends one ultrasound region (PS3.3 C.8.5.5) with the given spatial format, physical units
// (3 = cm) and deltas (units per pixel).
void add_region(DcmDataset& ds, Uint16 format, Uint16 units_x, Uint16 units_y, double dx, double dy) {
  DcmItem* region = nullptr;
  ASSERT_TRUE(ds.findOrCreateSequenceItem(DCM_SequenceOfUltrasoundRegions, region, -2).good());
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
    // Two 2D images side by side at different depths: a finding could lie in either.
    DcmDataset ds;
    add_region(ds, 1, 3, 3, 0.03, 0.03);
    add_region(ds, 1, 3, 3, 0.05, 0.05);
    const PlaneSpacing s = plane_spacing(ds);
    EXPECT_FALSE(s.spacing);
    EXPECT_EQ(s.problem,
              "its 2D ultrasound regions (SequenceOfUltrasoundRegions (0018,6011)) have different scales (0.3 x 0.3 mm "
              "and 0.5 x 0.5 mm per pixel), and a finding could lie in either");
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
  }
}

}  // namespace
}  // namespace unibiomed::dicom
