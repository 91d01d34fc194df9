// The TID 1500 writer on real readers: dciodvfy and pixelmed's DicomSRValidator report no
// errors, dsrdump reads the tree, and an OHIF-style reading (tests/js/check_sr.js, the logic of
// OHIF 3.13.2's SR loader on dcmjs) finds every finding with its tracking UID, its SCOORD on the
// key slice and its SEG segment. Also the outline and measurement geometry.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "seg-writer/decimal_string.h"
#include "seg-writer/dicom_uid.h"
#include "seg-writer/part10_file.h"
#include "seg-writer/segmentation_writer.h"
#include "sr-writer/finding_geometry.h"
#include "sr-writer/measurement_report.h"
#include "tests/support/test_support.h"
#include "tests/writers/synthetic_series.h"

namespace unibiomed::sr {
namespace {

using test::TempDir;

std::string get(DcmItem& item, const DcmTagKey& tag) {
  OFString v;
  item.findAndGetOFStringArray(tag, v);
  return v.c_str();
}

seg::Segment segment(const std::string& label, std::vector<seg::FrameMask> masks) {
  seg::Segment s;
  s.description.label = label;
  s.description.algorithm.version = "0.1.0";
  s.masks = std::move(masks);
  return s;
}

seg::FrameMask mask(size_t frame, std::vector<std::uint8_t> values) {
  seg::FrameMask m;
  m.frame = frame;
  m.binary = std::move(values);
  return m;
}

// The findings as the pipeline makes them from segments: key region, measurements, tracking UID.
std::vector<ReportedFinding> findings_for(const seg::SourceImages& sources, const std::vector<seg::Segment>& segments,
                                          const seg::WrittenSegmentation& seg) {
  std::vector<ReportedFinding> out;
  for (size_t s = 0; s < segments.size(); ++s) {
    ReportedFinding f;
    f.tracking_uid = seg.tracking_uids[s];
    f.tracking_id = segments[s].description.label + " " + std::to_string(s + 1);
    f.finding = segments[s].description.type;
    f.finding_site = seg::CodedConcept{"10200004", "SCT", "Liver"};
    f.text = "There is a " + segments[s].description.label + " in the liver.";
    f.measurements = segment_measurements(segments[s], sources);
    f.segment_number = static_cast<std::uint16_t>(s + 1);
    f.region = key_region(segments[s], sources);
    out.push_back(std::move(f));
  }
  return out;
}

std::string expected_json(const seg::SourceImages& sources, const std::vector<ReportedFinding>& findings,
                          const std::string& seg_sop, const std::vector<std::string>& texts) {
  nlohmann::json e;
  e["study"] = sources.study_instance_uid();
  e["sources"] = nlohmann::json::array();
  for (const auto& f : sources.frames())
    if (f.frame_number <= 1) e["sources"].push_back(f.sop_instance_uid);
  e["segs"] = seg_sop.empty() ? nlohmann::json::array() : nlohmann::json::array({seg_sop});
  e["texts"] = texts;
  e["findings"] = nlohmann::json::array();
  for (const auto& f : findings) {
    nlohmann::json j;
    j["tracking_uid"] = f.tracking_uid;
    // The readable label OHIF shows for the tracked measurement: the finding's name and its site,
    // unless the finding is the site (an organ).
    const bool organ = f.finding_site && f.finding_site->value == f.finding.value;
    if (!f.tracking_id.empty())
      j["label"] = f.tracking_id + (f.finding_site && !organ ? " (" + f.finding_site->meaning + ")" : std::string());
    j["segment"] = f.segment_number ? nlohmann::json{{"sop", seg_sop}, {"number", f.segment_number}} : nlohmann::json();
    const auto& frame = sources.frame(f.region->frame);
    const bool point = f.region->shape == ImageRegion::Shape::Point;
    j["region"] = {{"sop", frame.sop_instance_uid},
                   {"frame", frame.frame_number},
                   {"graphic_type", point ? "POINT" : "POLYLINE"},
                   {"points", f.region->points.size() + (point ? 0 : 1)}};
    e["findings"].push_back(j);
  }
  return e.dump();
}

// Saves the SR and runs dciodvfy, pixelmed, dsrdump and the OHIF-style reading on it.
void check_report(const TempDir& dir, const std::string& name, WrittenReport& report, const std::string& expected) {
  const auto path = dir / (name + "-sr.dcm");
  seg::save_part10(*report.file, path);
  std::string output;
  EXPECT_TRUE(test::dciodvfy_errors(path, &output).empty()) << name << ": dciodvfy:\n" << output;
  const auto pixelmed = test::pixelmed_sr_errors(path, &output);
  EXPECT_TRUE(pixelmed.empty()) << name << ": pixelmed DicomSRValidator:\n" << output;
  const auto dump = test::run_command({"dsrdump", "+Pc", path.string()});
  EXPECT_EQ(dump.exit_code, 0) << dump.output;
  EXPECT_NE(dump.output.find("Imaging Measurement Report"), std::string::npos) << dump.output;
  const auto expected_path = dir / (name + "-expected-sr.json");
  test::write_file(expected_path, expected);
  EXPECT_EQ(test::dcmjs_missing_reason(), "");
  const auto js = test::run_command(
      {test::node_program(), (test::js_dir() / "check_sr.js").string(), path.string(), expected_path.string()});
  EXPECT_EQ(js.exit_code, 0) << name << ": OHIF-style reading:\n" << js.output;
  std::cout << "  " << name << ": " << js.output;
}

TEST(MeasurementReport, FindingsOnACtSeriesPassTheValidatorsAndReadLikeOhif) {
  TempDir dir("sr-ct");
  test::SeriesSpec spec;
  spec.rows = 32;
  spec.columns = 40;
  spec.frames = 6;
  spec.name = "sr-ct";
  auto series = test::make_series(spec);
  series.save(dir.path(), spec.name);
  seg::SourceImages sources(series.datasets());
  std::vector<seg::Segment> segments{segment("Lesion", {mask(1, test::ellipse_mask(32, 40, 12, 10, 5, 4)),
                                                        mask(2, test::ellipse_mask(32, 40, 12, 10, 7, 5)),
                                                        mask(3, test::ellipse_mask(32, 40, 12, 10, 4, 3))}),
                                     segment("Cyst", {mask(4, test::ellipse_mask(32, 40, 30, 22, 3, 3))}),
                                     segment("Liver", {mask(0, test::ellipse_mask(32, 40, 20, 16, 9, 7))})};
  // The third finding is the organ itself: its label does not repeat it as the site.
  segments[2].description.category = seg::codes::anatomical_structure();
  segments[2].description.type = {"10200004", "SCT", "Liver"};
  seg::SegmentationOptions seg_options;
  seg_options.uid_seed = "sr-ct";
  auto seg = seg::write_segmentation(sources, segments, seg_options);
  ASSERT_TRUE(seg);
  seg::save_part10(*seg->file, dir / "sr-ct-seg.dcm");
  auto findings = findings_for(sources, segments, *seg);
  findings[0].certainty = 0.853;  // the model's confidence; the others have none
  ReportOptions options;
  options.algorithm.version = "0.1.0";
  options.algorithm.parameters = "weights sha256 0123abcd";
  options.uid_seed = "sr-ct";
  const std::vector<ReportText> texts{{{"121106", "DCM", "Comment"}, "Findings: a lesion and a cyst."}};
  auto report = write_measurement_report({{&sources, seg->file->getDataset(), findings}}, texts, options);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->measurement_groups, 3u);  // one group per finding
  check_report(dir, "sr-ct", *report, expected_json(sources, findings, seg->sop_instance_uid, {texts[0].text}));
  DcmDataset& ds = *report->file->getDataset();
  // The content tree of the first finding's group, as dsrdump prints it: the tool OHIF imports it
  // as, the whole segment, the site, the label, then the key-slice area INFERRED FROM the outline
  // selected from the key frame, then volume and long axis, the model's confidence in percent,
  // then the model's sentence.
  const auto dump = test::run_command({"dsrdump", "+Pc", "+Pl", (dir / "sr-ct-sr.dcm").string()});
  const std::vector<std::string> in_order{
      "(112039,DCM,\"Tracking Identifier\")=\"Cornerstone3DTools@^0.1.0:PlanarFreehandROI\"",
      "(121191,DCM,\"Referenced Segment\")",
      "(121214,DCM,\"Referenced Segmentation Frame\")",
      "(121233,DCM,\"Source image for segmentation\")",
      "(363698007,SCT,\"Finding Site\")=(10200004,SCT,\"Liver\")",
      "(121106,DCM,\"Comment\")=\"Lesion 1 (Liver)\"",
      "(42798000,SCT,\"Area\")",
      "<inferred from SCOORD:(111030,DCM,\"Image Region\")=(POLYLINE,",
      "<selected from IMAGE:=(CT image,)>",
      "(118565006,SCT,\"Volume\")",
      "(103339001,SCT,\"Long axis\")",
      "(111012,DCM,\"Certainty of Finding\")=\"85.3\" (%,UCUM,\"percent\")",
      "(121106,DCM,\"Comment\")=\"There is a Lesion in the liver.\""};
  size_t at = 0;
  for (const auto& text : in_order) {
    const size_t found = dump.output.find(text, at);
    EXPECT_NE(found, std::string::npos) << "'" << text << "' after offset " << at << " in:\n" << dump.output;
    if (found != std::string::npos) at = found + text.size();
  }
  EXPECT_EQ(dump.output.find("Long Axis"), std::string::npos) << "OHIF shows \"Long Axis\" as \"L: :\"";
  const size_t certainty = dump.output.find("Certainty of Finding");
  EXPECT_EQ(dump.output.find("Certainty of Finding", certainty + 1), std::string::npos) << "only the first has one";
  EXPECT_NE(dump.output.find("(121106,DCM,\"Comment\")=\"Cyst 2 (Liver)\""), std::string::npos) << dump.output;
  EXPECT_NE(dump.output.find("(121106,DCM,\"Comment\")=\"Liver 3\""), std::string::npos) << dump.output;
  EXPECT_EQ(dump.output.find("Liver 3 (Liver)"), std::string::npos) << dump.output;
  EXPECT_EQ(get(ds, DCM_SeriesDescription), "UniBiomed findings");
  EXPECT_EQ(get(ds, DCM_Manufacturer), "UniBiomed");
  EXPECT_EQ(get(ds, DCM_StudyInstanceUID), sources.study_instance_uid());
  EXPECT_EQ(get(ds, DCM_PatientID), get(*series.datasets()[0], DCM_PatientID));
  EXPECT_EQ(get(ds, DCM_AccessionNumber), get(*series.datasets()[0], DCM_AccessionNumber));
  EXPECT_NE(get(ds, DCM_SeriesInstanceUID), seg->series_instance_uid);
  // The key slice of the lesion is frame 2 (largest ellipse); its outline's area is its pixel count.
  EXPECT_EQ(findings[0].region->frame, 2u);
  const auto pixels = std::count(segments[0].masks[1].binary.begin(), segments[0].masks[1].binary.end(), 1);
  EXPECT_NEAR(*findings[0].region->area_mm2, pixels * 0.7 * 0.6, 1e-9);
  // Deterministic UIDs with a seed.
  auto again = write_measurement_report({{&sources, seg->file->getDataset(), findings}}, texts, options);
  EXPECT_EQ(again->sop_instance_uid, report->sop_instance_uid);
}

TEST(MeasurementReport, SourcesWithLeadingZeroUidsAndInvalidHeaderValues) {
  // A source whose UIDs have leading zeros ("1.2.840.0123...", common in older archives, refused by
  // DCMTK's checks) is referenced by those UIDs as they are; a header value that breaks its VR
  // (an age "45Y") is left out. The report is written and read the way OHIF reads it.
  TempDir dir("sr-leading-zero");
  test::SeriesSpec spec;
  spec.rows = 24;
  spec.columns = 24;
  spec.frames = 4;
  spec.name = "sr-leading-zero";
  auto series = test::make_series(spec);
  for (auto* ds : series.datasets()) {
    for (const DcmTagKey& tag :
         {DCM_StudyInstanceUID, DCM_SeriesInstanceUID, DCM_SOPInstanceUID, DCM_FrameOfReferenceUID}) {
      const std::string uid = get(*ds, tag);
      ds->putAndInsertString(tag, ("1.2.840.0123." + uid.substr(uid.rfind('.') + 1)).c_str());
    }
    ds->putAndInsertString(DCM_PatientAge, "45Y");
    ds->putAndInsertString(DCM_StudyDate, "2024-01-02");
  }
  series.save(dir.path(), spec.name);
  seg::SourceImages sources(series.datasets());
  std::vector<seg::Segment> segments{segment("Lesion", {mask(1, test::ellipse_mask(24, 24, 12, 12, 5, 4)),
                                                        mask(2, test::ellipse_mask(24, 24, 12, 12, 6, 5))})};
  auto seg = seg::write_segmentation(sources, segments, {});
  ASSERT_TRUE(seg);
  seg::save_part10(*seg->file, dir / "sr-leading-zero-seg.dcm");
  auto findings = findings_for(sources, segments, *seg);
  auto report = write_measurement_report({{&sources, seg->file->getDataset(), findings}}, {}, {});
  ASSERT_TRUE(report);
  DcmDataset& ds = *report->file->getDataset();
  EXPECT_EQ(get(ds, DCM_StudyInstanceUID), sources.study_instance_uid());
  EXPECT_FALSE(ds.tagExists(DCM_PatientAge));
  EXPECT_EQ(get(ds, DCM_StudyDate), "");
  const auto path = dir / "sr-leading-zero-sr.dcm";
  seg::save_part10(*report->file, path);
  // dciodvfy objects to the source's UIDs and to nothing else.
  std::string output;
  size_t about_sources = 0;
  EXPECT_EQ(test::dciodvfy_errors_besides_leading_zeros(path, about_sources, &output), std::vector<std::string>{})
      << output;
  EXPECT_GT(about_sources, 0u) << output;
  const auto expected_path = dir / "sr-leading-zero-expected-sr.json";
  test::write_file(expected_path, expected_json(sources, findings, seg->sop_instance_uid, {}));
  const auto js = test::run_command(
      {test::node_program(), (test::js_dir() / "check_sr.js").string(), path.string(), expected_path.string()});
  EXPECT_EQ(js.exit_code, 0) << js.output;
}

TEST(MeasurementReport, MultiFrameSourceRegionsReferenceTheirFrame) {
  TempDir dir("sr-multiframe");
  test::SeriesSpec spec;
  spec.rows = 20;
  spec.columns = 18;
  spec.frames = 5;
  spec.enhanced_multiframe = true;
  spec.name = "sr-mr";
  auto series = test::make_series(spec);
  seg::SourceImages sources(series.datasets());
  std::vector<seg::Segment> segments{segment("Tumour", {mask(3, test::ellipse_mask(20, 18, 9, 9, 5, 6))})};
  auto seg = seg::write_segmentation(sources, segments);
  ASSERT_TRUE(seg);
  auto findings = findings_for(sources, segments, *seg);
  auto report = write_measurement_report({{&sources, seg->file->getDataset(), findings}}, {});
  ASSERT_TRUE(report);
  check_report(dir, "sr-mr", *report, expected_json(sources, findings, seg->sop_instance_uid, {}));
}

TEST(MeasurementReport, SourcesWithoutPixelSpacingKeepTheirRegionForOhif) {
  // No pixel spacing: no measurement at all, so the region is the group's own SCOORD; OHIF still
  // draws and imports the finding, and the validators accept the group with its segment.
  TempDir dir("sr-no-spacing");
  test::SeriesSpec spec;
  spec.rows = 16;
  spec.columns = 16;
  spec.frames = 3;
  spec.name = "sr-no-spacing";
  auto series = test::make_series(spec);
  for (auto* ds : series.datasets()) delete ds->remove(DCM_PixelSpacing);
  seg::SourceImages sources(series.datasets());
  ASSERT_FALSE(sources.pixel_spacing().has_value());
  std::vector<seg::Segment> segments{segment("Lesion", {mask(1, test::ellipse_mask(16, 16, 8, 8, 4, 3))})};
  auto seg = seg::write_segmentation(sources, segments);
  ASSERT_TRUE(seg);
  auto findings = findings_for(sources, segments, *seg);
  ASSERT_TRUE(findings[0].measurements.empty());
  ASSERT_FALSE(findings[0].region->area_mm2.has_value());
  auto report = write_measurement_report({{&sources, seg->file->getDataset(), findings}}, {});
  ASSERT_TRUE(report);
  check_report(dir, "sr-no-spacing", *report, expected_json(sources, findings, seg->sop_instance_uid, {}));
  // The key-slice area in pixels carries the region.
  const auto pixels = std::count(segments[0].masks[0].binary.begin(), segments[0].masks[0].binary.end(), 1);
  const auto dump = test::run_command({"dsrdump", "+Pc", "+Pl", (dir / "sr-no-spacing-sr.dcm").string()});
  EXPECT_NE(dump.output.find("(42798000,SCT,\"Area\")=\"" + std::to_string(pixels) + "\" ({pixels},UCUM,\"pixels\")"),
            std::string::npos)
      << dump.output;
}

TEST(MeasurementReport, ASegmentInPiecesHasTheOneAreaOfItsOutline) {
  // `unibiomed results write` measures a single image's segment over all its pieces; the group's
  // outline is its largest piece. The report gives that outline's area, and only that one.
  TempDir dir("sr-pieces");
  auto file = test::load_file(test::pydicom_test_file("CT_small.dcm"));
  ASSERT_TRUE(file);
  seg::SourceImages sources({file->getDataset()});
  ASSERT_TRUE(sources.pixel_spacing());
  std::vector<std::uint8_t> pieces(128 * 128, 0);
  for (int r = 20; r < 30; ++r)
    for (int c = 20; c < 30; ++c) pieces[r * 128 + c] = 1;  // 100 pixels
  for (int r = 80; r < 86; ++r)
    for (int c = 90; c < 97; ++c) pieces[r * 128 + c] = 1;  // 42 pixels
  std::vector<seg::Segment> segments{segment("Lesion", {mask(0, pieces)})};
  auto seg = seg::write_segmentation(sources, segments);
  ASSERT_TRUE(seg);
  auto findings = findings_for(sources, segments, *seg);
  const double pixel = (*sources.pixel_spacing())[0] * (*sources.pixel_spacing())[1];
  ASSERT_EQ(findings[0].measurements.size(), 1u);
  ASSERT_NEAR(findings[0].measurements[0].value, 142 * pixel, 1e-9);  // over both pieces
  ASSERT_NEAR(*findings[0].region->area_mm2, 100 * pixel, 1e-9);      // the outline's
  auto report = write_measurement_report({{&sources, seg->file->getDataset(), findings}}, {});
  ASSERT_TRUE(report);
  check_report(dir, "sr-pieces", *report, expected_json(sources, findings, seg->sop_instance_uid, {}));
  const auto dump = test::run_command({"dsrdump", "+Pc", "+Pl", (dir / "sr-pieces-sr.dcm").string()});
  const std::string area = "(42798000,SCT,\"Area\")=\"";
  const size_t first = dump.output.find(area);
  ASSERT_NE(first, std::string::npos) << dump.output;
  EXPECT_EQ(dump.output.find(area, first + 1), std::string::npos) << "a second area:\n" << dump.output;
  EXPECT_EQ(dump.output.compare(first + area.size(), seg::format_ds(100 * pixel).size() + 1,
                                seg::format_ds(100 * pixel) + "\""),
            0)
      << dump.output;
}

TEST(MeasurementReport, AnswersWithoutMasksAreReportText) {
  TempDir dir("sr-text");
  auto file = test::load_file(test::pydicom_test_file("CT_small.dcm"));
  ASSERT_TRUE(file);
  seg::SourceImages sources({file->getDataset()});
  const std::vector<ReportText> texts{{{"121106", "DCM", "Comment"}, "Q: Is there a fracture? A: No fracture is seen."},
                                      {{"121106", "DCM", "Comment"}, "The lungs are clear; Größe normal."}};
  auto report = write_measurement_report({{&sources, nullptr, {}}}, texts);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->measurement_groups, 0u);
  check_report(dir, "sr-text", *report, expected_json(sources, {}, "", {texts[0].text, texts[1].text}));
  EXPECT_EQ(get(*report->file->getDataset(), DCM_SpecificCharacterSet), "ISO_IR 192");
  // DCMTK reads the UTF-8 text back as written.
  const auto dump = test::run_command({"dsrdump", "+Pl", (dir / "sr-text-sr.dcm").string()});
  EXPECT_NE(dump.output.find("Größe normal"), std::string::npos) << dump.output;
}

