// `unibiomed results write` as a user runs it: source files or folders, a NIfTI/NRRD label map
// written by ITK in the source geometry or PNGs per frame, a findings file; the written SEG and SR
// go through dciodvfy, pixelmed, dcmjs (with the Cornerstone adapter) and the OHIF-style SR
// reading. Every bad input gives exit code 3 and a message naming the culprit.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <gtest/gtest.h>
#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <itkNiftiImageIO.h>
#include <itkNrrdImageIO.h>

#include <nlohmann/json.hpp>

#include "dicom/raster_file.h"
#include "seg-writer/label_map_file.h"
#include "sr-writer/finding_geometry.h"
#include "sr-writer/findings_file.h"
#include "tests/support/test_support.h"
#include "tests/writers/synthetic_series.h"

namespace unibiomed::cli {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

// Labels per source frame (indexed like SourceImages), row-major.
using Labels = std::vector<std::vector<std::uint16_t>>;

struct VolumeDistortion {
  double spacing_scale = 1.0;
  double origin_shift_mm = 0.0;
  unsigned extra_columns = 0;
};

// Writes a label volume with ITK, slices in slice order, in the sources' geometry (or distorted).
void write_label_volume(const fs::path& path, const seg::SourceImages& sources, const Labels& labels,
                        VolumeDistortion distortion = {}) {
  using Volume = itk::Image<unsigned short, 3>;
  const auto order = sources.frames_in_slice_order();
  const unsigned columns = sources.columns() + distortion.extra_columns, rows = sources.rows();
  auto volume = Volume::New();
  Volume::RegionType region;
  region.SetSize({{columns, rows, order.size()}});
  volume->SetRegions(region);
  volume->Allocate(true);
  const auto& o = *sources.orientation();
  const auto n = *sources.normal();
  Volume::DirectionType direction;
  for (int k = 0; k < 3; ++k) {
    direction[k][0] = o[k];
    direction[k][1] = o[3 + k];
    direction[k][2] = n[k];
  }
  volume->SetDirection(direction);
  const auto& first = *sources.frame(order.front()).position;
  Volume::PointType origin;
  origin[0] = first[0] + distortion.origin_shift_mm;
  origin[1] = first[1];
  origin[2] = first[2];
  volume->SetOrigin(origin);
  const auto& ps = *sources.pixel_spacing();
  Volume::SpacingType spacing;
  spacing[0] = ps[1] * distortion.spacing_scale;  // x steps along a row: the column spacing
  spacing[1] = ps[0] * distortion.spacing_scale;
  spacing[2] = *sources.slice_spacing();
  volume->SetSpacing(spacing);
  for (size_t z = 0; z < order.size(); ++z) {
    const auto& frame = labels[order[z]];
    if (frame.empty()) continue;
    for (unsigned r = 0; r < rows; ++r)
      for (unsigned c = 0; c < sources.columns(); ++c)
        volume->SetPixel({{c, r, static_cast<long>(z)}}, frame[r * sources.columns() + c]);
  }
  auto writer = itk::ImageFileWriter<Volume>::New();
  const std::string name = path.string();
  if (name.find(".nrrd") != std::string::npos)
    writer->SetImageIO(itk::NrrdImageIO::New());
  else
    writer->SetImageIO(itk::NiftiImageIO::New());
  writer->SetFileName(name);
  writer->SetInput(volume);
  writer->Update();
}

// Segments of each label, for the expected masks of the node checks.
std::vector<seg::Segment> segments_of(const Labels& labels,
                                      const std::vector<std::pair<std::uint16_t, std::string>>& names) {
  seg::LabelMap map;
  map.frames = labels;
  std::vector<seg::Segment> out;
  for (const auto& [label, name] : names) {
    seg::Segment s;
    s.description.label = name;
    s.masks = seg::masks_for_label(map, label);
    out.push_back(std::move(s));
  }
  return out;
}

// Two findings: label 1 a large disc on frames 1-3, label 2 a small one on frames 2-3.
Labels two_labels(const seg::SourceImages& sources) {
  Labels labels(sources.frame_count());
  const unsigned rows = sources.rows(), columns = sources.columns();
  for (size_t f = 1; f <= 3 && f < sources.frame_count(); ++f) {
    labels[f].assign(static_cast<size_t>(rows) * columns, 0);
    const auto big = test::ellipse_mask(rows, columns, columns * 0.35, rows * 0.45, columns * 0.25, rows * 0.3);
    const auto small = test::ellipse_mask(rows, columns, columns * 0.75, rows * 0.6, 2.2, 2.8);
    for (size_t i = 0; i < big.size(); ++i) {
      if (big[i]) labels[f][i] = 1;
      if (small[i] && f >= 2) labels[f][i] = 2;
    }
  }
  return labels;
}

test::CommandResult results_write(const std::vector<std::string>& args) {
  std::vector<std::string> argv{test::cli_path().string(), "results", "write"};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run_command(argv);
}

std::string get(DcmItem& item, const DcmTagKey& tag, long index = 0) {
  OFString v;
  item.findAndGetOFString(tag, v, index);
  return v.c_str();
}

void check_seg(const TempDir& dir, const fs::path& seg_path, const seg::SourceImages& sources,
               const std::vector<seg::Segment>& segments, const std::vector<fs::path>& source_files) {
  std::string output;
  EXPECT_TRUE(test::dciodvfy_errors(seg_path, &output).empty()) << output;
  const auto expected = dir / "expected-seg.json";
  test::write_file(expected, test::expected_masks_json(sources, segments, {}));
  std::vector<std::string> node{test::node_program(), (test::js_dir() / "check_seg.js").string(), seg_path.string(),
                                expected.string(), "--adapter"};
  for (const auto& f : source_files) node.push_back(f.string());
  const auto js = test::run_command(node);
  EXPECT_EQ(js.exit_code, 0) << js.output;
  std::cout << "  dcmjs: " << js.output;
}

TEST(ResultsWriteCommand, NiftiLabelMapWithFindingsMakesValidSegAndSr) {
  ASSERT_EQ(test::dcmjs_missing_reason(), "");
  TempDir dir("results-nifti");
  test::SeriesSpec spec;
  spec.rows = 20;
  spec.columns = 24;
  spec.frames = 5;
  spec.orientation = {1, 0, 0, 0, 0.8, -0.6};  // tilted: the label map must follow
  spec.reverse_order = true;
  spec.name = "results-ct";
  auto series = test::make_series(spec);
  fs::create_directories(dir / "ct");
  const auto files = series.save(dir / "ct", "slice");
  seg::SourceImages sources(series.datasets());
  const Labels labels = two_labels(sources);
  write_label_volume(dir / "labels.nii.gz", sources, labels);
  const auto example = test::source_dir() / "sr-writer/findings.example.json";
  const auto run = results_write({"--source", (dir / "ct").string(), "--masks", (dir / "labels.nii.gz").string(),
                                  "--findings", example.string(), "-o", (dir / "out").string(), "--uid-seed", "run-1",
                                  "--weights-hash", "sha256:abc"});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find((dir / "out" / "seg.dcm").string()), std::string::npos) << run.output;
  EXPECT_NE(run.output.find((dir / "out" / "sr.dcm").string()), std::string::npos) << run.output;
  check_seg(dir, dir / "out" / "seg.dcm", sources, segments_of(labels, {{1, "Liver"}, {2, "Lesion"}}), files);

