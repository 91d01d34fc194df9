// The Segmentation writer on real readers: every written file passes dciodvfy without errors,
// and dcmjs (as OHIF decodes SEG, incl. the Cornerstone adapter) and pydicom read back exactly
// the masks that were written, for frame sizes that are and are not multiples of 8 (the DCMTK
// 3.6.7 packing bug), a multi-frame source, 10 segments over 300 frames, and pydicom's CT/MR.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmiod/cielabutil.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>

#include "seg-writer/binary_frame_packing.h"
#include "seg-writer/part10_file.h"
#include "seg-writer/segmentation_writer.h"
#include "sr-writer/finding_geometry.h"
#include "tests/support/test_support.h"
#include "tests/writers/synthetic_series.h"

namespace unibiomed::seg {
namespace {

using test::TempDir;

std::string get(DcmItem& item, const DcmTagKey& tag) {
  OFString v;
  item.findAndGetOFStringArray(tag, v);
  return v.c_str();
}

Segment segment(const std::string& label, std::vector<FrameMask> masks, RgbColour colour = {255, 0, 0}) {
  Segment s;
  s.description.label = label;
  s.description.colour = colour;
  s.description.algorithm.version = "0.1.0";
  s.description.algorithm.parameters = "weights sha256 0123abcd";
  s.masks = std::move(masks);
  return s;
}

FrameMask binary_mask(size_t frame, std::vector<std::uint8_t> values) {
  FrameMask m;
  m.frame = frame;
  m.binary = std::move(values);
  return m;
}

// Writes the SEG and runs every reader on it. `source_files` enables the Cornerstone adapter.
struct CheckedSeg {
  WrittenSegmentation written;
  std::filesystem::path path;
};

CheckedSeg write_and_check(const TempDir& dir, const std::string& name, const SourceImages& sources,
                           const std::vector<Segment>& segments, const std::vector<std::filesystem::path>& source_files,
                           SegmentationOptions options = {}) {
  auto written = write_segmentation(sources, segments, options);
  EXPECT_TRUE(written.has_value());
  CheckedSeg out{std::move(*written), dir / (name + "-seg.dcm")};
  save_part10(*out.written.file, out.path);

  std::string dciodvfy_output;
  const auto errors = test::dciodvfy_errors(out.path, &dciodvfy_output);
  EXPECT_TRUE(errors.empty()) << name << ": dciodvfy reports errors:\n" << dciodvfy_output;

  const auto expected = dir / (name + "-expected.json");
  test::write_file(expected, test::expected_masks_json(sources, segments, out.written.tracking_uids));
  EXPECT_EQ(test::dcmjs_missing_reason(), "");
  std::vector<std::string> node{test::node_program(), (test::js_dir() / "check_seg.js").string(), out.path.string(),
                                expected.string()};
  if (!source_files.empty()) {
    node.push_back("--adapter");
    for (const auto& f : source_files) node.push_back(f.string());
  }
  const auto js = test::run_command(node);
  EXPECT_EQ(js.exit_code, 0) << name << ": dcmjs disagrees:\n" << js.output;
  const auto py =
      test::run_command({"/usr/bin/python3", (test::source_dir() / "tests/writers/check_seg_pydicom.py").string(),
                         out.path.string(), expected.string()});
  EXPECT_EQ(py.exit_code, 0) << name << ": pydicom disagrees:\n" << py.output;
  std::cout << "  " << name << ": dcmjs: " << js.output << "  " << name << ": pydicom: " << py.output;
  return out;
}

// Two segments that do not overlap: random pixels, and random pixels where the first is empty.
std::vector<Segment> two_disjoint_segments(const SourceImages& sources, std::uint32_t seed) {
  std::vector<FrameMask> first, second;
  for (size_t f = 0; f < sources.frame_count(); ++f) {
    auto a = test::random_mask(sources.rows(), sources.columns(), seed + static_cast<std::uint32_t>(f), 0.4);
    auto b = test::random_mask(sources.rows(), sources.columns(), seed + 100 + static_cast<std::uint32_t>(f), 0.5);
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i]) b[i] = 0;
    first.push_back(binary_mask(f, a));
    second.push_back(binary_mask(f, b));
  }
  return {segment("Lesion", first), segment("Liver", second, {0, 200, 80})};
}

TEST(SegmentationWriter, FramesThatAreNotMultiplesOf8BitsRoundTripExactly) {
  TempDir dir("seg-odd");
  // 5x5 and 7x9 are where DCMTK 3.6.7 corrupts frames 2-3 (DICOM-OUTPUT.md); 16x16 and 8x3 are
  // byte-aligned for comparison; 13x11 leaves a different remainder.
  const std::vector<std::array<unsigned, 3>> sizes{{5, 5, 3}, {9, 7, 3}, {13, 11, 4}, {16, 16, 3}, {3, 8, 2}};
  for (const auto& [rows, columns, frames] : sizes) {
    test::SeriesSpec spec;
    spec.rows = rows;
    spec.columns = columns;
    spec.frames = frames;
    spec.name = "odd-" + std::to_string(rows) + "x" + std::to_string(columns);
    auto series = test::make_series(spec);
    auto files = series.save(dir.path(), spec.name);
    SourceImages sources(series.datasets());
    auto segments = two_disjoint_segments(sources, rows * 31 + columns);
    // BINARY asked for explicitly: the writer's own bit packing, whatever the frame size.
    SegmentationOptions binary;
    binary.type = SegmentationOptions::Type::Binary;
    auto checked = write_and_check(dir, spec.name, sources, segments, files, binary);
    EXPECT_EQ(checked.written.number_of_frames, 2u * frames) << spec.name;
    EXPECT_EQ(checked.written.segmentation_type, "BINARY") << spec.name;
    EXPECT_EQ(get(*checked.written.file->getDataset(), DCM_SegmentationType), "BINARY") << spec.name;
    EXPECT_FALSE(checked.written.segments_overlap);
  }
}

TEST(SegmentationWriter, AutomaticFormIsBinaryOnlyWhenEveryFrameStartsOnAByte) {
  // The default form: BINARY when Rows x Columns is a multiple of 8; otherwise FRACTIONAL
  // OCCUPANCY with only 0 and 255, which OHIF 3.13.2 draws exactly (it misreads binary frames
  // that begin mid-byte). Every reader must get the same masks either way, including an odd
  // number of frames (odd packed lengths are what OHIF rejects in binary form).
  TempDir dir("seg-automatic");
  // 2 x frames - 1 SEG frames (odd), plus the padding frame when their bytes are odd: 75x75, 5x5
  // and 13x11 fractional, 3x8 and 9x8 binary (3 and 9 bytes a frame); not 16x16 (32 bytes) nor
  // 9x7 with one source frame (two SEG frames).
  const std::vector<std::array<unsigned, 3>> sizes{{75, 75, 4}, {5, 5, 3}, {9, 7, 1}, {13, 11, 4}, {16, 16, 3},
                                                   {3, 8, 2},   {9, 8, 3}};
  for (const auto& [rows, columns, frames] : sizes) {
    test::SeriesSpec spec;
    spec.rows = rows;
    spec.columns = columns;
    spec.frames = frames;
    spec.name = "auto-" + std::to_string(rows) + "x" + std::to_string(columns) + "x" + std::to_string(frames);
    auto series = test::make_series(spec);
    auto files = series.save(dir.path(), spec.name);
    SourceImages sources(series.datasets());
    auto segments = two_disjoint_segments(sources, rows * 17 + columns + frames);
    // An odd number of SEG frames: the second segment leaves out the first source frame.
    if (frames > 1) segments[1].masks.erase(segments[1].masks.begin());
    const size_t written_frames = 2u * frames - (frames > 1 ? 1 : 0);
    const bool aligned = (rows * columns) % 8 == 0;
    EXPECT_EQ(automatic_type(rows, columns),
              aligned ? SegmentationOptions::Type::Binary : SegmentationOptions::Type::Fractional)
        << spec.name;
    auto checked = write_and_check(dir, spec.name, sources, segments, files);
    DcmDataset& ds = *checked.written.file->getDataset();
    // An odd byte length would need a padding byte, which OHIF cannot split into frames: one
    // empty frame of the last segment is added instead, and the length is a whole number of frames.
    const size_t frame_bytes = aligned ? rows * columns / 8 : rows * columns;
    const bool padded = written_frames > 1 && (written_frames * frame_bytes) % 2 == 1;
    EXPECT_EQ(checked.written.padding_frame, padded ? written_frames + 1 : 0u) << spec.name;
    const size_t seg_frames = written_frames + (padded ? 1 : 0);
    if (padded) {
      // The empty frame belongs to the second segment, on the source frame it has none on.
      EXPECT_EQ(checked.written.frames_per_segment[1].back(), 0u) << spec.name;
      const Uint8* all = nullptr;
      unsigned long length = 0;
      ASSERT_TRUE(ds.findAndGetUint8Array(DCM_PixelData, all, &length).good());
      for (size_t b = (seg_frames - 1) * frame_bytes; b < length; ++b) ASSERT_EQ(all[b], 0) << spec.name << " byte " << b;
    }
    EXPECT_EQ(checked.written.number_of_frames, seg_frames) << spec.name;
    EXPECT_EQ(checked.written.segmentation_type, aligned ? "BINARY" : "FRACTIONAL") << spec.name;
    EXPECT_EQ(get(ds, DCM_SegmentationType), aligned ? "BINARY" : "FRACTIONAL") << spec.name;
    const Uint8* values = nullptr;
    unsigned long count = 0;
    ASSERT_TRUE(ds.findAndGetUint8Array(DCM_PixelData, values, &count).good()) << spec.name;
    if (aligned) {
      EXPECT_EQ(get(ds, DCM_BitsAllocated), "1") << spec.name;
      EXPECT_FALSE(ds.tagExists(DCM_SegmentationFractionalType)) << spec.name;
      EXPECT_EQ(count, seg_frames * frame_bytes) << spec.name;
      EXPECT_EQ(count % 2, 0u) << spec.name;
      continue;
    }
    EXPECT_EQ(checked.written.fractional_type, "OCCUPANCY") << spec.name;
    EXPECT_EQ(get(ds, DCM_SegmentationFractionalType), "OCCUPANCY") << spec.name;
    EXPECT_EQ(get(ds, DCM_MaximumFractionalValue), "255") << spec.name;
    EXPECT_EQ(get(ds, DCM_BitsAllocated), "8") << spec.name;
    const size_t pixels = seg_frames * rows * columns;
    ASSERT_EQ(count, pixels) << spec.name;
    EXPECT_EQ(count % 2, 0u) << spec.name;
    // Only 0 and the maximum: OHIF ignores a fractional SEG with any other value.
    size_t inside = 0;
    for (size_t i = 0; i < pixels; ++i) {
      ASSERT_TRUE(values[i] == 0 || values[i] == 255) << spec.name << ": value " << int(values[i]) << " at " << i;
      inside += values[i] == 255;
    }
    EXPECT_GT(inside, 0u) << spec.name;
  }
}