// A second analysis of a study revises the first one's report: the new SR names the old one in
// its Predecessor Documents Sequence (study, series, SOP class and instance), and the validators
// still accept it. A predecessor without usable UIDs, or the report itself, is refused by name.
TEST(MeasurementReport, ARevisedReportNamesTheReportItRevises) {
  TempDir dir("sr-revised");
  auto file = test::load_file(test::pydicom_test_file("CT_small.dcm"));
  ASSERT_TRUE(file);
  seg::SourceImages sources({file->getDataset()});
  const std::vector<ReportText> texts{{{"121106", "DCM", "Comment"}, "No fracture is seen."}};
  ReportOptions first_options;
  first_options.uid_seed = "sr-revised/1";
  auto first = write_measurement_report({{&sources, nullptr, {}}}, texts, first_options);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->file->getDataset()->tagExists(DCM_PredecessorDocumentsSequence), OFFalse);

  ReportOptions options;
  options.uid_seed = "sr-revised/2";
  options.predecessors.push_back(
      {sources.study_instance_uid(), first->series_instance_uid, first->sop_class_uid, first->sop_instance_uid});
  auto report = write_measurement_report({{&sources, nullptr, {}}}, texts, options);
  ASSERT_TRUE(report);
  EXPECT_NE(report->sop_instance_uid, first->sop_instance_uid);
  check_report(dir, "sr-revised", *report, expected_json(sources, {}, "", {texts[0].text}));
  DcmDataset& ds = *report->file->getDataset();
  DcmItem* study = nullptr;
  ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_PredecessorDocumentsSequence, study, 0).good());
  EXPECT_EQ(get(*study, DCM_StudyInstanceUID), sources.study_instance_uid());
  DcmItem* series = nullptr;
  ASSERT_TRUE(study->findAndGetSequenceItem(DCM_ReferencedSeriesSequence, series, 0).good());
  EXPECT_EQ(get(*series, DCM_SeriesInstanceUID), first->series_instance_uid);
  DcmItem* instance = nullptr;
  ASSERT_TRUE(series->findAndGetSequenceItem(DCM_ReferencedSOPSequence, instance, 0).good());
  EXPECT_EQ(get(*instance, DCM_ReferencedSOPClassUID), first->sop_class_uid);
  EXPECT_EQ(get(*instance, DCM_ReferencedSOPInstanceUID), first->sop_instance_uid);
  EXPECT_EQ(series->card(), 2u) << "one series, one instance";

  auto expect_error = [&](const DocumentReference& d, const std::string& text) {
    ReportOptions bad = options;
    bad.predecessors = {d};
    bad.sop_instance_uid = report->sop_instance_uid;
    try {
      write_measurement_report({{&sources, nullptr, {}}}, texts, bad);
      ADD_FAILURE() << "no error, expected one containing: " << text;
    } catch (const ReportError& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  DocumentReference d = options.predecessors.front();
  d.sop_instance_uid.clear();
  expect_error(d, "predecessor document 1: SOPInstanceUID \"\" is missing");
  d = options.predecessors.front();
  d.series_instance_uid = "1.02.3";
  expect_error(d, "predecessor document 1: SeriesInstanceUID \"1.02.3\" is not a UID");
  d = options.predecessors.front();
  d.sop_instance_uid = report->sop_instance_uid;
  expect_error(d, "predecessor document 1 is this report itself");
}

TEST(MeasurementReport, PointRegionAndFindingWithoutSegment) {
  TempDir dir("sr-point");
  auto file = test::load_file(test::pydicom_test_file("MR_small.dcm"));
  ASSERT_TRUE(file);
  seg::SourceImages sources({file->getDataset()});
  ReportedFinding f;
  f.tracking_uid = seg::make_uid("point-finding");
  f.finding = {"52988006", "SCT", "Lesion"};
  f.text = "A small nodule.";
  f.region = ImageRegion{0, ImageRegion::Shape::Point, {{{20.5f, 31.5f}}}, std::nullopt, std::nullopt, std::nullopt};
  f.measurements = {long_axis_mm(4.2)};
  auto report = write_measurement_report({{&sources, nullptr, {f}}}, {});
  ASSERT_TRUE(report);
  EXPECT_EQ(report->measurement_groups, 1u);
  check_report(dir, "sr-point", *report, expected_json(sources, {f}, "", {}));
}

TEST(MeasurementReport, FindingsWithAndWithoutSegmentInOneReport) {
  // A study with a segmented finding and a finding without segment (a slide region, say): both
  // validate, and OHIF draws, imports and labels each.
  TempDir dir("sr-mixed");
  test::SeriesSpec spec;
  spec.rows = 24;
  spec.columns = 24;
  spec.frames = 3;
  spec.name = "sr-mixed";
  auto series = test::make_series(spec);
  seg::SourceImages sources(series.datasets());
  std::vector<seg::Segment> segments{segment("Lesion", {mask(1, test::ellipse_mask(24, 24, 10, 10, 4, 5))})};
  auto seg = seg::write_segmentation(sources, segments);
  ASSERT_TRUE(seg);
  auto findings = findings_for(sources, segments, *seg);
  ReportedFinding region_only;
  region_only.tracking_uid = seg::make_uid("mixed-region-only");
  region_only.tracking_id = "Nodule";
  region_only.finding = {"27925004", "SCT", "Nodule"};
  region_only.finding_site = seg::CodedConcept{"10200004", "SCT", "Liver"};
  region_only.text = "A small nodule.";
  region_only.region = ImageRegion{2, ImageRegion::Shape::Outline, {{{3, 3}}, {{9, 3}}, {{9, 7}}, {{3, 7}}}, 24 * 0.42, 24.0,
                                   std::nullopt};
  findings.push_back(region_only);
  auto report = write_measurement_report({{&sources, seg->file->getDataset(), findings}}, {});
  ASSERT_TRUE(report);
  EXPECT_EQ(report->measurement_groups, 2u);
  check_report(dir, "sr-mixed", *report, expected_json(sources, findings, seg->sop_instance_uid, {}));
}

TEST(MeasurementReport, NothingToReport) {
  test::SeriesSpec spec;
  auto series = test::make_series(spec);
  seg::SourceImages sources(series.datasets());
  EXPECT_FALSE(write_measurement_report({{&sources, nullptr, {}}}, {}).has_value());
  EXPECT_FALSE(write_measurement_report({}, {{{"121106", "DCM", "Comment"}, ""}}).has_value());
}

TEST(MeasurementReport, InconsistentInputIsAClearError) {
  test::SeriesSpec spec;
  spec.name = "sr-bad";
  auto series = test::make_series(spec);
  seg::SourceImages sources(series.datasets());
  std::vector<seg::Segment> segments{segment("Lesion", {mask(1, test::ellipse_mask(9, 7, 3, 4, 2, 3))})};
  auto seg = seg::write_segmentation(sources, segments);
  ASSERT_TRUE(seg);
  const auto good = findings_for(sources, segments, *seg);
  auto expect_error = [&](std::vector<ReportedFinding> findings, const std::string& text, DcmDataset* segmentation) {
    try {
      write_measurement_report({{&sources, segmentation, findings}}, {});
      ADD_FAILURE() << "no error, expected one containing: " << text;
    } catch (const ReportError& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  DcmDataset* segmentation = seg->file->getDataset();
  auto f = good;
  f[0].tracking_uid = "1.2.3.4";
  expect_error(f, "has tracking UID 1.2.3.4 but segment 1 of the segmentation has", segmentation);
  f = good;
  f[0].segment_number = 7;
  expect_error(f, "references segment 7, which the segmentation does not have", segmentation);
  expect_error(good, "references segment 1 but series 1 has no segmentation", nullptr);
  f = good;
  f[0].region.reset();
  expect_error(f, "has no image region", segmentation);
  f = good;
  f[0].region->frame = 9;
  expect_error(f, "its region is on source frame 9, the series has 3 frames", segmentation);
  f = good;
  f[0].region->points = {{{0, 0}}, {{50, 0}}, {{0, 3}}};
  expect_error(f, "region point (50.000000, 0.000000) lies outside the 7x9 image", segmentation);
  f = good;
  f[0].measurements.push_back(volume_mm3(std::nan("")));
  expect_error(f, "measurement 'Volume' is not a finite number", segmentation);
  f = good;
  f[0].finding_site.reset();
  f[0].laterality = seg::CodedConcept{"24028007", "SCT", "Right"};
  expect_error(f, "has a laterality (Right) but no finding site to qualify", segmentation);
  for (double certainty : {1.5, -0.1, std::nan("")}) {
    f = good;
    f[0].certainty = certainty;
    expect_error(f, "has a certainty of " + seg::format_ds(certainty) + ": it must be 0 to 1", segmentation);
  }
  f = good;
  f.push_back(good[0]);
  f[1].segment_number = 0;
  expect_error(f, "repeats the tracking UID", segmentation);
  test::SeriesSpec other_spec;
  other_spec.name = "another-study";
  auto other = test::make_series(other_spec);
  seg::SourceImages other_sources(other.datasets());
  try {
    write_measurement_report({{&sources, segmentation, good}, {&other_sources, nullptr, {}}},
                             {{{"121106", "DCM", "Comment"}, "x"}});
    ADD_FAILURE() << "series of two studies accepted";
  } catch (const ReportError& e) {
    EXPECT_NE(std::string(e.what()).find("one report covers one study"), std::string::npos) << e.what();
  }
}

// Shoelace area of a closed polygon.
double polygon_area(const std::vector<std::array<float, 2>>& p) {
  double twice = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const auto& a = p[i];
    const auto& b = p[(i + 1) % p.size()];
    twice += static_cast<double>(a[0]) * b[1] - static_cast<double>(b[0]) * a[1];
  }
  return std::fabs(twice) / 2;
}

TEST(FindingGeometry, OutlineFollowsPixelEdgesOfTheLargestRegion) {
  // One pixel: its four corners.
  std::vector<std::uint8_t> one(5 * 5, 0);
  one[2 * 5 + 3] = 1;
  const auto square = outline_of_largest_region(one, 5, 5);
  ASSERT_EQ(square.size(), 4u);
  EXPECT_EQ(square[0], (std::array<float, 2>{3, 2}));
  EXPECT_DOUBLE_EQ(polygon_area(square), 1.0);
  // Filled shapes without holes: polygon area == pixel count; corners on the image border work.
  for (const auto& m : {test::ellipse_mask(30, 25, 12, 14, 9, 13), test::ellipse_mask(30, 25, 0, 0, 8, 6),
                        test::ellipse_mask(30, 25, 24, 29, 5, 9)}) {
    const auto outline = outline_of_largest_region(m, 30, 25);
    EXPECT_DOUBLE_EQ(polygon_area(outline), static_cast<double>(std::count(m.begin(), m.end(), 1)));
    for (const auto& p : outline) {
      EXPECT_GE(p[0], 0);
      EXPECT_LE(p[0], 25);
      EXPECT_GE(p[1], 0);
      EXPECT_LE(p[1], 30);
    }
  }
  // Two regions: the larger one is outlined; a diagonal touch does not join regions.
  auto two = test::ellipse_mask(20, 20, 5, 5, 2, 2);
  const auto big = test::ellipse_mask(20, 20, 13, 13, 5, 5);
  for (size_t i = 0; i < two.size(); ++i) two[i] |= big[i];
  EXPECT_DOUBLE_EQ(polygon_area(outline_of_largest_region(two, 20, 20)),
                   static_cast<double>(std::count(big.begin(), big.end(), 1)));
  std::vector<std::uint8_t> diagonal(4 * 4, 0);
  diagonal[0] = diagonal[5] = diagonal[6] = 1;  // (0,0) touches (1,1)-(2,1) only at a corner
  EXPECT_DOUBLE_EQ(polygon_area(outline_of_largest_region(diagonal, 4, 4)), 2.0);
  // A ring: the outer boundary encloses the hole.
  auto ring = test::ellipse_mask(21, 21, 10, 10, 8, 8);
  const auto hole = test::ellipse_mask(21, 21, 10, 10, 4, 4);
  for (size_t i = 0; i < ring.size(); ++i)
    if (hole[i]) ring[i] = 0;
  EXPECT_DOUBLE_EQ(
      polygon_area(outline_of_largest_region(ring, 21, 21)),
      static_cast<double>(std::count(ring.begin(), ring.end(), 1) + std::count(hole.begin(), hole.end(), 1)));
  // Random blobs never make the tracer loop forever or leave the image.
  std::mt19937 generator(3);
  for (int trial = 0; trial < 50; ++trial) {
    auto noise = test::random_mask(17, 13, generator(), 0.55);
    const auto outline = outline_of_largest_region(noise, 17, 13);
    EXPECT_FALSE(outline.empty());
    EXPECT_GE(polygon_area(outline), 1.0);
  }
}

TEST(FindingGeometry, LongAxisMatchesBruteForce) {
  // Rotating calipers over the convex hull against every pair of pixel corners.
  test::SeriesSpec spec;
  spec.rows = 15;
  spec.columns = 13;
  spec.frames = 2;
  spec.spacing = {0.9, 0.4};
  auto series = test::make_series(spec);
  seg::SourceImages sources(series.datasets());
  for (std::uint32_t seed = 1; seed <= 40; ++seed) {
    const auto m = test::random_mask(15, 13, seed, seed % 2 ? 0.05 : 0.3);
    std::vector<std::array<double, 2>> corners;
    for (int r = 0; r < 15; ++r)
      for (int c = 0; c < 13; ++c)
        if (m[r * 13 + c])
          for (int dy : {0, 1})
            for (int dx : {0, 1}) corners.push_back({(c + dx) * 0.4, (r + dy) * 0.9});
    double brute = 0;
    for (const auto& a : corners)
      for (const auto& b : corners) brute = std::max(brute, std::hypot(a[0] - b[0], a[1] - b[1]));
    const auto measured = segment_measurements(segment("Blob", {mask(0, m)}), sources);
    ASSERT_EQ(measured.size(), 2u);
    EXPECT_NEAR(measured[1].value, brute, 1e-9) << "seed " << seed;
  }
}

TEST(FindingGeometry, MeasurementsFollowThePixelSpacing) {
  test::SeriesSpec spec;
  spec.rows = 20;
  spec.columns = 20;
  spec.frames = 4;
  spec.spacing = {0.5, 0.8};  // between rows, between columns
  spec.slice_gap = 3.0;
  auto series = test::make_series(spec);
  seg::SourceImages sources(series.datasets());
  // A 6 (columns) x 8 (rows) rectangle on two slices.
  std::vector<std::uint8_t> rect(400, 0);
  for (int r = 2; r < 10; ++r)
    for (int c = 5; c < 11; ++c) rect[r * 20 + c] = 1;
  const auto s = segment("Box", {mask(1, rect), mask(2, rect)});
  const auto m = segment_measurements(s, sources);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].concept.meaning, "Volume");
  EXPECT_NEAR(m[0].value, 2 * 48 * 0.5 * 0.8 * 3.0, 1e-9);
  EXPECT_EQ(m[0].unit.value, "mm3");
  EXPECT_EQ(m[1].concept.meaning, "Long axis");
  EXPECT_NEAR(m[1].value, std::hypot(6 * 0.8, 8 * 0.5), 1e-9);  // the rectangle's diagonal
  // A single image: area only.
  auto ct = test::load_file(test::pydicom_test_file("CT_small.dcm"));
  ASSERT_TRUE(ct);
  seg::SourceImages single({ct->getDataset()});
  std::vector<std::uint8_t> block(128 * 128, 0);
  for (int i = 0; i < 10; ++i) block[64 * 128 + i] = 1;
  const auto area = segment_measurements(segment("Line", {mask(0, block)}), single);
  ASSERT_EQ(area.size(), 1u);
  EXPECT_EQ(area[0].concept.meaning, "Area");
  EXPECT_NEAR(area[0].value, 10 * 0.661468 * 0.661468, 1e-6);
}

}  // namespace
}  // namespace unibiomed::sr