  // The SR: validators and the OHIF-style reading, against the SEG's tracking UIDs.
  auto seg_file = test::load_file(dir / "out" / "seg.dcm");
  ASSERT_TRUE(seg_file);
  DcmDataset& seg = *seg_file->getDataset();
  std::string output;
  EXPECT_TRUE(test::dciodvfy_errors(dir / "out" / "sr.dcm", &output).empty()) << output;
  EXPECT_TRUE(test::pixelmed_sr_errors(dir / "out" / "sr.dcm", &output).empty()) << output;
  nlohmann::json expected;
  expected["study"] = sources.study_instance_uid();
  expected["sources"] = nlohmann::json::array();
  for (const auto& f : sources.frames()) expected["sources"].push_back(f.sop_instance_uid);
  expected["segs"] = {get(seg, DCM_SOPInstanceUID)};
  expected["texts"] = {"Impression: solitary liver lesion; follow-up recommended."};
  const auto segments = segments_of(labels, {{1, "Liver"}, {2, "Lesion"}});
  for (int s = 0; s < 2; ++s) {
    DcmItem* item = nullptr;
    ASSERT_TRUE(seg.findAndGetSequenceItem(DCM_SegmentSequence, item, s).good());
    const auto region = sr::key_region(segments[s], sources);
    const auto& key = sources.frame(region.frame);
    expected["findings"].push_back({{"tracking_uid", get(*item, DCM_TrackingUID)},
                                    {"segment", {{"sop", get(seg, DCM_SOPInstanceUID)}, {"number", s + 1}}},
                                    {"region",
                                     {{"sop", key.sop_instance_uid},
                                      {"frame", 0},
                                      {"graphic_type", "POLYLINE"},
                                      {"points", region.points.size() + 1}}}});
  }
  test::write_file(dir / "expected-sr.json", expected.dump());
  const auto js = test::run_command({test::node_program(), (test::js_dir() / "check_sr.js").string(),
                                     (dir / "out" / "sr.dcm").string(), (dir / "expected-sr.json").string()});
  EXPECT_EQ(js.exit_code, 0) << js.output;
  std::cout << "  OHIF-style: " << js.output;
  const auto dump = test::run_command({"dsrdump", "+Pc", "+Pl", (dir / "out" / "sr.dcm").string()});
  EXPECT_NE(dump.output.find("A 2 cm hypodense lesion in the right hepatic lobe."), std::string::npos) << dump.output;
  // The lesion's confidence of 0.87, as its Certainty of Finding; the liver has none.
  const std::string lesion_certainty = "Certainty of Finding\")=\"87\" (%,UCUM,\"percent\")";
  const size_t certainty = dump.output.find("Certainty of Finding");
  EXPECT_EQ(dump.output.substr(certainty == std::string::npos ? 0 : certainty, lesion_certainty.size()),
            lesion_certainty)
      << dump.output;
  EXPECT_EQ(dump.output.find("Certainty of Finding", certainty + 1), std::string::npos) << dump.output;
  EXPECT_NE(dump.output.find("weights sha256:abc"), std::string::npos) << dump.output;
  DcmItem* first = nullptr;
  ASSERT_TRUE(seg.findAndGetSequenceItem(DCM_SegmentSequence, first, 0).good());
  EXPECT_EQ(get(*first, DCM_SegmentLabel), "Liver");