TEST(SegmentationWriter, OddLengthsWhenTheLastSegmentOrEverySegmentCoversEverySourceFrame) {
  // The empty frame that keeps an odd byte length even goes to the last segment that has a free
  // source frame. With none free (each segment on every source frame, e.g. one finding on a
  // 3-slice series), the automatic form of byte-aligned frames of an odd byte count is the
  // fractional one, whose frames are an even number of bytes; unaligned frames stay fractional
  // with a padding byte, which OHIF draws after fetching the frames one by one (8-bit frames
  // Orthanc serves); BINARY asked for explicitly is padded. Every reader gets the same masks.
  TempDir dir("seg-odd-full");
  struct Case {
    unsigned rows, columns, frames;
    bool first_segment_has_a_gap;  // else: one segment on every frame
    SegmentationOptions::Type type;
    std::string form;      // expected SegmentationType
    size_t padding_frame;  // expected (1-based), 0 = none
    size_t pixel_bytes;    // expected length of Pixel Data
  };
  using T = SegmentationOptions::Type;
  const std::vector<Case> cases{
      // 2 segments x 3 frames less one of the first segment: 5 frames of 25 bytes, padded by an
      // empty frame of the first segment (the last one has no free source frame).
      {5, 5, 3, true, T::Automatic, "FRACTIONAL", 6, 6 * 25},
      // 9x8 binary (9 bytes a frame), the same layout: the padding frame is binary too.
      {9, 8, 3, true, T::Automatic, "BINARY", 6, 6 * 9},
      // One segment on all 3 frames of 9x8: fractional (72 bytes a frame), no padding.
      {9, 8, 3, false, T::Automatic, "FRACTIONAL", 0, 3 * 72},
      // The same asked for as BINARY: 27 bytes and a padding byte.
      {9, 8, 3, false, T::Binary, "BINARY", 0, 28},
      // One segment on all 3 frames of 5x5: fractional, 75 bytes and a padding byte.
      {5, 5, 3, false, T::Automatic, "FRACTIONAL", 0, 76},
  };
  for (const auto& c : cases) {
    test::SeriesSpec spec;
    spec.rows = c.rows;
    spec.columns = c.columns;
    spec.frames = c.frames;
    spec.name = "full-" + std::to_string(c.rows) + "x" + std::to_string(c.columns) +
                (c.first_segment_has_a_gap ? "-gap" : "-one") + (c.type == T::Binary ? "-binary" : "");
    auto series = test::make_series(spec);
    auto files = series.save(dir.path(), spec.name);
    SourceImages sources(series.datasets());
    auto segments = two_disjoint_segments(sources, c.rows * 13 + c.columns);
    if (c.first_segment_has_a_gap)
      segments[0].masks.erase(segments[0].masks.begin() + 1);
    else
      segments.pop_back();
    SegmentationOptions options;
    options.type = c.type;
    auto checked = write_and_check(dir, spec.name, sources, segments, files, options);
    DcmDataset& ds = *checked.written.file->getDataset();
    EXPECT_EQ(checked.written.segmentation_type, c.form) << spec.name;
    EXPECT_EQ(checked.written.padding_frame, c.padding_frame) << spec.name;
    const Uint8* all = nullptr;
    unsigned long length = 0;
    ASSERT_TRUE(ds.findAndGetUint8Array(DCM_PixelData, all, &length).good()) << spec.name;
    EXPECT_EQ(length, c.pixel_bytes) << spec.name;
    if (c.padding_frame) {
      // The empty frame is the first segment's, on the source frame it has none on.
      EXPECT_EQ(checked.written.frames_per_segment[0].size(), c.frames) << spec.name;
      EXPECT_EQ(checked.written.frames_per_segment[0].back(), 1u) << spec.name;
      EXPECT_EQ(checked.written.number_of_frames, c.padding_frame) << spec.name;
    }
  }
}

TEST(SegmentationWriter, AMultiFrameInstanceOfTwoOrientationsGivesOneSegPerPlaneOfItsFrames) {
  // An enhanced MR whose frames 4-6 are sagittal (a localizer of several planes): one SEG cannot
  // hold both orientations, so the sources of a SEG are the frames of one plane (the frame
  // filter); the other frames are neither referenced nor checked. Without the filter the
  // instance is refused, naming the frame.
  TempDir dir("seg-two-planes");
  test::SeriesSpec spec;
  spec.rows = 8;
  spec.columns = 8;
  spec.frames = 6;
  spec.enhanced_multiframe = true;
  spec.name = "two-planes";
  auto series = test::make_series(spec);
  DcmDataset& ds = *series.datasets().front();
  for (long f = 3; f < 6; ++f) {
    DcmItem* frame = nullptr;
    ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_PerFrameFunctionalGroupsSequence, frame, f).good());
    DcmItem* orientation = nullptr;
    ASSERT_TRUE(frame->findOrCreateSequenceItem(DCM_PlaneOrientationSequence, orientation, -2).good());
    orientation->putAndInsertString(DCM_ImageOrientationPatient, "0\\1\\0\\0\\0\\-1");
    DcmItem* position = nullptr;
    ASSERT_TRUE(frame->findAndGetSequenceItem(DCM_PlanePositionSequence, position).good());
    position->putAndInsertString(DCM_ImagePositionPatient,
                                 (std::to_string(-10.0 + 3.0 * double(f)) + "\\-120\\40").c_str());
  }
  auto files = series.save(dir.path(), spec.name);
  try {
    SourceImages all(series.datasets());
    ADD_FAILURE() << "two orientations in one source set were accepted";
  } catch (const SegmentationError& e) {
    EXPECT_NE(std::string(e.what()).find("frame 4 has Image Orientation (Patient)"), std::string::npos) << e.what();
  }
  for (const bool sagittal : {false, true}) {
    SCOPED_TRACE(sagittal ? "sagittal frames" : "axial frames");
    SourceImages sources(series.datasets(), [&](size_t, int frame_number) { return (frame_number > 3) == sagittal; });
    ASSERT_EQ(sources.frame_count(), 3u);
    ASSERT_TRUE(sources.has_geometry());
    EXPECT_EQ(sources.frame(0).frame_number, sagittal ? 4 : 1);
    EXPECT_EQ((*sources.orientation())[4], sagittal ? 0.0 : 1.0);
    std::vector<FrameMask> masks;
    for (size_t f = 0; f < 3; ++f) masks.push_back(binary_mask(f, test::ellipse_mask(8, 8, 3.5, 3.5, 2.5, 2.0)));
    // The Cornerstone adapter is given every frame of the instance and compares the SEG with the
    // plane of the first, so it is left out for the sagittal SEG (a limit of that check: OHIF
    // shows a multi-plane instance in one display set).
    auto checked = write_and_check(dir, spec.name + (sagittal ? "-sagittal" : "-axial"), sources,
                                   {segment("Tumour", masks)}, sagittal ? std::vector<std::filesystem::path>{} : files);
    std::vector<size_t> frames = checked.written.frames_per_segment[0];
    std::sort(frames.begin(), frames.end());
    EXPECT_EQ(frames, (std::vector<size_t>{0, 1, 2}));
    DcmItem* item = nullptr;
    ASSERT_TRUE(checked.written.file->getDataset()
                    ->findAndGetSequenceItem(DCM_PerFrameFunctionalGroupsSequence, item, 0)
                    .good());
    DcmItem* derivation = nullptr;
    ASSERT_TRUE(item->findAndGetSequenceItem(DCM_DerivationImageSequence, derivation).good());
    DcmItem* source = nullptr;
    ASSERT_TRUE(derivation->findAndGetSequenceItem(DCM_SourceImageSequence, source).good());
    Sint32 referenced = 0;
    source->findAndGetSint32(DCM_ReferencedFrameNumber, referenced);
    EXPECT_EQ(referenced > 3, sagittal) << "frame " << referenced;
  }
  // A filter that keeps no frame of an instance is refused.
  EXPECT_THROW(SourceImages(series.datasets(), [](size_t, int) { return false; }), SegmentationError);
}

