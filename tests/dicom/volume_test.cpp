// Series, slice stacks and volumes: the sample CT against its phantom and against ITK's own
// GDCM series reader, then every awkward geometry built from it (reordered files, mixed
// orientations, repeated positions, missing slices, gantry tilt, mixed sizes, enhanced
// multi-frame).
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/volume.h"

#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/dcmdata/dcvrobow.h>
#include <gtest/gtest.h>
#include <itkGDCMImageIO.h>
#include <itkGDCMSeriesFileNames.h>
#include <itkImageSeriesReader.h>

#include <cmath>

#include "dicom/volume_itk.h"
#include "samples/phantom.h"
#include "tests/dicom/dicom_edit.h"
#include "tests/dicom/sample_fixture.h"

namespace unibiomed::dicom {
namespace {

namespace fs = std::filesystem;
using test::edit_dicom;
using test::files_in;

// A copy (cheap: instances share their datasets), so that it may come from a temporary.
Series only_series(const SeriesCollection& c) {
  if (c.series.size() != 1) throw std::runtime_error("expected one series, got " + std::to_string(c.series.size()));
  return c.series.front();
}

bool has_note(const StackPlan& plan, const std::string& text) {
  for (const auto& n : plan.notes)
    if (n.find(text) != std::string::npos) return true;
  return false;
}

TEST(Volume, SampleCtMatchesItsPhantomAndGeometry) {
  SeriesCollection collection = read_series({test::sample_folder("ct")});
  ASSERT_TRUE(collection.problems.empty());
  const Series series = only_series(collection);
  ASSERT_TRUE(series.modality.modality);
  EXPECT_EQ(*series.modality.modality, ModelModality::CT);
  EXPECT_EQ(series.identity.body_part_examined, "ABDOMEN");
  EXPECT_EQ(series.study.patient_name, "Synthetic^Ada");
  ASSERT_EQ(series.instances.size(), 64u);

  StackPlan plan = plan_stacks(series);
  ASSERT_EQ(plan.stacks.size(), 1u) << plan.refused;
  EXPECT_TRUE(plan.notes.empty());
  const SliceStack& stack = plan.stacks.front();
  EXPECT_EQ(stack.slices.size(), 64u);
  EXPECT_NEAR(stack.slice_spacing, 2.5, 1e-6);
  EXPECT_NEAR(stack.row_spacing, 360.0 / 512, 1e-6);
  EXPECT_TRUE(stack.volume_problem.empty()) << stack.volume_problem;

  samples::CtAbdomenOptions options;
  options.pixel_spacing = 360.0 / 512;
  const samples::Phantom phantom = samples::make_ct_abdomen(options);
  Volume volume = load_volume(series, stack);
  ASSERT_EQ(volume.size, (std::array<int, 3>{512, 512, 64}));
  // Origin: the centre of the first voxel of the most inferior slice (phantom coordinates).
  const auto first = samples::position_mm(phantom, 0, 0, 0);
  for (int d = 0; d < 3; ++d) EXPECT_NEAR(volume.origin[size_t(d)], first[size_t(d)], 1e-3);
  EXPECT_EQ(volume.direction, (std::array<double, 9>{1, 0, 0, 0, 1, 0, 0, 0, 1}));
  long long max_error = 0;
  for (size_t i = 0; i < volume.voxels.size(); ++i) {
    const long expected = std::clamp(std::lround(phantom.values[i]) + 1024L, 0L, 4095L) - 1024L;
    max_error = std::max(max_error, (long long)std::llabs(std::lround(volume.voxels[i]) - expected));
  }
  EXPECT_EQ(max_error, 0) << "HU differ from the phantom by up to " << max_error;
  // The organs carry their textbook CT numbers (noise sd 10 HU).
  auto mean_in = [&](const std::string& label) {
    const uint8_t l = phantom.label_of(label);
    double sum = 0;
    size_t n = 0;
    for (size_t i = 0; i < volume.voxels.size(); ++i)
      if (phantom.labels[i] == l) sum += volume.voxels[i], ++n;
    return n ? sum / double(n) : 1e9;
  };
  EXPECT_NEAR(mean_in("liver"), 60, 2);
  EXPECT_NEAR(mean_in("spleen"), 45, 2);
  EXPECT_NEAR(mean_in("liver lesion"), 15, 2);
  EXPECT_GT(phantom.label_voxels(phantom.label_of("liver lesion")), 1000u);
}

TEST(Volume, SameVoxelsAndGeometryAsItksGdcmSeriesReader) {
  const fs::path folder = test::sample_folder("ct");
  using Reader = itk::ImageSeriesReader<ItkVolume>;
  auto names = itk::GDCMSeriesFileNames::New();
  names->SetDirectory(folder.string());
  auto reader = Reader::New();
  reader->SetImageIO(itk::GDCMImageIO::New());
  reader->SetFileNames(names->GetInputFileNames());
  reader->Update();
  ItkVolume::Pointer reference = reader->GetOutput();

  SeriesCollection collection = read_series({folder});
  const Series series = only_series(collection);
  ItkVolume::Pointer ours = to_itk_image(load_volume(series, plan_stacks(series).stacks.front()));
  ASSERT_EQ(ours->GetLargestPossibleRegion().GetSize(), reference->GetLargestPossibleRegion().GetSize());
  double max_geometry = 0;
  for (unsigned d = 0; d < 3; ++d) {
    max_geometry = std::max(max_geometry, std::fabs(ours->GetOrigin()[d] - reference->GetOrigin()[d]));
    max_geometry = std::max(max_geometry, std::fabs(ours->GetSpacing()[d] - reference->GetSpacing()[d]));
    for (unsigned c = 0; c < 3; ++c)
      max_geometry = std::max(max_geometry, std::fabs(ours->GetDirection()[d][c] - reference->GetDirection()[d][c]));
  }
  std::cout << "geometry max abs difference vs ITK: " << max_geometry << "\n";
  EXPECT_LT(max_geometry, 1e-4);
  const size_t n = ours->GetLargestPossibleRegion().GetNumberOfPixels();
  float max_error = 0;
  for (size_t i = 0; i < n; ++i)
    max_error = std::max(max_error, std::fabs(ours->GetBufferPointer()[i] - reference->GetBufferPointer()[i]));
  std::cout << "voxel max abs difference vs ITK: " << max_error << " HU\n";
  EXPECT_EQ(max_error, 0.f);
}

// `key` as an archive that did not know it passes it on (PS3.5 6.2.2): VR UN, the value as
// implicit VR little endian with explicit lengths (a sequence's items included).
void pass_on_as_unknown(DcmDataset& ds, const DcmTagKey& key) {
  DcmElement* e = nullptr;
  ASSERT_TRUE(ds.findAndGetElement(key, e).good()) << DcmTag(key).getTagName();
  const Uint32 length = e->calcElementLength(EXS_LittleEndianImplicit, EET_ExplicitLength);
  std::vector<Uint8> encoded(length);
  DcmOutputBufferStream out(encoded.data(), length);
  e->transferInit();
  ASSERT_TRUE(e->write(out, EXS_LittleEndianImplicit, EET_ExplicitLength, nullptr).good());
  e->transferEnd();
  void* written = nullptr;
  offile_off_t written_length = 0;
  out.flushBuffer(written, written_length);
  ASSERT_EQ(written_length, offile_off_t(length));
  auto* unknown = new DcmOtherByteOtherWord(DcmTag(key, EVR_UN));
  unknown->putUint8Array(encoded.data() + 8, length - 8);  // after the tag and length
  ds.insert(unknown, OFTrue);
}

class EditedCt : public ::testing::Test {
 protected:
  // Copies of the sample CT's first `count` slices into a fresh folder, each passed to `edit`
  // with its 0-based index.
  fs::path copy(const std::string& name, int count, const std::function<void(DcmDataset&, int)>& edit = {}) {
    const auto files = files_in(test::sample_folder("ct"));
    const fs::path folder = dir_.path() / name;
    for (int i = 0; i < count && i < int(files.size()); ++i) {
      edit_dicom(files[size_t(i)], folder / files[size_t(i)].filename(), [&](DcmDataset& ds) {
        if (edit) edit(ds, i);
      });
    }
    return folder;
  }
  test::TempDir dir_{"volume"};
};

TEST_F(EditedCt, OrderComesFromPositionsNotFileNamesOrInstanceNumbers) {
  const fs::path folder = copy("reordered", 12, [](DcmDataset& ds, int i) {
    test::put(ds, DCM_InstanceNumber, std::to_string(100 - i * 7 % 11));  // scrambled
  });
  const Series series = only_series(read_series({folder}));
  StackPlan plan = plan_stacks(series);
  ASSERT_EQ(plan.stacks.size(), 1u);
  const auto& slices = plan.stacks.front().slices;
  for (size_t k = 1; k < slices.size(); ++k) EXPECT_NEAR(slices[k].position - slices[k - 1].position, 2.5, 1e-6);
}

TEST_F(EditedCt, MixedOrientationsBecomeSeparateStacksWithANote) {
  const fs::path folder = copy("mixed", 12, [](DcmDataset& ds, int i) {
    if (i < 9) return;
    // Three coronal slices 3 mm apart along y (their normal).
    test::put(ds, DCM_ImageOrientationPatient, "1\\0\\0\\0\\0\\-1");
    test::put(ds, DCM_ImagePositionPatient, "-180\\" + std::to_string(-20 + 3 * i) + "\\60");
  });
  StackPlan plan = plan_stacks(only_series(read_series({folder})));
  ASSERT_EQ(plan.stacks.size(), 2u);
  EXPECT_TRUE(has_note(plan, "mixes 2 kinds of slices, one stack each: 9 slice(s) like "));
  // The note says what sets the other kind apart, and names a file of it.
  EXPECT_TRUE(has_note(plan, "; 3 with another ImageOrientationPatient like ")) << testing::PrintToString(plan.notes);
  EXPECT_TRUE(has_note(plan, "like " + folder.string())) << testing::PrintToString(plan.notes);
  EXPECT_EQ(plan.stacks[0].slices.size() + plan.stacks[1].slices.size(), 12u);
  EXPECT_NE(plan.stacks[0].label.find("axial"), std::string::npos);
  EXPECT_NE(plan.stacks[1].label.find("coronal"), std::string::npos);
}

TEST_F(EditedCt, RepeatedAcquisitionsAreSplitAndUnevenRepeatsRefused) {
  const fs::path first = copy("acq/1", 10);
  const fs::path second = copy("acq/2", 10, [](DcmDataset& ds, int i) {
    test::put(ds, DCM_SOPInstanceUID, test::get(ds, DCM_SOPInstanceUID) + ".2");
    test::put(ds, DCM_AcquisitionNumber, "2");
    test::put(ds, DCM_InstanceNumber, std::to_string(20 + i));
  });
  StackPlan plan = plan_stacks(only_series(read_series({first, second})));
  ASSERT_EQ(plan.stacks.size(), 2u);
  EXPECT_TRUE(has_note(plan, "occurs 2 times"));
  EXPECT_NE(plan.stacks[1].label.find("AcquisitionNumber 2"), std::string::npos) << plan.stacks[1].label;

  // Three positions repeated without anything telling the copies apart: no volume, a reason.
  const fs::path uneven = copy("uneven", 3, [](DcmDataset& ds, int) {
    test::put(ds, DCM_SOPInstanceUID, test::get(ds, DCM_SOPInstanceUID) + ".9");
  });
  StackPlan refused = plan_stacks(only_series(read_series({copy("base", 10), uneven})));
  EXPECT_TRUE(refused.stacks.empty());
  EXPECT_NE(refused.refused.find("repeat positions unevenly"), std::string::npos) << refused.refused;
}

TEST_F(EditedCt, MissingSlicesSplitTheStackAtTheGap) {
  const auto files = files_in(test::sample_folder("ct"));
  const fs::path folder = dir_.path() / "gap";
  for (int i = 0; i < 20; ++i) {
    if (i >= 8 && i < 12) continue;  // four slices missing
    edit_dicom(files[size_t(i)], folder / files[size_t(i)].filename(), [](DcmDataset&) {});
  }
  StackPlan plan = plan_stacks(only_series(read_series({folder})));
  ASSERT_EQ(plan.stacks.size(), 2u);
  EXPECT_EQ(plan.stacks[0].slices.size(), 8u);
  EXPECT_EQ(plan.stacks[1].slices.size(), 8u);
  EXPECT_TRUE(has_note(plan, "about 4 missing slices")) << (plan.notes.empty() ? "" : plan.notes.front());
}

TEST_F(EditedCt, GantryTiltIsMeasuredAndRefusedAsAVolume) {
  const double tilt = 20.0;
  const fs::path folder = copy("tilt", 10, [&](DcmDataset& ds, int i) {
    OFString x, y, z;
    ds.findAndGetOFString(DCM_ImagePositionPatient, x, 0);
    ds.findAndGetOFString(DCM_ImagePositionPatient, y, 1);
    ds.findAndGetOFString(DCM_ImagePositionPatient, z, 2);
    // Each slice shifted along y by its z distance times tan(tilt): the stack is sheared.
    const double shift = i * 2.5 * std::tan(tilt * M_PI / 180);
    char value[128];
    std::snprintf(value, sizeof value, "%s\\%.4f\\%s", x.c_str(), std::atof(y.c_str()) + shift, z.c_str());
    test::put(ds, DCM_ImagePositionPatient, value);
  });
  const Series series = only_series(read_series({folder}));
  StackPlan plan = plan_stacks(series);
  ASSERT_EQ(plan.stacks.size(), 1u);
  EXPECT_NEAR(plan.stacks[0].gantry_tilt_degrees, tilt, 0.05);
  EXPECT_NE(plan.stacks[0].volume_problem.find("gantry tilt of 20.0 degrees"), std::string::npos);
  try {
    load_volume(series, plan.stacks[0]);
    ADD_FAILURE() << "a tilted stack must not become a regular volume silently";
  } catch (const DicomError& e) {
    EXPECT_NE(std::string(e.what()).find("gantry tilt"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(series.identity.series_instance_uid), std::string::npos) << e.what();
  }
}

TEST_F(EditedCt, DifferentSizesBecomeSeparateStacks) {
  const fs::path folder = copy("sizes", 8, [](DcmDataset& ds, int i) {
    if (i < 6) return;
    // Keep every other row and column: a 256x256 slice with twice the pixel spacing.
    const Uint16* pixels = nullptr;
    ds.findAndGetUint16Array(DCM_PixelData, pixels);
    std::vector<Uint16> half(256 * 256);
    for (int y = 0; y < 256; ++y)
      for (int x = 0; x < 256; ++x) half[size_t(y * 256 + x)] = pixels[size_t(2 * y * 512 + 2 * x)];
    ds.putAndInsertUint16Array(DCM_PixelData, half.data(), half.size());
    test::put(ds, DCM_Rows, "256");
    test::put(ds, DCM_Columns, "256");
    test::put(ds, DCM_PixelSpacing, "1.40625\\1.40625");
  });
  const Series series = only_series(read_series({folder}));
  StackPlan plan = plan_stacks(series);
  ASSERT_EQ(plan.stacks.size(), 2u);
  EXPECT_EQ(plan.stacks[0].slices.size() + plan.stacks[1].slices.size(), 8u);
  for (const auto& stack : plan.stacks) {
    Volume v = load_volume(series, stack);
    EXPECT_EQ(v.size[0], stack.columns);
  }
}

TEST_F(EditedCt, EnhancedMultiframeGivesTheSameVolumeAsClassicSlices) {
  // Enhanced CT (PS3.3 A.38): one instance, geometry in functional groups, frames stored in
  // reverse order to prove that the positions decide.
  const auto files = files_in(test::sample_folder("ct"));
  const int n = 12;
  std::vector<Uint16> all;
  std::vector<std::string> positions;
  for (int i = n - 1; i >= 0; --i) {
    DcmFileFormat f;
    ASSERT_TRUE(f.loadFile(files[size_t(i)].c_str()).good());
    const Uint16* pixels = nullptr;
    f.getDataset()->findAndGetUint16Array(DCM_PixelData, pixels);
    all.insert(all.end(), pixels, pixels + 512 * 512);
    positions.push_back(test::get(*f.getDataset(), DCM_ImagePositionPatient));
  }
  const fs::path enhanced = dir_.path() / "enhanced" / "IM0001.dcm";
  edit_dicom(files[0], enhanced, [&](DcmDataset& ds) {
    test::put(ds, DCM_SOPClassUID, "1.2.840.10008.5.1.4.1.1.2.1");
    test::put(ds, DCM_NumberOfFrames, std::to_string(n));
    for (const auto& tag : {DCM_ImagePositionPatient, DCM_ImageOrientationPatient, DCM_PixelSpacing, DCM_SliceThickness,
                            DCM_RescaleIntercept, DCM_RescaleSlope})
      ds.findAndDeleteElement(tag);
    DcmItem* shared = nullptr;
    ds.findOrCreateSequenceItem(DCM_SharedFunctionalGroupsSequence, shared, -2);
    DcmItem* item = nullptr;
    shared->findOrCreateSequenceItem(DCM_PixelMeasuresSequence, item, -2);
    test::put(*item, DCM_PixelSpacing, "0.703125\\0.703125");
    test::put(*item, DCM_SliceThickness, "2.5");
    shared->findOrCreateSequenceItem(DCM_PlaneOrientationSequence, item, -2);
    test::put(*item, DCM_ImageOrientationPatient, "1\\0\\0\\0\\1\\0");
    shared->findOrCreateSequenceItem(DCM_PixelValueTransformationSequence, item, -2);
    test::put(*item, DCM_RescaleIntercept, "-1024");
    test::put(*item, DCM_RescaleSlope, "1");
    for (int f = 0; f < n; ++f) {
      DcmItem* frame = nullptr;
      ds.findOrCreateSequenceItem(DCM_PerFrameFunctionalGroupsSequence, frame, -2);
      frame->findOrCreateSequenceItem(DCM_PlanePositionSequence, item, -2);
      test::put(*item, DCM_ImagePositionPatient, positions[size_t(f)]);
    }
    ds.putAndInsertUint16Array(DCM_PixelData, all.data(), all.size());
  });
  const Series enhanced_series = only_series(read_series({enhanced.parent_path()}));
  ASSERT_EQ(enhanced_series.instances.size(), 1u);
  EXPECT_EQ(enhanced_series.frame_count(), size_t(n));
  StackPlan plan = plan_stacks(enhanced_series);
  ASSERT_EQ(plan.stacks.size(), 1u) << plan.refused;
  EXPECT_EQ(plan.stacks[0].slices.front().frame_number, n);  // stored last, lowest position
  Volume a = load_volume(enhanced_series, plan.stacks[0]);
  const Series classic = only_series(read_series({copy("classic", n)}));
  Volume b = load_volume(classic, plan_stacks(classic).stacks.front());
  EXPECT_EQ(a.size, b.size);
  EXPECT_EQ(a.origin, b.origin);
  EXPECT_EQ(a.voxels, b.voxels);

  // The same instance from an archive that did not know the functional groups: both sequences
  // are UN, their geometry is read all the same.
  const fs::path unknown = dir_.path() / "enhanced-un" / "IM0001.dcm";
  edit_dicom(enhanced, unknown, [](DcmDataset& ds) {
    pass_on_as_unknown(ds, DCM_SharedFunctionalGroupsSequence);
    pass_on_as_unknown(ds, DCM_PerFrameFunctionalGroupsSequence);
  });
  {
    DcmFileFormat check;
    ASSERT_TRUE(check.loadFile(unknown.c_str()).good());
    DcmElement* e = nullptr;
    ASSERT_TRUE(check.getDataset()->findAndGetElement(DCM_PerFrameFunctionalGroupsSequence, e).good());
    EXPECT_EQ(e->ident(), EVR_UN) << "DCMTK itself must not have read it as a sequence";
  }
  const Series unknown_series = only_series(read_series({unknown.parent_path()}));
  StackPlan unknown_plan = plan_stacks(unknown_series);
  ASSERT_EQ(unknown_plan.stacks.size(), 1u) << unknown_plan.refused;
  Volume c = load_volume(unknown_series, unknown_plan.stacks[0]);
  EXPECT_EQ(c.size, a.size);
  EXPECT_EQ(c.spacing, a.spacing);
  EXPECT_EQ(c.origin, a.origin);
  EXPECT_EQ(c.direction, a.direction);
  EXPECT_EQ(c.voxels, a.voxels);
}

TEST(Volume, PixelToPatientFollowsTheImagePlaneEquation) {
  FrameInfo frame;
  frame.image_position = Vec3{-100, -50, 20};
  frame.image_orientation = std::array<double, 6>{0, 1, 0, 0, 0, -1};  // sagittal
  frame.pixel_spacing = std::array<double, 2>{0.5, 0.8};               // rows 0.5 mm apart, columns 0.8
  const Vec3 p = pixel_to_patient(frame, 10, 4);
  EXPECT_DOUBLE_EQ(p[0], -100);
  EXPECT_DOUBLE_EQ(p[1], -50 + 10 * 0.8);
  EXPECT_DOUBLE_EQ(p[2], 20 - 4 * 0.5);
}

TEST(Volume, TwoDimensionalSeriesAreRefusedWithTheReason) {
  const Series series = only_series(read_series({test::sample_folder("xray")}));
  StackPlan plan = plan_stacks(series);
  EXPECT_TRUE(plan.stacks.empty());
  EXPECT_NE(plan.refused.find("ImagePositionPatient (0020,0032)"), std::string::npos) << plan.refused;
}

}  // namespace
}  // namespace unibiomed::dicom