  // The same seed gives the same UIDs.
  const auto again =
      results_write({"--source", (dir / "ct").string(), "--masks", (dir / "labels.nii.gz").string(), "--findings",
                     example.string(), "-o", (dir / "again").string(), "--uid-seed", "run-1"});
  ASSERT_EQ(again.exit_code, 0) << again.output;
  auto again_seg = test::load_file(dir / "again" / "seg.dcm");
  EXPECT_EQ(get(*again_seg->getDataset(), DCM_SOPInstanceUID), get(seg, DCM_SOPInstanceUID));
}

TEST(ResultsWriteCommand, NrrdWithoutFindingsGivesGenericFindings) {
  TempDir dir("results-nrrd");
  test::SeriesSpec spec;
  spec.rows = 16;
  spec.columns = 16;
  spec.frames = 4;
  spec.name = "results-nrrd";
  auto series = test::make_series(spec);
  const auto files = series.save(dir.path(), "slice");
  seg::SourceImages sources(series.datasets());
  const Labels labels = two_labels(sources);
  write_label_volume(dir / "labels.nrrd", sources, labels);
  std::vector<std::string> args{"--masks", (dir / "labels.nrrd").string(), "-o", (dir / "out").string(), "--source"};
  args.push_back(files[0].string());
  for (size_t i = 1; i < files.size(); ++i) args.push_back(files[i].string());  // the rest as arguments
  const auto run = results_write(args);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  check_seg(dir, dir / "out" / "seg.dcm", sources, segments_of(labels, {{1, "Finding 1"}, {2, "Finding 2"}}), files);
  std::string output;
  EXPECT_TRUE(test::dciodvfy_errors(dir / "out" / "sr.dcm", &output).empty()) << output;
}