TEST(SegmentationWriter, MultiFrameSourceIsReferencedByFrameNumber) {
  TempDir dir("seg-multiframe");
  test::SeriesSpec spec;
  spec.rows = 10;
  spec.columns = 6;  // 60 pixels: frames start mid-byte
  spec.frames = 6;
  spec.enhanced_multiframe = true;
  spec.reverse_order = true;  // stored top-down: the SEG orders by position, not by frame number
  spec.name = "enhanced-mr";
  auto series = test::make_series(spec);
  auto files = series.save(dir.path(), spec.name);
  SourceImages sources(series.datasets());
  ASSERT_EQ(sources.frame_count(), 6u);
  ASSERT_TRUE(sources.has_geometry());
  EXPECT_EQ(sources.frame(2).frame_number, 3);
  std::vector<FrameMask> masks;
  for (size_t f : {0, 1, 3}) masks.push_back(binary_mask(f, test::ellipse_mask(10, 6, 2.5, 4.5, 2.0, 3.5 - f * 0.5)));
  std::vector<Segment> segments{segment("Tumour", masks)};
  auto checked = write_and_check(dir, spec.name, sources, segments, files);
  EXPECT_EQ(checked.written.number_of_frames, 3u);
  // Frames follow the slice order along the normal: frame 4, 2, 1 of the reversed source.
  EXPECT_EQ(checked.written.frames_per_segment[0], (std::vector<size_t>{3, 1, 0}));
}

TEST(SegmentationWriter, TenSegmentsOverThreeHundredFrames) {
  TempDir dir("seg-300");
  test::SeriesSpec spec;
  spec.rows = 41;
  spec.columns = 37;  // 1517 pixels per frame, not a multiple of 8
  spec.frames = 300;
  spec.reverse_order = true;
  spec.name = "ct-300";
  auto series = test::make_series(spec);
  auto files = series.save(dir.path(), spec.name);
  SourceImages sources(series.datasets());
  std::vector<Segment> segments;
  const auto order = sources.frames_in_slice_order();
  for (unsigned s = 0; s < 10; ++s) {
    // Each segment in its own cell of a 4x3 grid, spanning 60 slices from slice 25*s.
    const double cc = 5 + (s % 4) * 9.0, cr = 6 + (s / 4) * 13.0;
    std::vector<FrameMask> masks;
    for (unsigned k = 25 * s; k < 25 * s + 60 && k < 300; ++k) {
      const double r = 1.5 + 2.5 * std::sin(3.14159 * (k - 25 * s) / 60.0);
      masks.push_back(binary_mask(order[k], test::ellipse_mask(41, 37, cc, cr, r, r * 1.3)));
    }
    segments.push_back(segment("Finding " + std::to_string(s + 1), masks,
                               {static_cast<std::uint8_t>(25 * s), 128, static_cast<std::uint8_t>(255 - 25 * s)}));
  }
  auto checked = write_and_check(dir, "ct-300", sources, segments, files);
  size_t frames = 0;
  for (const auto& s : segments) frames += s.masks.size();
  EXPECT_EQ(checked.written.number_of_frames, frames);
  EXPECT_FALSE(checked.written.segments_overlap);
}

TEST(SegmentationWriter, PydicomCtAndMrSources) {
  TempDir dir("seg-pydicom");
  for (const std::string name : {"CT_small.dcm", "MR_small.dcm"}) {
    const auto path = test::pydicom_test_file(name);
    auto file = test::load_file(path);
    ASSERT_TRUE(file) << "cannot read " << path;
    SourceImages sources({file->getDataset()});
    const unsigned rows = sources.rows(), columns = sources.columns();
    std::vector<Segment> segments{segment(
        "Region",
        {binary_mask(0, test::ellipse_mask(rows, columns, columns / 2.0, rows / 3.0, columns / 5.0, rows / 7.0))})};
    auto checked = write_and_check(dir, name, sources, segments, {path});
    DcmDataset& seg = *checked.written.file->getDataset();
    DcmDataset& source = *file->getDataset();
    EXPECT_EQ(get(seg, DCM_StudyInstanceUID), get(source, DCM_StudyInstanceUID));
    EXPECT_EQ(get(seg, DCM_FrameOfReferenceUID), get(source, DCM_FrameOfReferenceUID));
    EXPECT_EQ(get(seg, DCM_PatientID), get(source, DCM_PatientID));
    EXPECT_EQ(get(seg, DCM_PatientName), get(source, DCM_PatientName));
    EXPECT_NE(get(seg, DCM_SeriesInstanceUID), get(source, DCM_SeriesInstanceUID));
  }
}

TEST(SegmentationWriter, ImagesWithoutSliceGeometry) {
  // Projection images and photographs: no positions, so no frame of reference, plane groups or
  // position dimension; Patient Orientation is carried over instead.
  TempDir dir("seg-2d");
  test::SeriesSpec spec;
  spec.rows = 21;
  spec.columns = 17;
  spec.frames = 2;
  spec.name = "projection";
  auto series = test::make_series(spec);
  for (auto* ds : series.datasets()) {
    delete ds->remove(DCM_ImagePositionPatient);
    delete ds->remove(DCM_ImageOrientationPatient);
    ds->putAndInsertString(DCM_PatientOrientation, "A\\F");
  }
  const auto files = series.save(dir.path(), spec.name);
  SourceImages sources(series.datasets());
  ASSERT_FALSE(sources.has_geometry());
  auto segments = two_disjoint_segments(sources, 77);
  auto checked = write_and_check(dir, spec.name, sources, segments, files);
  DcmDataset& ds = *checked.written.file->getDataset();
  EXPECT_FALSE(ds.tagExists(DCM_FrameOfReferenceUID));
  EXPECT_EQ(get(ds, DCM_PatientOrientation), "A\\F");
}

// How many items the sequence `tag` of `item` has (0 when absent).
unsigned long items_of(DcmItem& item, const DcmTagKey& tag) {
  DcmSequenceOfItems* sequence = nullptr;
  if (item.findAndGetSequence(tag, sequence).bad() || !sequence) return 0;
  return sequence->card();
}

TEST(SegmentationWriter, SourcesWhoseGeometryCannotBeReadAreWrittenWithoutGeometry) {
  // A CT whose Pixel Spacing is missing or not a number, or whose positions or orientation are
  // unusable (an enhanced MR whose per-frame sequence is too short too), still has a Frame of
  // Reference UID. Its SEG takes the path of images without
  // geometry: no frame of reference, no plane position, plane orientation or pixel measures
  // groups, no position dimension (a frame of reference would require all three groups).
  TempDir dir("seg-bad-geometry");
  struct Case {
    std::string name;
    bool enhanced;
    std::function<void(DcmDataset&)> spoil;
  };
  const auto shared_measures = [](DcmDataset& ds) -> DcmItem* {
    DcmItem* shared = nullptr;
    DcmItem* measures = nullptr;
    if (ds.findAndGetSequenceItem(DCM_SharedFunctionalGroupsSequence, shared).bad() || !shared) return nullptr;
    if (shared->findAndGetSequenceItem(DCM_PixelMeasuresSequence, measures).bad()) return nullptr;
    return measures;
  };
  const std::vector<Case> cases{
      {"spacing-abc", false, [](DcmDataset& ds) { ds.putAndInsertString(DCM_PixelSpacing, "abc"); }},
      {"spacing-absent", false, [](DcmDataset& ds) { delete ds.remove(DCM_PixelSpacing); }},
      {"spacing-one-value", false, [](DcmDataset& ds) { ds.putAndInsertString(DCM_PixelSpacing, "0.7"); }},
      {"enhanced-spacing-abc", true,
       [&](DcmDataset& ds) {
         DcmItem* measures = shared_measures(ds);
         ASSERT_NE(measures, nullptr);
         measures->putAndInsertString(DCM_PixelSpacing, "abc\\def");
       }},
      {"enhanced-per-frame-short", true,
       [](DcmDataset& ds) {
         // One item for three frames: the others have the shared groups only, no position.
         DcmSequenceOfItems* per_frame = nullptr;
         ASSERT_TRUE(ds.findAndGetSequence(DCM_PerFrameFunctionalGroupsSequence, per_frame).good());
         while (per_frame->card() > 1) delete per_frame->remove(per_frame->card() - 1);
       }},
      {"position-abc", false, [](DcmDataset& ds) { ds.putAndInsertString(DCM_ImagePositionPatient, "a\\b\\c"); }},
      {"orientation-abc", false,
       [](DcmDataset& ds) { ds.putAndInsertString(DCM_ImageOrientationPatient, "1\\0\\0\\0\\x\\0"); }},
      {"orientation-parallel", false,
       [](DcmDataset& ds) { ds.putAndInsertString(DCM_ImageOrientationPatient, "1\\0\\0\\1\\0\\0"); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    test::SeriesSpec spec;
    spec.rows = 11;
    spec.columns = 9;
    spec.frames = 3;
    spec.enhanced_multiframe = c.enhanced;
    spec.reverse_order = true;
    spec.name = "bad-geometry-" + c.name;
    auto series = test::make_series(spec);
    for (auto* ds : series.datasets()) {
      c.spoil(*ds);
      ASSERT_TRUE(ds->tagExistsWithValue(DCM_FrameOfReferenceUID));
    }
    const auto files = series.save(dir.path(), spec.name);
    SourceImages sources(series.datasets());
    auto segments = two_disjoint_segments(sources, 53);
    auto checked = write_and_check(dir, spec.name, sources, segments, files);
    EXPECT_EQ(checked.written.number_of_frames, 6u);
    // What is written to disk is what the readers above checked.
    DcmFileFormat file;
    ASSERT_TRUE(file.loadFile(checked.path.c_str()).good());
    DcmDataset& ds = *file.getDataset();
    EXPECT_FALSE(ds.tagExists(DCM_FrameOfReferenceUID));
    EXPECT_FALSE(ds.tagExists(DCM_PositionReferenceIndicator));
    EXPECT_TRUE(ds.tagExists(DCM_PatientOrientation));
    DcmItem* shared = nullptr;
    ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_SharedFunctionalGroupsSequence, shared).good());
    EXPECT_EQ(items_of(*shared, DCM_PixelMeasuresSequence), 0u);
    EXPECT_EQ(items_of(*shared, DCM_PlaneOrientationSequence), 0u);
    EXPECT_EQ(items_of(*shared, DCM_PlanePositionSequence), 0u);
    EXPECT_EQ(items_of(ds, DCM_DimensionIndexSequence), 1u) << "the segment number only";
    DcmSequenceOfItems* frames = nullptr;
    ASSERT_TRUE(ds.findAndGetSequence(DCM_PerFrameFunctionalGroupsSequence, frames).good());
    ASSERT_EQ(frames->card(), 6u);
    for (unsigned long f = 0; f < frames->card(); ++f) {
      DcmItem& frame = *frames->getItem(f);
      EXPECT_EQ(items_of(frame, DCM_PlanePositionSequence), 0u) << "frame " << f + 1;
      EXPECT_EQ(items_of(frame, DCM_PlaneOrientationSequence), 0u) << "frame " << f + 1;
      EXPECT_EQ(items_of(frame, DCM_PixelMeasuresSequence), 0u) << "frame " << f + 1;
      EXPECT_EQ(items_of(frame, DCM_DerivationImageSequence), 1u) << "frame " << f + 1;
    }
  }
}

// Reads a written SEG back from disk and returns, for every source image reference of every
// frame (Per-frame Functional Groups > Derivation Image > Source Image), its Spatial Locations
// Preserved value ("" when absent).
std::vector<std::string> spatial_locations_preserved(const std::filesystem::path& path) {
  DcmFileFormat file;
  EXPECT_TRUE(file.loadFile(path.c_str()).good()) << "cannot read " << path;
  std::vector<std::string> values;
  DcmSequenceOfItems* frames = nullptr;
  if (file.getDataset()->findAndGetSequence(DCM_PerFrameFunctionalGroupsSequence, frames).bad() || !frames)
    return values;
  for (unsigned long f = 0; f < frames->card(); ++f) {
    DcmSequenceOfItems* derivations = nullptr;
    if (frames->getItem(f)->findAndGetSequence(DCM_DerivationImageSequence, derivations).bad() || !derivations)
      continue;
    for (unsigned long d = 0; d < derivations->card(); ++d) {
      DcmSequenceOfItems* sources = nullptr;
      if (derivations->getItem(d)->findAndGetSequence(DCM_SourceImageSequence, sources).bad() || !sources) continue;
      for (unsigned long i = 0; i < sources->card(); ++i)
        values.push_back(get(*sources->getItem(i), DCM_SpatialLocationsPreserved));
    }
  }
  return values;
}

TEST(SegmentationWriter, SourceReferencesSayTheSpatialLocationsArePreserved) {
  // Masks are written on the source frames' own pixel grid, so every source reference says so
  // (highdicom looks frames up by source image only then); dciodvfy stays clean with it.
  TempDir dir("seg-spatial");
  struct Case {
    std::string name;
    bool enhanced, geometry;
    SegmentationOptions::Type type;
  };
  for (const Case& c : {Case{"slices", false, true, SegmentationOptions::Type::Binary},
                        Case{"enhanced", true, true, SegmentationOptions::Type::Binary},
                        Case{"projection", false, false, SegmentationOptions::Type::Binary},
                        Case{"fractional", false, true, SegmentationOptions::Type::Fractional}}) {
    test::SeriesSpec spec;
    spec.rows = 12;
    spec.columns = 7;
    spec.frames = 3;
    spec.enhanced_multiframe = c.enhanced;
    spec.name = "spatial-" + c.name;
    auto series = test::make_series(spec);
    if (!c.geometry)
      for (auto* ds : series.datasets()) {
        delete ds->remove(DCM_ImagePositionPatient);
        delete ds->remove(DCM_ImageOrientationPatient);
        ds->putAndInsertString(DCM_PatientOrientation, "A\\F");
      }
    const auto files = series.save(dir.path(), spec.name);
    SourceImages sources(series.datasets());
    ASSERT_EQ(sources.has_geometry(), c.geometry) << c.name;
    SegmentationOptions options;
    options.type = c.type;
    auto checked = write_and_check(dir, spec.name, sources, two_disjoint_segments(sources, 41), files, options);
    const auto values = spatial_locations_preserved(checked.path);
    EXPECT_EQ(values.size(), checked.written.number_of_frames) << c.name << ": one source reference per frame";
    for (size_t k = 0; k < values.size(); ++k)
      EXPECT_EQ(values[k], "YES") << c.name << ": source reference of frame " << k + 1;
  }
}

TEST(SegmentationWriter, SourcesWithoutTypeTwoAttributesAndWithLatin1Text) {
  // Type 2 patient/study attributes missing in the source are written empty; names in ISO_IR 100
  // are converted to UTF-8 with the segment labels.
  TempDir dir("seg-sparse");
  test::SeriesSpec spec;
  spec.name = "sparse";
  auto series = test::make_series(spec);
  for (auto* ds : series.datasets()) {
    for (const DcmTagKey& tag :
         {DCM_PatientBirthDate, DCM_PatientSex, DCM_StudyDate, DCM_StudyTime, DCM_AccessionNumber,
          DCM_ReferringPhysicianName, DCM_StudyID, DCM_PositionReferenceIndicator})
      delete ds->remove(tag);
    ds->putAndInsertString(DCM_PatientName, "M\xfcller^J\xfcrgen");  // ISO_IR 100
  }
  const auto files = series.save(dir.path(), spec.name);
  SourceImages sources(series.datasets());
  auto segments = two_disjoint_segments(sources, 9);
  segments[0].description.label = "L\xc3\xa4sion";  // UTF-8
  auto checked = write_and_check(dir, spec.name, sources, segments, files);
  DcmDataset& ds = *checked.written.file->getDataset();
  EXPECT_EQ(get(ds, DCM_SpecificCharacterSet), "ISO_IR 192");
  EXPECT_EQ(get(ds, DCM_PatientName), "M\xc3\xbcller^J\xc3\xbcrgen");
  EXPECT_TRUE(ds.tagExists(DCM_PatientSex));
  EXPECT_TRUE(ds.tagExists(DCM_StudyDate));
  DcmItem* first = nullptr;
  ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_SegmentSequence, first).good());
  EXPECT_EQ(get(*first, DCM_SegmentLabel), "L\xc3\xa4sion");
}