TEST(ResultsWriteCommand, OnePngPerFrameInSliceOrder) {
  TempDir dir("results-png");
  test::SeriesSpec spec;
  spec.rows = 13;
  spec.columns = 11;  // 143 pixels: frames start mid-byte
  spec.frames = 3;
  spec.reverse_order = true;
  spec.name = "results-png";
  auto series = test::make_series(spec);
  const auto files = series.save(dir.path(), "slice");
  seg::SourceImages sources(series.datasets());
  Labels labels = two_labels(sources);
  for (auto& f : labels)
    if (f.empty()) f.assign(13 * 11, 0);
  std::vector<std::string> args{"--source", dir.path().string(), "-o", (dir / "out").string()};
  const auto order = sources.frames_in_slice_order();
  for (size_t k = 0; k < order.size(); ++k) {
    dicom::GreyImage png{11, 13, {}};
    for (auto v : labels[order[k]]) png.grey.push_back(static_cast<std::uint8_t>(v));
    const auto path = dir / ("mask-" + std::to_string(k) + ".png");
    dicom::write_png(path, png);
    args.push_back("--masks");
    args.push_back(path.string());
  }
  // The source folder also holds the PNGs: dicom/ skips companion files.
  const auto run = results_write(args);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  check_seg(dir, dir / "out" / "seg.dcm", sources, segments_of(labels, {{1, "Finding 1"}, {2, "Finding 2"}}), files);

  // A single image (pydicom's CT) with one PNG.
  const auto ct = test::pydicom_test_file("CT_small.dcm");
  auto ct_file = test::load_file(ct);
  ASSERT_TRUE(ct_file);
  seg::SourceImages single({ct_file->getDataset()});
  dicom::GreyImage png{128, 128, std::vector<std::uint8_t>(128 * 128, 0)};
  const auto disc = test::ellipse_mask(128, 128, 60, 50, 20, 12);
  for (size_t i = 0; i < disc.size(); ++i) png.grey[i] = disc[i] ? 7 : 0;
  dicom::write_png(dir / "ct.png", png);
  const auto single_run =
      results_write({"--source", ct.string(), "--masks", (dir / "ct.png").string(), "-o", (dir / "ct-out").string()});
  ASSERT_EQ(single_run.exit_code, 0) << single_run.output;
  Labels ct_labels{std::vector<std::uint16_t>(png.grey.begin(), png.grey.end())};
  check_seg(dir, dir / "ct-out" / "seg.dcm", single, segments_of(ct_labels, {{7, "Finding 7"}}), {ct});
}