TEST(SegmentationWriter, HeaderValuesThatBreakTheirVrAreLeftOutAndTheRestTakenOver) {
  // DCMTK refuses to write a SEG whose patient or study attributes break their VR or VM; such
  // values are common in archives (an age without unit, a date that is no date, an old-style time,
  // NUL padding). They are left out, each one said, and the SEG passes every validator.
  TempDir dir("seg-bad-header");
  test::SeriesSpec spec;
  spec.name = "bad-header";
  auto series = test::make_series(spec);
  for (auto* ds : series.datasets()) {
    ds->putAndInsertString(DCM_PatientAge, "45Y");
    ds->putAndInsertString(DCM_StudyDate, "20241399");
    ds->putAndInsertString(DCM_StudyTime, "10:20:30");
    ds->putAndInsertString(DCM_SeriesDate, "1997.04.24");
    ds->putAndInsertString(DCM_PatientSex, "male");
    ds->putAndInsertString(DCM_PatientBirthDate, "19700101\\19710101");
    const char name[] = "Doe^Jane\x01\0";
    ds->putAndInsertString(DcmTag(DCM_PatientName), name, sizeof name - 1, OFTrue);
    ds->putAndInsertString(DCM_AdditionalPatientHistory, "Allergic\tto contrast\r\nSee\x07 notes");
  }
  const auto files = series.save(dir.path(), spec.name);
  SourceImages sources(series.datasets());

  const ResultsHeader header = sources.header_in_utf8();
  std::vector<std::string> expected_left_out{"PatientBirthDate (0010,0030) '19700101\\19710101' has 2 values, not 1",
                                             "PatientSex (0010,0040) 'male' is not a valid CS value",
                                             "PatientAge (0010,1010) '45Y' is not a valid AS value",
                                             "StudyDate (0008,0020) '20241399' is not a valid DA value"};
  std::vector<std::string> left_out = header.left_out;
  std::sort(left_out.begin(), left_out.end());
  std::sort(expected_left_out.begin(), expected_left_out.end());
  EXPECT_EQ(left_out, expected_left_out);
  // The ACR-NEMA forms of a date and a time are the same date and time: written in the DA and TM
  // forms, each said.
  std::vector<std::string> changed = header.changed;
  std::sort(changed.begin(), changed.end());
  EXPECT_EQ(changed, (std::vector<std::string>{
                         "SeriesDate (0008,0021) '1997.04.24': the ACR-NEMA form of a DA, written as 19970424",
                         "StudyTime (0008,0030) '10:20:30': the ACR-NEMA form of a TM, written as 102030"}));
  EXPECT_EQ(get(*header.dataset, DCM_StudyTime), "102030");
  EXPECT_EQ(get(*header.dataset, DCM_SeriesDate), "19970424");
  EXPECT_TRUE(header.restore.empty());
  // Text the writers may take over (LT here) keeps its line break; its TAB, which LT does not
  // allow, is a space, and other control characters are gone.
  EXPECT_EQ(get(*header.dataset, DCM_AdditionalPatientHistory), "Allergic to contrast\r\nSee notes");

  auto checked = write_and_check(dir, spec.name, sources, two_disjoint_segments(sources, 4), files);
  DcmDataset& ds = *checked.written.file->getDataset();
  EXPECT_EQ(get(ds, DCM_PatientName), "Doe^Jane");  // control characters removed
  EXPECT_FALSE(ds.tagExists(DCM_PatientAge));       // type 3: absent
  for (const DcmTagKey& tag : {DCM_StudyDate, DCM_PatientSex, DCM_PatientBirthDate}) {
    EXPECT_TRUE(ds.tagExists(tag)) << DcmTag(tag).getTagName();  // type 2: present, empty
    EXPECT_EQ(get(ds, tag), "") << DcmTag(tag).getTagName();
  }
  EXPECT_EQ(get(ds, DCM_StudyTime), "102030");
  EXPECT_EQ(get(ds, DCM_PatientID), get(*series.datasets()[0], DCM_PatientID));
}

TEST(SegmentationWriter, SourceUidsWithLeadingZerosAreReferencedAsTheyAre) {
  // UIDs whose components have leading zeros ("1.2.840.0123...") break PS3.5 9.1 but are common in
  // older archives, and DCMTK refuses them. They are identities: the SEG belongs to the same study
  // and frame of reference and references every source by its UID exactly as the source has it.
  TempDir dir("seg-leading-zero");
  test::SeriesSpec spec;
  spec.name = "leading-zero";
  auto series = test::make_series(spec);
  auto with_zero = [](const std::string& uid) { return "1.2.840.0123." + uid.substr(uid.rfind('.') + 1); };
  for (auto* ds : series.datasets())
    for (const DcmTagKey& tag :
         {DCM_StudyInstanceUID, DCM_SeriesInstanceUID, DCM_SOPInstanceUID, DCM_FrameOfReferenceUID}) {
      const std::string zero = with_zero(get(*ds, tag));
      ds->putAndInsertString(tag, zero.c_str());
    }
  const auto files = series.save(dir.path(), spec.name);
  SourceImages sources(series.datasets());
  ASSERT_FALSE(is_valid_uid(sources.study_instance_uid()));
  const auto segments = two_disjoint_segments(sources, 5);
  auto written = write_segmentation(sources, segments, {});
  ASSERT_TRUE(written.has_value());
  const auto path = dir / "leading-zero-seg.dcm";
  save_part10(*written->file, path);
  DcmDataset& ds = *written->file->getDataset();
  EXPECT_EQ(get(ds, DCM_StudyInstanceUID), sources.study_instance_uid());
  EXPECT_EQ(get(ds, DCM_FrameOfReferenceUID), sources.frame_of_reference_uid());
  EXPECT_TRUE(is_valid_uid(get(ds, DCM_SOPInstanceUID)));
  EXPECT_TRUE(is_valid_uid(get(ds, DCM_SeriesInstanceUID)));
  EXPECT_NE(get(ds, DCM_SeriesInstanceUID), sources.series_instance_uid());
  // Every frame references its source by the source's own UID.
  DcmSequenceOfItems* frames = nullptr;
  ASSERT_TRUE(ds.findAndGetSequence(DCM_PerFrameFunctionalGroupsSequence, frames).good());
  std::set<std::string> source_uids;
  for (const auto& f : sources.frames()) source_uids.insert(f.sop_instance_uid);
  for (unsigned long i = 0; i < frames->card(); ++i) {
    DcmItem* derivation = nullptr;
    DcmItem* source = nullptr;
    ASSERT_TRUE(frames->getItem(i)->findAndGetSequenceItem(DCM_DerivationImageSequence, derivation).good());
    ASSERT_TRUE(derivation->findAndGetSequenceItem(DCM_SourceImageSequence, source).good());
    EXPECT_EQ(source_uids.count(get(*source, DCM_ReferencedSOPInstanceUID)), 1u) << "frame " << i + 1;
  }
  // dciodvfy objects to the source's UIDs and to nothing else.
  std::string output;
  size_t about_sources = 0;
  EXPECT_EQ(test::dciodvfy_errors_besides_leading_zeros(path, about_sources, &output), std::vector<std::string>{})
      << output;
  EXPECT_GT(about_sources, 0u) << output;
  // OHIF (dcmjs) still finds every mask on its source.
  const auto expected = dir / "leading-zero-expected.json";
  test::write_file(expected, test::expected_masks_json(sources, segments, written->tracking_uids));
  const auto js = test::run_command(
      {test::node_program(), (test::js_dir() / "check_seg.js").string(), path.string(), expected.string()});
  EXPECT_EQ(js.exit_code, 0) << js.output;
}