TEST(ResultsWriteCommand, BadInputsAreClearErrors) {
  TempDir dir("results-bad");
  test::SeriesSpec spec;
  spec.rows = 12;
  spec.columns = 10;
  spec.frames = 4;
  spec.name = "results-bad";
  auto series = test::make_series(spec);
  fs::create_directories(dir / "ct");
  series.save(dir / "ct", "slice");
  seg::SourceImages sources(series.datasets());
  const Labels labels = two_labels(sources);
  write_label_volume(dir / "good.nii.gz", sources, labels);
  const std::string ct = (dir / "ct").string(), good = (dir / "good.nii.gz").string(), out = (dir / "out").string();
  auto expect = [&](const std::vector<std::string>& args, int code, const std::string& text) {
    const auto run = results_write(args);
    EXPECT_EQ(run.exit_code, code) << run.output;
    EXPECT_NE(run.output.find(text), std::string::npos) << "expected '" << text << "' in:\n" << run.output;
    EXPECT_FALSE(fs::exists(dir / "out" / "seg.dcm")) << "a file was written for: " << text;
  };
  VolumeDistortion spacing;
  spacing.spacing_scale = 1.1;
  write_label_volume(dir / "spacing.nii.gz", sources, labels, spacing);
  expect({"--source", ct, "--masks", (dir / "spacing.nii.gz").string(), "-o", out}, 3, "spacing.nii.gz: voxel spacing");
  VolumeDistortion shifted;
  shifted.origin_shift_mm = 5;
  write_label_volume(dir / "shifted.nii.gz", sources, labels, shifted);
  expect({"--source", ct, "--masks", (dir / "shifted.nii.gz").string(), "-o", out}, 3,
         "shifted.nii.gz: slice 0 lies at");
  VolumeDistortion wide;
  wide.extra_columns = 1;
  write_label_volume(dir / "wide.nrrd", sources, labels, wide);
  expect({"--source", ct, "--masks", (dir / "wide.nrrd").string(), "-o", out}, 3,
         "wide.nrrd: is 11x12x4 voxels, but the source series has 10x12 pixels in 4 frames");
  write_label_volume(dir / "empty.nii.gz", sources, Labels(4));
  expect({"--source", ct, "--masks", (dir / "empty.nii.gz").string(), "-o", out}, 3, "has no labelled pixel");
  test::write_file(dir / "one.json", R"({"findings": [{"label": 1, "name": "Liver"}]})");
  expect({"--source", ct, "--masks", good, "--findings", (dir / "one.json").string(), "-o", out}, 3,
         "has label 2, which " + (dir / "one.json").string() + " does not list");
  test::write_file(
      dir / "three.json",
      R"({"findings": [{"label": 1, "name": "A"}, {"label": 2, "name": "B"}, {"label": 3, "name": "C"}]})");
  expect({"--source", ct, "--masks", good, "--findings", (dir / "three.json").string(), "-o", out}, 3,
         "finding 'C' (label 3) of " + (dir / "three.json").string() + " has no pixel in");
  test::write_file(dir / "typo.json", R"({"findings": [{"label": 1, "name": "A", "colour": "blue"}]})");
  expect({"--source", ct, "--masks", good, "--findings", (dir / "typo.json").string(), "-o", out}, 3,
         "typo.json: findings[0].colour: a colour is");
  test::write_file(dir / "m.png", "not a png");
  expect({"--source", ct, "--masks", (dir / "m.png").string(), "-o", out}, 3,
         "1 PNG label files for a source series of 4 frames");
  expect({"--source", ct, "--masks", (dir / "labels.txt").string(), "-o", out}, 3, "not a label volume");
  expect({"--source", ct, "--masks", (dir / "missing.nii.gz").string(), "-o", out}, 3, "missing.nii.gz: no such file");
  test::SeriesSpec other_spec;
  other_spec.name = "results-other";
  auto other = test::make_series(other_spec);
  fs::create_directories(dir / "other");
  other.save(dir / "other", "slice");
  expect({"--source", ct, "--source", (dir / "other").string(), "--masks", good, "-o", out}, 3,
         "the sources hold 2 series");
  expect({"--source", (dir / "nowhere").string(), "--masks", good, "-o", out}, 3, "nowhere");
  expect({"--source", ct, "-o", out}, 2, "give the label map with --masks FILE");
  expect({"--source", ct, "--masks", good}, 2, "give the output folder with -o DIR");
  const auto help = results_write({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("--findings FILE"), std::string::npos) << help.output;
}

}  // namespace
}  // namespace unibiomed::cli