TEST(SegmentationWriter, DescriptionsMayHoldBackslashesAndLineBreaksLabelsMayNot) {
  // Segment Description (ST) and Algorithm Parameters (LT) are free text: a backslash or a line
  // break is allowed there (a model's sentence may hold one). Labels (LO) allow neither, and no
  // text may hold other control characters (a tab included); each refusal names the segment.
  TempDir dir("seg-texts");
  test::SeriesSpec spec;
  spec.name = "texts";
  auto series = test::make_series(spec);
  auto files = series.save(dir.path(), spec.name);
  SourceImages sources(series.datasets());
  auto segments = two_disjoint_segments(sources, 9);
  segments[0].description.description = "Tum\\or in the\r\nleft lobe";
  segments[0].description.algorithm.parameters = "weights C:\\models\nthreshold 0.5";
  auto checked = write_and_check(dir, spec.name, sources, segments, files);
  DcmItem* first = nullptr;
  ASSERT_TRUE(checked.written.file->getDataset()->findAndGetSequenceItem(DCM_SegmentSequence, first, 0).good());
  EXPECT_EQ(get(*first, DCM_SegmentDescription), "Tum\\or in the\r\nleft lobe");
  DcmItem* algorithm = nullptr;
  ASSERT_TRUE(first->findAndGetSequenceItem(DCM_SegmentationAlgorithmIdentificationSequence, algorithm, 0).good());
  EXPECT_EQ(get(*algorithm, DCM_AlgorithmParameters), "weights C:\\models\nthreshold 0.5");

  auto refused = [&](std::vector<Segment> bad) {
    try {
      write_segmentation(sources, bad, {});
    } catch (const SegmentationError& e) {
      return std::string(e.what());
    }
    return std::string("written");
  };
  auto bad = segments;
  bad[1].description.label = "Liv\\er";
  EXPECT_NE(refused(bad).find("segment 2 'Liv\\er' label contains a control character or backslash at byte 3"),
            std::string::npos)
      << refused(bad);
  bad = segments;
  bad[0].description.description = "Tumour\x1b[0m";
  EXPECT_NE(refused(bad).find("description contains a control character at byte 6"), std::string::npos) << refused(bad);
  bad[0].description.description = "left\tlobe";
  EXPECT_NE(refused(bad).find("description contains a control character at byte 4"), std::string::npos) << refused(bad);
}

TEST(SegmentationWriter, ModulesNameTheAlgorithmAndDescribeEachSegment) {
  test::SeriesSpec spec;
  spec.name = "modules";
  auto series = test::make_series(spec);
  SourceImages sources(series.datasets());
  auto segments = two_disjoint_segments(sources, 5);
  segments[1].description.category = codes::anatomical_structure();
  segments[1].description.type = {"10200004", "SCT", "Liver"};
  segments[1].description.anatomic_region = CodedConcept{"818981001", "SCT", "Abdomen"};
  segments[1].description.tracking_id = "liver-1";
  segments[1].description.tracking_uid = "1.2.826.0.1.3680043.8.498.1";
  SegmentationOptions options;
  options.algorithm.version = "0.1.0";
  options.type = SegmentationOptions::Type::Binary;  // 9x7 frames would be fractional by default
  auto written = write_segmentation(sources, segments, options);
  ASSERT_TRUE(written);
  DcmDataset& ds = *written->file->getDataset();
  EXPECT_EQ(get(ds, DCM_Modality), "SEG");
  EXPECT_EQ(get(ds, DCM_SOPClassUID), UID_SegmentationStorage);
  EXPECT_EQ(get(ds, DCM_SeriesDescription), "UniBiomed segmentation");
  EXPECT_EQ(get(ds, DCM_Manufacturer), "UniBiomed");
  EXPECT_EQ(get(ds, DCM_SegmentationType), "BINARY");
  EXPECT_EQ(get(ds, DCM_SegmentsOverlap), "NO");
  EXPECT_EQ(get(ds, DCM_SeriesInstanceUID), written->series_instance_uid);
  EXPECT_EQ(get(ds, DCM_SOPInstanceUID), written->sop_instance_uid);
  Uint16 bits = 0;
  ds.findAndGetUint16(DCM_BitsAllocated, bits);
  EXPECT_EQ(bits, 1);
  DcmItem* second = nullptr;
  ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_SegmentSequence, second, 1).good());
  Uint16 number = 0;
  second->findAndGetUint16(DCM_SegmentNumber, number);
  EXPECT_EQ(number, 2);
  EXPECT_EQ(get(*second, DCM_SegmentLabel), "Liver");
  EXPECT_EQ(get(*second, DCM_SegmentAlgorithmType), "AUTOMATIC");
  EXPECT_EQ(get(*second, DCM_SegmentAlgorithmName), "UniBiomed");
  EXPECT_EQ(get(*second, DCM_TrackingID), "liver-1");
  EXPECT_EQ(get(*second, DCM_TrackingUID), "1.2.826.0.1.3680043.8.498.1");
  EXPECT_EQ(written->tracking_uids[1], "1.2.826.0.1.3680043.8.498.1");
  DcmItem* type = nullptr;
  ASSERT_TRUE(second->findAndGetSequenceItem(DCM_SegmentedPropertyTypeCodeSequence, type).good());
  EXPECT_EQ(get(*type, DCM_CodeValue), "10200004");
  DcmItem* region = nullptr;
  ASSERT_TRUE(second->findAndGetSequenceItem(DCM_AnatomicRegionSequence, region).good());
  EXPECT_EQ(get(*region, DCM_CodeMeaning), "Abdomen");
  DcmItem* algorithm = nullptr;
  ASSERT_TRUE(second->findAndGetSequenceItem(DCM_SegmentationAlgorithmIdentificationSequence, algorithm).good());
  EXPECT_EQ(get(*algorithm, DCM_AlgorithmName), "UniBiomed");
  EXPECT_EQ(get(*algorithm, DCM_AlgorithmVersion), "0.1.0");
  EXPECT_EQ(get(*algorithm, DCM_AlgorithmParameters), "weights sha256 0123abcd");
  // The colour as DCMTK converts sRGB (0, 200, 80) to CIELab, which dcmjs/OHIF convert back.
  double lab[3];
  IODCIELabUtil::rgb2DicomLab(lab[0], lab[1], lab[2], 0, 200 / 255.0, 80 / 255.0);
  for (unsigned k = 0; k < 3; ++k) {
    Uint16 v = 0;
    second->findAndGetUint16(DCM_RecommendedDisplayCIELabValue, v, k);
    EXPECT_EQ(v, static_cast<Uint16>(std::lround(lab[k])));
  }
  // Frame of reference, shared orientation and pixel measures as in the source.
  DcmItem* shared = nullptr;
  ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_SharedFunctionalGroupsSequence, shared).good());
  DcmItem* measures = nullptr;
  ASSERT_TRUE(shared->findAndGetSequenceItem(DCM_PixelMeasuresSequence, measures).good());
  EXPECT_EQ(get(*measures, DCM_PixelSpacing), "0.7\\0.6");
  EXPECT_EQ(get(*measures, DCM_SpacingBetweenSlices), "2.5");
  EXPECT_EQ(get(ds, DCM_FrameOfReferenceUID), get(*series.datasets()[0], DCM_FrameOfReferenceUID));
}

TEST(SegmentationWriter, EmptyFramesAreOmittedUnlessAskedOtherwise) {
  TempDir dir("seg-empty");
  test::SeriesSpec spec;
  spec.frames = 4;
  spec.name = "empties";
  auto series = test::make_series(spec);
  auto files = series.save(dir.path(), spec.name);
  SourceImages sources(series.datasets());
  std::vector<FrameMask> masks{binary_mask(0, std::vector<std::uint8_t>(63, 0)),
                               binary_mask(2, test::ellipse_mask(9, 7, 3, 4, 2, 3))};
  std::vector<Segment> segments{segment("One", masks)};
  auto omitted = write_and_check(dir, "omitted", sources, segments, files);
  EXPECT_EQ(omitted.written.number_of_frames, 1u);
  EXPECT_EQ(omitted.written.frames_per_segment[0], std::vector<size_t>{2});
  SegmentationOptions keep;
  keep.omit_empty_frames = false;
  auto kept = write_and_check(dir, "kept", sources, segments, files, keep);
  EXPECT_EQ(kept.written.number_of_frames, 4u);
}

TEST(SegmentationWriter, OverlappingSegmentsAreFlagged) {
  TempDir dir("seg-overlap");
  test::SeriesSpec spec;
  spec.name = "overlap";
  auto series = test::make_series(spec);
  auto files = series.save(dir.path(), spec.name);
  SourceImages sources(series.datasets());
  std::vector<Segment> segments{segment("A", {binary_mask(1, test::ellipse_mask(9, 7, 3, 4, 3, 3))}),
                                segment("B", {binary_mask(1, test::ellipse_mask(9, 7, 4, 5, 2, 2))})};
  auto checked = write_and_check(dir, "overlap", sources, segments, {});
  EXPECT_TRUE(checked.written.segments_overlap);
  EXPECT_EQ(get(*checked.written.file->getDataset(), DCM_SegmentsOverlap), "YES");
}

TEST(SegmentationWriter, ProbabilitiesMakeBinaryOrFractionalSegmentations) {
  TempDir dir("seg-fractional");
  test::SeriesSpec spec;
  spec.name = "fractional";
  auto series = test::make_series(spec);
  SourceImages sources(series.datasets());
  FrameMask mask;
  mask.frame = 1;
  mask.probability.resize(63);
  for (size_t i = 0; i < 63; ++i) mask.probability[i] = static_cast<float>(i) / 62.0f;
  std::vector<Segment> segments{segment("Probable", {mask})};

  SegmentationOptions binary_options;
  binary_options.type = SegmentationOptions::Type::Binary;
  auto binary = write_segmentation(sources, segments, binary_options);
  ASSERT_TRUE(binary);
  const Uint8* bits = nullptr;
  ASSERT_TRUE(binary->file->getDataset()->findAndGetUint8Array(DCM_PixelData, bits).good());
  const auto unpacked = unpack_binary(bits, 8, 0, 63);
  for (size_t i = 0; i < 63; ++i) EXPECT_EQ(unpacked[i], mask.probability[i] >= 0.5f ? 1 : 0) << i;

  SegmentationOptions fractional;
  fractional.type = SegmentationOptions::Type::Fractional;
  auto written = write_segmentation(sources, segments, fractional);
  ASSERT_TRUE(written);
  const auto path = dir / "fractional.dcm";
  save_part10(*written->file, path);
  std::string output;
  EXPECT_TRUE(test::dciodvfy_errors(path, &output).empty()) << output;
  auto back = test::load_file(path);
  DcmDataset& ds = *back->getDataset();
  EXPECT_EQ(get(ds, DCM_SegmentationType), "FRACTIONAL");
  EXPECT_EQ(get(ds, DCM_SegmentationFractionalType), "PROBABILITY");
  const Uint8* values = nullptr;
  unsigned long count = 0;
  ASSERT_TRUE(ds.findAndGetUint8Array(DCM_PixelData, values, &count).good());
  ASSERT_GE(count, 63u);
  for (size_t i = 0; i < 63; ++i) EXPECT_EQ(values[i], std::lround(mask.probability[i] * 255.0f)) << i;

  // The default (automatic) form of these 9x7 frames: FRACTIONAL OCCUPANCY holding the
  // thresholded mask as 0/255, since OHIF draws no other fractional values.
  SegmentationOptions automatic;
  automatic.threshold = 0.4f;
  auto occupancy = write_segmentation(sources, segments, automatic);
  ASSERT_TRUE(occupancy);
  const auto occupancy_path = dir / "occupancy.dcm";
  save_part10(*occupancy->file, occupancy_path);
  EXPECT_TRUE(test::dciodvfy_errors(occupancy_path, &output).empty()) << output;
  auto read = test::load_file(occupancy_path);
  DcmDataset& od = *read->getDataset();
  EXPECT_EQ(get(od, DCM_SegmentationType), "FRACTIONAL");
  EXPECT_EQ(get(od, DCM_SegmentationFractionalType), "OCCUPANCY");
  EXPECT_EQ(occupancy->fractional_type, "OCCUPANCY");
  ASSERT_TRUE(od.findAndGetUint8Array(DCM_PixelData, values, &count).good());
  ASSERT_EQ(count, 64u);
  for (size_t i = 0; i < 63; ++i) EXPECT_EQ(values[i], mask.probability[i] >= 0.4f ? 255 : 0) << i;
  EXPECT_EQ(values[63], 0) << "padding";
}

TEST(SegmentationWriter, NoSegmentsIsNothingToWrite) {
  test::SeriesSpec spec;
  auto series = test::make_series(spec);
  SourceImages sources(series.datasets());
  EXPECT_FALSE(write_segmentation(sources, {}).has_value());
}

TEST(SegmentationWriter, UidsAreDeterministicWithASeed) {
  test::SeriesSpec spec;
  auto series = test::make_series(spec);
  SourceImages sources(series.datasets());
  std::vector<Segment> segments{segment("A", {binary_mask(0, test::ellipse_mask(9, 7, 3, 4, 2, 2))})};
  SegmentationOptions seeded;
  seeded.uid_seed = "study-42";
  auto a = write_segmentation(sources, segments, seeded);
  auto b = write_segmentation(sources, segments, seeded);
  auto c = write_segmentation(sources, segments);
  auto d = write_segmentation(sources, segments);
  EXPECT_EQ(a->sop_instance_uid, b->sop_instance_uid);
  EXPECT_EQ(a->series_instance_uid, b->series_instance_uid);
  EXPECT_EQ(a->tracking_uids, b->tracking_uids);
  EXPECT_NE(c->sop_instance_uid, d->sop_instance_uid);
  EXPECT_NE(a->sop_instance_uid, c->sop_instance_uid);
  EXPECT_EQ(a->sop_instance_uid.rfind("2.25.", 0), 0u);
  EXPECT_LE(a->sop_instance_uid.size(), 64u);
}

// Every bad input gets an error naming the culprit.
TEST(SegmentationWriter, BadInputsAreClearErrors) {
  test::SeriesSpec spec;
  auto series = test::make_series(spec);
  SourceImages sources(series.datasets());
  auto expect_error = [&](std::vector<Segment> segments, const std::string& text) {
    try {
      write_segmentation(sources, segments);
      ADD_FAILURE() << "no error, expected one containing: " << text;
    } catch (const SegmentationError& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  const auto good = test::ellipse_mask(9, 7, 3, 4, 2, 2);
  expect_error({segment("A", {binary_mask(0, std::vector<std::uint8_t>(10, 1))})},
               "segment 1 'A', mask for source frame 0: 10 values, but the source frames have 7x9 = 63 pixels");
  expect_error({segment("A", {binary_mask(5, good)})}, "mask for source frame 5: the source series has only 3 frames");
  expect_error({segment("A", {binary_mask(1, good), binary_mask(1, good)})}, "the frame is given more than once");
  FrameMask both = binary_mask(0, good);
  both.probability.assign(63, 0.5f);
  expect_error({segment("A", {both})}, "set exactly one of binary or probability");
  expect_error({segment("A", {FrameMask{}})}, "set exactly one of binary or probability");
  FrameMask nan;
  nan.probability.assign(63, 0.2f);
  nan.probability[8] = std::nanf("");
  expect_error({segment("A", {nan})}, "at pixel (1, 1) is outside [0, 1]");
  expect_error({segment("A", {binary_mask(0, std::vector<std::uint8_t>(63, 0))})},
               "segment 1 'A' has no pixel inside its mask");
  expect_error({segment("Fine", {binary_mask(0, good)}), segment("", {binary_mask(0, good)})},
               "segment 2 has no label");
  auto no_code = segment("A", {binary_mask(0, good)});
  no_code.description.type.scheme.clear();
  expect_error({no_code}, "segment 1 'A': the segmented property type needs a code value");
}

TEST(SourceImages, RejectsWhatIsNotOneImageSeries) {
  auto expect_error = [](std::vector<DcmDataset*> datasets, const std::string& text) {
    try {
      SourceImages sources(datasets);
      ADD_FAILURE() << "no error, expected one containing: " << text;
    } catch (const SegmentationError& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  test::SeriesSpec a_spec;
  a_spec.name = "a";
  auto a = test::make_series(a_spec);
  test::SeriesSpec b_spec;
  b_spec.name = "b";
  auto b = test::make_series(b_spec);
  expect_error({}, "no source images");
  expect_error({a.datasets()[0], b.datasets()[0]}, "source instance 2");
  expect_error({a.datasets()[0], a.datasets()[0]}, "was given twice");
  test::SeriesSpec tilted_spec;
  tilted_spec.name = "a";
  tilted_spec.orientation = {1, 0, 0, 0, 0, -1};
  auto tilted = test::make_series(tilted_spec);
  expect_error({a.datasets()[0], tilted.datasets()[1]}, "must share one orientation");
  test::SeriesSpec big_spec;
  big_spec.name = "a";
  big_spec.rows = 10;
  auto big = test::make_series(big_spec);
  expect_error({a.datasets()[0], big.datasets()[1]}, "has 7x10 pixels, the first source instance 7x9");
  auto no_uid = test::make_series(a_spec);
  delete no_uid.datasets()[1]->remove(DCM_SOPInstanceUID);
  expect_error({a.datasets()[0], no_uid.datasets()[1]}, "source instance 2 has no SOP Instance UID (0008,0018)");
  auto no_rows = test::make_series(a_spec);
  delete no_rows.datasets()[0]->remove(DCM_Rows);
  expect_error({no_rows.datasets()[0]}, "is not an image");
  // Planes in patient space share one pixel size.
  auto finer = test::make_series(a_spec);
  finer.datasets()[1]->putAndInsertString(DCM_PixelSpacing, "0.35\\0.3");
  expect_error({a.datasets()[0], finer.datasets()[1]},
               "source instance 2 (SOP Instance UID " + get(*finer.datasets()[1], DCM_SOPInstanceUID) +
                   ") has a different pixel size (PixelSpacing (0028,0030)) than the first source frame");
}

TEST(SourceImages, ImagesWithoutPlanesMayEachHaveTheirOwnPixelSize) {
  // Two radiographs of one size at different detector pixel sizes (no position, no orientation),
  // and an ultrasound image whose only scale is its region calibration.
  TempDir dir("seg-own-spacing");
  test::SeriesSpec spec;
  spec.rows = 16;
  spec.columns = 24;
  spec.frames = 3;
  spec.name = "radiographs";
  auto series = test::make_series(spec);
  const std::vector<std::string> imager{"0.2\\0.2", "0.15\\0.15"};
  for (size_t i = 0; i < 3; ++i) {
    DcmDataset* ds = series.datasets()[i];
    delete ds->remove(DCM_ImagePositionPatient);
    delete ds->remove(DCM_ImageOrientationPatient);
    delete ds->remove(DCM_PixelSpacing);
    ds->putAndInsertString(DCM_PatientOrientation, "A\\F");
    if (i < 2) {
      ds->putAndInsertString(DCM_ImagerPixelSpacing, imager[i].c_str());
    } else {
      DcmItem* region = nullptr;
      ds->findOrCreateSequenceItem(DCM_SequenceOfUltrasoundRegions, region, -2);
      region->putAndInsertUint16(DCM_RegionSpatialFormat, 1);
      region->putAndInsertUint16(DCM_PhysicalUnitsXDirection, 3);
      region->putAndInsertUint16(DCM_PhysicalUnitsYDirection, 3);
      region->putAndInsertFloat64(DCM_PhysicalDeltaX, 0.05);
      region->putAndInsertFloat64(DCM_PhysicalDeltaY, 0.04);
    }
  }
  const auto files = series.save(dir.path(), spec.name);
  SourceImages sources(series.datasets());
  ASSERT_FALSE(sources.has_geometry());
  EXPECT_FALSE(sources.pixel_spacing()) << "no one pixel size for the series";
  ASSERT_EQ(sources.frame_count(), 3u);
  const std::array<std::array<double, 2>, 3> expected{{{0.2, 0.2}, {0.15, 0.15}, {0.4, 0.5}}};
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(sources.frame(i).pixel_spacing) << i;
    EXPECT_NEAR((*sources.frame(i).pixel_spacing)[0], expected[i][0], 1e-12) << i;
    EXPECT_NEAR((*sources.frame(i).pixel_spacing)[1], expected[i][1], 1e-12) << i;
  }
  // The SEG is written (without Pixel Measures: no planes), and an SR region on the second image
  // is measured with that image's own pixel size.
  auto segments = two_disjoint_segments(sources, 78);
  auto checked = write_and_check(dir, spec.name, sources, segments, files);
  EXPECT_FALSE(checked.written.file->getDataset()->tagExists(DCM_FrameOfReferenceUID));
  seg::Segment on_second;
  on_second.description.label = "Nodule";
  seg::FrameMask m;
  m.frame = 1;
  m.binary.assign(16 * 24, 0);
  for (unsigned y = 4; y < 8; ++y)
    for (unsigned x = 6; x < 11; ++x) m.binary[y * 24 + x] = 1;  // a 5 x 4 pixel rectangle
  on_second.masks.push_back(m);
  const sr::ImageRegion region = sr::key_region(on_second, sources);
  ASSERT_TRUE(region.area_mm2);
  EXPECT_NEAR(*region.area_mm2, 20 * 0.15 * 0.15, 1e-9);
}

TEST(SourceImages, FunctionalGroupPixelSpacingIsTwoSizes) {
  // An enhanced image's Pixel Measures read as dicom/ reads them: exactly two sizes, the
  // per-frame group's before the shared one's; three values state no pixel size.
  test::SeriesSpec spec;
  spec.rows = 12;
  spec.columns = 10;
  spec.frames = 3;
  spec.enhanced_multiframe = true;
  spec.name = "enhanced-spacing";
  auto three = test::make_series(spec);
  DcmItem* shared = nullptr;
  ASSERT_TRUE(three.datasets()[0]->findAndGetSequenceItem(DCM_SharedFunctionalGroupsSequence, shared).good());
  DcmItem* measures = nullptr;
  ASSERT_TRUE(shared->findAndGetSequenceItem(DCM_PixelMeasuresSequence, measures).good());
  measures->putAndInsertString(DCM_PixelSpacing, "0.5\\0.5\\0.5");
  SourceImages without(three.datasets());
  EXPECT_FALSE(without.pixel_spacing());
  for (size_t f = 0; f < without.frame_count(); ++f) EXPECT_FALSE(without.frame(f).pixel_spacing) << f;
  // A valid per-frame value on the second frame: that frame has it, the others none.
  DcmItem* second = nullptr;
  ASSERT_TRUE(three.datasets()[0]->findAndGetSequenceItem(DCM_PerFrameFunctionalGroupsSequence, second, 1).good());
  DcmItem* own = nullptr;
  ASSERT_TRUE(second->findOrCreateSequenceItem(DCM_PixelMeasuresSequence, own, -2).good());
  own->putAndInsertString(DCM_PixelSpacing, "0.7\\0.6");
  SourceImages one(three.datasets());
  ASSERT_TRUE(one.frame(1).pixel_spacing);
  EXPECT_DOUBLE_EQ((*one.frame(1).pixel_spacing)[0], 0.7);
  EXPECT_DOUBLE_EQ((*one.frame(1).pixel_spacing)[1], 0.6);
  EXPECT_FALSE(one.frame(0).pixel_spacing);
  EXPECT_FALSE(one.frame(2).pixel_spacing);
}

TEST(SourceImages, SortsSlicesAlongTheNormal) {
  test::SeriesSpec spec;
  spec.frames = 5;
  spec.reverse_order = true;
  spec.orientation = {0, 1, 0, 0, 0, -1};  // sagittal: the normal is -x
  auto series = test::make_series(spec);
  SourceImages sources(series.datasets());
  ASSERT_TRUE(sources.has_geometry());
  EXPECT_EQ(sources.frames_in_slice_order(), (std::vector<size_t>{4, 3, 2, 1, 0}));
  ASSERT_TRUE(sources.slice_spacing());
  EXPECT_NEAR(*sources.slice_spacing(), 2.5, 1e-9);
}

}  // namespace
}  // namespace unibiomed::seg

namespace unibiomed::seg {
namespace {

// The direct encoding of the per-frame groups and of large Pixel Data writes exactly the bytes
// DCMTK's writer would, for classic and multi-frame sources, with and without geometry.
TEST(Part10File, SameBytesAsDcmtksWriter) {
  test::TempDir dir("part10");
  struct Case {
    unsigned size;
    bool enhanced;
    bool geometry;
  };
  // 512x512 takes the direct Pixel Data path, 9x9 does not; all take the per-frame encoder.
  for (const Case c : {Case{512, false, true}, Case{9, false, true}, Case{12, true, true}, Case{10, false, false}}) {
    test::SeriesSpec spec;
    spec.rows = c.size;
    spec.columns = c.size;
    spec.frames = 3;
    spec.enhanced_multiframe = c.enhanced;
    spec.name = "part10-" + std::to_string(c.size);
    auto series = test::make_series(spec);
    if (!c.geometry)
      for (auto* ds : series.datasets()) delete ds->remove(DCM_ImagePositionPatient);
    SourceImages sources(series.datasets());
    ASSERT_EQ(sources.has_geometry(), c.geometry);
    std::vector<Segment> segments(2);
    for (size_t s = 0; s < 2; ++s) {
      segments[s].description.label = "Random " + std::to_string(s);
      for (size_t f = 0; f < 3; ++f) {
        FrameMask m;
        m.frame = f;
        m.binary = test::random_mask(c.size, c.size, static_cast<std::uint32_t>(10 * s + f + 1), 0.3);
        segments[s].masks.push_back(std::move(m));
      }
    }
    auto written = write_segmentation(sources, segments);
    ASSERT_TRUE(written);
    const auto ours = dir / "ours.dcm", dcmtk = dir / "dcmtk.dcm";
    save_part10(*written->file, ours);
    ASSERT_TRUE(written->file->saveFile(dcmtk.c_str(), EXS_LittleEndianExplicit, EET_UndefinedLength).good());
    const std::string a = test::read_file(ours), b = test::read_file(dcmtk);
    EXPECT_EQ(a.size(), b.size()) << c.size;
    EXPECT_TRUE(a == b) << "the files differ for " << c.size << "x" << c.size;
    const auto bytes = part10_bytes(*written->file);
    EXPECT_TRUE(std::string(bytes.begin(), bytes.end()) == b) << "part10_bytes differs for " << c.size;
    // The dataset is complete again after saving (the tail was put back).
    DcmDataset& ds = *written->file->getDataset();
    const Uint8* pixels = nullptr;
    EXPECT_TRUE(ds.findAndGetUint8Array(DCM_PixelData, pixels).good());
    DcmItem* frame = nullptr;
    EXPECT_TRUE(ds.findAndGetSequenceItem(DCM_PerFrameFunctionalGroupsSequence, frame, 5).good());
  }
}

}  // namespace
}  // namespace unibiomed::seg
