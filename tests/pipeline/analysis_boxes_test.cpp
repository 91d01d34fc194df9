// The whole pipeline with an engine whose masks are known (BoxEngine): masks land on the right
// source frames and pixels (read back from the SEG with pydicom), volumes and areas from the
// geometry, SEG and SR pass dciodvfy and pixelmed, UIDs are deterministic, slices are limited,
// a failing series is recorded while the others are delivered, unsupported and unreadable
// inputs are reported, cancellation stops the analysis.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <fstream>

#include "pipeline/study_analyzer.h"
#include "tests/pipeline/pipeline_test_support.h"
#include "tests/support/test_support.h"

namespace unibiomed::pipeline {
namespace {

namespace fs = std::filesystem;
using test::fixture_data;

struct BoxRun {
  std::unique_ptr<Analyzer> analyzer;  // owns the engine
  StudyResult result;
  test::BoxEngine* engine = nullptr;
};

BoxRun analyze_with_boxes(const std::vector<InstanceInput>& inputs, AnalyzerSettings settings = {},
                       const AnalysisRequest& request = {}, const std::string& seed = "seed", int fail_width = -1) {
  auto engine = std::make_unique<test::BoxEngine>(fail_width);
  BoxRun run;
  run.engine = engine.get();
  settings.previews = true;
  run.analyzer = make_analyzer(settings, std::move(engine));
  run.result = run.analyzer->analyze(inputs, request, {}, nullptr, seed);
  return run;
}

const ResultObject* object(const StudyResult& r, const std::string& kind) {
  for (const auto& o : r.objects)
    if (o.kind == kind) return &o;
  return nullptr;
}

TEST(AnalysisWithBoxes, CineMasksLandOnTheirSourceFramesThroughThePadding) {
  const auto& data = fixture_data();
  AnalyzerSettings settings;
  settings.max_slices_per_series = 6;  // 16 cine frames -> 6, evenly strided
  const BoxRun run = analyze_with_boxes(data.inputs("us"), settings);
  const StudyResult& r = run.result;
  ASSERT_EQ(r.series.size(), 1u);
  const SeriesOutcome& s = r.series[0];
  ASSERT_EQ(s.state, SeriesOutcome::State::Analysed) << s.reason;
  EXPECT_EQ(s.rule, "us-liver");
  EXPECT_EQ(s.frames_total, 16);
  EXPECT_EQ(s.frames_analysed, 6);
  EXPECT_EQ(s.views, 6);
  ASSERT_FALSE(s.notes.empty());
  EXPECT_NE(s.notes.back().find("6 of 16 views"), std::string::npos) << s.notes.back();
  // The prompts of the rule, exactly.
  EXPECT_EQ(run.engine->questions.at(0), "Please segment liver in ultrasound.");
  EXPECT_EQ(run.engine->questions.at(1),
            "Can we observe any signs of abnormality? Please respond with interleaved segmentation masks for the "
            "corresponding parts.");

  // Two findings: the liver (structure) and the cyst (disease recognition, the model's word).
  ASSERT_EQ(r.findings.size(), 2u);
  EXPECT_EQ(r.findings[0].label, "Liver");
  EXPECT_EQ(r.findings[1].label, "Cyst");
  EXPECT_EQ(r.findings[1].task, "abnormality");
  EXPECT_NEAR(r.findings[0].confidence, std::sqrt(std::round(0.9 * 255) / 255 * 0.8), 1e-6);

  test::TempDir dir;
  const ResultObject* seg = object(r, "SEG");
  ASSERT_NE(seg, nullptr);
  test::write_object(dir / "seg.dcm", *seg);
  const auto decoded = test::read_seg_with_pydicom(dir / "seg.dcm");
  // 640 x 480 frames padded to 640 x 640 (80 rows above): the view box [160,320) x [160,320)
  // is source rows [80, 240), columns [160, 320); the cyst box [320,480)^2 is rows [240,400).
  ASSERT_EQ(decoded["rows"], 480);
  ASSERT_EQ(decoded["columns"], 640);
  const std::string sop = data.sample("us").series_instance_uid.empty() ? "" : r.findings[0].key_instance_uid;
  std::set<int> frames_of_segment_1, frames_of_segment_2;
  for (const auto& f : decoded["frames"]) {
    EXPECT_EQ(f["sop"], sop);
    const int segment = f["segment"];
    if (segment == 1) {
      EXPECT_EQ(f["bbox"], nlohmann::json({80, 160, 240, 320}));
      frames_of_segment_1.insert(int(f["source_frame"]));
    } else {
      EXPECT_EQ(f["bbox"], nlohmann::json({240, 320, 400, 480}));
      frames_of_segment_2.insert(int(f["source_frame"]));
    }
    EXPECT_EQ(f["pixels"], 160 * 160);
  }
  // Even stride over 16 frames, first and last kept: 1, 4, 7, 10, 13, 16.
  const std::set<int> expected{1, 4, 7, 10, 13, 16};
  EXPECT_EQ(frames_of_segment_1, expected);
  EXPECT_EQ(frames_of_segment_2, expected);
  EXPECT_EQ(decoded["segments"][0]["label"], "Liver");
  EXPECT_EQ(decoded["segments"][0]["type"], "10200004");
  EXPECT_EQ(decoded["segments"][1]["category"], "49755003");
  EXPECT_EQ(decoded["segments"][0]["tracking_uid"], r.findings[0].tracking_uid);

  EXPECT_TRUE(test::dciodvfy_errors(dir / "seg.dcm").empty());
  const ResultObject* sr = object(r, "SR");
  ASSERT_NE(sr, nullptr);
  test::write_object(dir / "sr.dcm", *sr);
  std::string out;
  const auto sr_errors = test::dciodvfy_errors(dir / "sr.dcm", &out);
  EXPECT_TRUE(sr_errors.empty()) << out;
  // Previews: one per finding, the size of the source frame.
  ASSERT_EQ(r.previews.size(), 2u);
  EXPECT_EQ(r.previews[0].width, 640);
  EXPECT_EQ(r.previews[0].height, 480);
  EXPECT_EQ(r.findings[0].preview_file, r.previews[0].file_name);
}

TEST(AnalysisWithBoxes, CtVolumeIsMeasuredFromTheGeometryAndTheReportValidates) {
  const auto& data = fixture_data();
  const BoxRun run = analyze_with_boxes(data.inputs("ct"));
  const StudyResult& r = run.result;
  ASSERT_EQ(r.series.size(), 1u);
  ASSERT_EQ(r.series[0].state, SeriesOutcome::State::Analysed) << r.series[0].reason;
  EXPECT_EQ(r.series[0].rule, "ct-abdomen");
  // Four organs asked on the abdomen window, the disease question on the liver window.
  EXPECT_EQ(run.engine->questions.size(), 5u);
  ASSERT_EQ(r.findings.size(), 5u);
  // 96 x 96 slices (no padding), box [24, 48)^2 = 576 pixels on each of 5 slices. Spacing from
  // the files: read it back through the Volume measurement: pixels x pixel area x slab.
  const Finding& liver = r.findings[0];
  EXPECT_EQ(liver.label, "Liver");
  double area = 0, volume = 0, axis = 0;
  for (const auto& m : liver.measurements) {
    if (m.name == "Area") area = m.value;
    if (m.name == "Volume") volume = m.value;
    if (m.name == "Long axis") axis = m.value;
  }
  // CtAbdomenOptions: 0.7 mm pixels scaled to 96 px? The sample writes its own spacing; derive
  // it from the area of 576 pixels and check volume and axis against it.
  ASSERT_GT(area, 0);
  const double pixel_area = area / 576.0;
  const double pixel = std::sqrt(pixel_area);
  EXPECT_NEAR(axis, std::hypot(24 * pixel, 24 * pixel), 1e-6);
  EXPECT_NEAR(volume, 5 * 576 * pixel_area * 2.5, 1e-6);  // slice spacing 2.5 mm (sample default)

  ASSERT_NE(object(r, "SEG"), nullptr);
  ASSERT_NE(object(r, "SR"), nullptr);
  test::TempDir dir;
  test::write_object(dir / "seg.dcm", *object(r, "SEG"));
  test::write_object(dir / "sr.dcm", *object(r, "SR"));
  const auto decoded = test::read_seg_with_pydicom(dir / "seg.dcm");
  EXPECT_EQ(decoded["segments"].size(), 5u);
  EXPECT_EQ(decoded["frames"].size(), 25u);
  for (const auto& f : decoded["frames"])
    EXPECT_EQ(f["bbox"], int(f["segment"]) == 5 ? nlohmann::json({48, 48, 72, 72}) : nlohmann::json({24, 24, 48, 48}));
  std::string out;
  EXPECT_TRUE(test::dciodvfy_errors(dir / "seg.dcm", &out).empty()) << out;
  EXPECT_TRUE(test::dciodvfy_errors(dir / "sr.dcm", &out).empty()) << out;
  {  // pixelmed_sr_errors reports a missing java or pixelmed.jar as an error
    const auto errors = test::pixelmed_sr_errors(dir / "sr.dcm", &out);
    EXPECT_TRUE(errors.empty()) << out;
  }
  // The summary says what was done and how long it took.
  const auto summary = nlohmann::json::parse(r.summary_json);
  EXPECT_EQ(summary["findings"].size(), 5u);
  EXPECT_EQ(summary["objects"].size(), 2u);
  // 96 x 96 frames are whole bytes: the SEG is binary, and the summary says so (an SR has no form).
  for (const auto& o : summary["objects"])
    EXPECT_EQ(o.value("segmentation_type", ""), o["kind"] == "SEG" ? "BINARY" : "") << o.dump();
  EXPECT_EQ(summary["model"]["weights_sha256"], std::string(64, '0'));
  EXPECT_TRUE(summary["timings_seconds"].contains("non_model_share"));
}

TEST(AnalysisWithBoxes, PairedOrgansOnBothSidesAreOneFindingPerSide) {
  // Every organ's answer is a box on each side of the CT (columns 24-47 and 72-95 of 96, 90 mm
  // apart). The kidneys (a paired target) become a right and a left kidney: the patient's right
  // where the columns start (ImageOrientationPatient 1\0\0\0\1\0), each its own SEG segment
  // with the side as type modifier and its own SR group with the side as the site's laterality;
  // the liver stays one finding in two pieces.
  for (const bool video : {true, false}) {
    SCOPED_TRACE(video ? "video mode" : "slices mode");
    auto engine = std::make_unique<test::BoxEngine>();
    engine->pair_apart = 24;
    test::TempDir rules;
    AnalyzerSettings settings;
    if (!video) {
      test::write_file(rules / "slices.json", R"({"version": 1, "extends": "defaults", "mode": "slices"})");
      settings.task_rules = rules / "slices.json";
    }
    const auto analyzer = make_analyzer(settings, std::move(engine));
    const StudyResult r = analyzer->analyze(fixture_data().inputs("ct"), {}, {}, nullptr, "seed");
    ASSERT_EQ(r.series.size(), 1u);
    ASSERT_EQ(r.series[0].state, SeriesOutcome::State::Analysed) << r.series[0].reason;
    std::map<std::string, const Finding*> by_label;
    for (const auto& f : r.findings) by_label[f.label] = &f;
    ASSERT_EQ(by_label.count("Right kidney"), 1u) << testing::PrintToString(r.findings.size());
    ASSERT_EQ(by_label.count("Left kidney"), 1u);
    EXPECT_EQ(by_label.count("Kidney"), 0u);
    EXPECT_EQ(by_label.count("Liver"), 1u);
    EXPECT_EQ(by_label.at("Right kidney")->side, "right");
    EXPECT_EQ(by_label.at("Left kidney")->side, "left");
    EXPECT_EQ(by_label.at("Liver")->side, "");
    test::TempDir dir;
    test::write_object(dir / "seg.dcm", *object(r, "SEG"));
    test::write_object(dir / "sr.dcm", *object(r, "SR"));
    const auto decoded = test::read_seg_with_pydicom(dir / "seg.dcm");
    std::map<int, std::string> label_of;
    for (const auto& s : decoded["segments"]) {
      label_of[s["number"].get<int>()] = s["label"].get<std::string>();
      const std::string label = s["label"];
      const nlohmann::json sides = label == "Right kidney"  ? nlohmann::json({"24028007"})
                                   : label == "Left kidney" ? nlohmann::json({"7771000"})
                                                            : nlohmann::json::array();
      EXPECT_EQ(s["type_modifiers"], sides) << label;
    }
    for (const auto& f : decoded["frames"]) {
      const std::string label = label_of.at(f["segment"].get<int>());
      const std::map<std::string, nlohmann::json> boxes{
          {"Right kidney", {24, 24, 48, 48}}, {"Left kidney", {24, 72, 48, 96}}, {"Liver", {24, 24, 48, 96}}};
      if (boxes.count(label)) {
        EXPECT_EQ(f["bbox"], boxes.at(label)) << label;
      }
    }
    std::string out;
    EXPECT_TRUE(test::dciodvfy_errors(dir / "seg.dcm", &out).empty()) << out;
    EXPECT_TRUE(test::pixelmed_sr_errors(dir / "sr.dcm", &out).empty()) << out;
    const auto dump = test::run_command({"dsrdump", "+Pl", (dir / "sr.dcm").string()});
    for (const std::string side : {"(24028007,SCT,\"Right\")", "(7771000,SCT,\"Left\")"}) {
      const std::string site = "<has concept mod CODE:(,,\"Finding Site\")=(64033007,SCT,\"Kidney\")>";
      const size_t at = dump.output.find(site + "\n");
      ASSERT_NE(at, std::string::npos) << dump.output;
      EXPECT_NE(dump.output.find("<has concept mod CODE:(,,\"Laterality\")=" + side + ">"), std::string::npos)
          << dump.output;
    }
    const auto summary = nlohmann::json::parse(r.summary_json);
    for (const auto& f : summary["findings"])
      EXPECT_EQ(f.value("side", ""), by_label.at(f["label"].get<std::string>())->side) << f.dump();
  }
}

TEST(AnalysisWithBoxes, LungsOnAChestRadiographAreSidedByItsPatientOrientation) {
  // The sample chest PA has no plane, only PatientOrientation L\F: its columns run toward the
  // patient's left, so the box nearer column 0 is the right lung.
  auto engine = std::make_unique<test::BoxEngine>();
  engine->pair_apart = 256;  // view columns: an eighth of the 2048-wide image, above 2 % of it
  const auto analyzer = make_analyzer({}, std::move(engine));
  const StudyResult r = analyzer->analyze(fixture_data().inputs("xray"), {}, {}, nullptr, "seed");
  ASSERT_EQ(r.series.size(), 1u);
  ASSERT_EQ(r.series[0].state, SeriesOutcome::State::Analysed) << r.series[0].reason;
  test::TempDir dir;
  test::write_object(dir / "seg.dcm", *object(r, "SEG"));
  const auto decoded = test::read_seg_with_pydicom(dir / "seg.dcm");
  std::map<std::string, int> first_column;
  std::map<int, std::string> label_of;
  for (const auto& s : decoded["segments"]) label_of[s["number"].get<int>()] = s["label"].get<std::string>();
  for (const auto& f : decoded["frames"]) first_column[label_of.at(f["segment"].get<int>())] = f["bbox"][1].get<int>();
  ASSERT_EQ(first_column.count("Right lung"), 1u) << decoded.dump();
  ASSERT_EQ(first_column.count("Left lung"), 1u) << decoded.dump();
  EXPECT_LT(first_column["Right lung"], first_column["Left lung"]);
  EXPECT_EQ(first_column.count("Lung"), 0u);
}

TEST(AnalysisWithBoxes, AQuestionAboutThePairedLungsIsAnsweredPerSide) {
  // ask() on the chest PA: the lungs are two findings, sided as the analysis sides them, with
  // the laterality as the segment's type modifier; the summary's findings carry the side.
  auto engine = std::make_unique<test::BoxEngine>();
  engine->pair_apart = 256;
  const auto analyzer = make_analyzer({}, std::move(engine));
  const auto xray = fixture_data().inputs("xray");
  const auto answer = analyzer->ask(xray.at(0), 1, {"Please segment lung in chest X-ray.", "", {}, ""}, "ask-seed");
  ASSERT_EQ(answer.findings.size(), 2u);
  EXPECT_EQ(answer.findings[0].label, "Right lung");
  EXPECT_EQ(answer.findings[0].side, "right");
  EXPECT_EQ(answer.findings[1].label, "Left lung");
  EXPECT_EQ(answer.findings[1].side, "left");
  ASSERT_EQ(answer.segments.size(), 1u);  // one [SEG], both sides
  EXPECT_EQ(answer.segments[0].finding(), 0);
  EXPECT_EQ(answer.segments[0].findings, (std::vector<int>{0, 1}));
  ASSERT_TRUE(answer.seg);
  test::TempDir dir;
  test::write_object(dir / "seg.dcm", *answer.seg);
  const auto decoded = test::read_seg_with_pydicom(dir / "seg.dcm");
  std::map<int, nlohmann::json> segment;
  for (const auto& s : decoded["segments"]) segment[s["number"].get<int>()] = s;
  std::map<std::string, int> first_column;
  for (const auto& f : decoded["frames"])
    first_column[segment.at(f["segment"].get<int>())["label"].get<std::string>()] = f["bbox"][1].get<int>();
  ASSERT_EQ(first_column.size(), 2u) << decoded.dump();
  EXPECT_LT(first_column.at("Right lung"), first_column.at("Left lung"));
  EXPECT_EQ(segment.at(1)["type_modifiers"], nlohmann::json::array({"24028007"})) << decoded.dump();
  EXPECT_EQ(segment.at(2)["type_modifiers"], nlohmann::json::array({"7771000"})) << decoded.dump();
}

TEST(AnalysisWithBoxes, SameSeedSameUidsOtherSeedOtherUids) {
  const auto& data = fixture_data();
  AnalyzerSettings settings;
  settings.previews = false;
  const auto a = analyze_with_boxes(data.inputs("fundus"), settings, {}, "s1").result;
  const auto b = analyze_with_boxes(data.inputs("fundus"), settings, {}, "s1").result;
  const auto c = analyze_with_boxes(data.inputs("fundus"), settings, {}, "s2").result;
  ASSERT_EQ(a.objects.size(), 2u);
  for (size_t i = 0; i < a.objects.size(); ++i) {
    EXPECT_EQ(a.objects[i].sop_instance_uid, b.objects[i].sop_instance_uid);
    EXPECT_EQ(a.objects[i].series_instance_uid, b.objects[i].series_instance_uid);
    EXPECT_NE(a.objects[i].sop_instance_uid, c.objects[i].sop_instance_uid);
  }
  EXPECT_EQ(a.findings[0].tracking_uid, b.findings[0].tracking_uid);
}

TEST(AnalysisWithBoxes, AFailingSeriesIsRecordedAndTheOthersAreDelivered) {
  const auto& data = fixture_data();
  // Dermoscopy 1024 x 768 -> 1024-wide views fail; the fundus (1024 x 1024) too, so use
  // endoscopy (720 x 576) as the series that must come through. Different studies: analyse one
  // study's worth: the engine failure must not stop the next series of the same call.
  auto inputs = data.inputs("endoscopy");
  const auto derm = data.inputs("dermoscopy");
  inputs.insert(inputs.end(), derm.begin(), derm.end());
  const auto r = analyze_with_boxes(inputs, {}, {}, "x", 1024).result;
  // The first study's series is analysed; the other study's series is skipped with its reason.
  ASSERT_EQ(r.series.size(), 2u);
  int analysed = 0, skipped = 0;
  for (const auto& s : r.series) {
    if (s.state == SeriesOutcome::State::Analysed) ++analysed;
    if (s.state == SeriesOutcome::State::Skipped) {
      ++skipped;
      EXPECT_NE(s.reason.find("belongs to study"), std::string::npos) << s.reason;
    }
  }
  EXPECT_EQ(analysed + skipped, 2);

  // Within one study: the dermoscopy series fails in the engine, its findings are dropped, and
  // a second series of the same study (the SR of the first run, unsupported) is reported.
  const auto first = analyze_with_boxes(data.inputs("dermoscopy"), {}, {}, "y").result;
  const ResultObject* first_sr = object(first, "SR");
  ASSERT_NE(first_sr, nullptr) << (first.series.empty() ? "" : first.series[0].reason);
  test::TempDir dir;
  test::write_object(dir / "sr.dcm", *first_sr);
  std::vector<InstanceInput> same_study = data.inputs("dermoscopy");
  same_study.push_back({"result sr", {}, dir / "sr.dcm"});
  InstanceInput junk;
  junk.id = "junk.bin";
  junk.bytes = {'n', 'o', 't', ' ', 'D', 'I', 'C', 'O', 'M'};
  same_study.push_back(junk);
  const auto failed = analyze_with_boxes(same_study, {}, {}, "y", 1024).result;
  ASSERT_EQ(failed.series.size(), 2u);
  bool saw_failed = false, saw_unsupported = false;
  for (const auto& s : failed.series) {
    if (s.state == SeriesOutcome::State::Failed) {
      saw_failed = true;
      EXPECT_NE(s.reason.find("refusing views 1024 wide"), std::string::npos) << s.reason;
    }
    if (s.state == SeriesOutcome::State::Skipped) {
      saw_unsupported = true;
      EXPECT_FALSE(s.reason.empty());
    }
  }
  EXPECT_TRUE(saw_failed);
  EXPECT_TRUE(saw_unsupported);
  EXPECT_TRUE(failed.findings.empty());
  ASSERT_EQ(failed.problems.size(), 1u);
  EXPECT_NE(failed.problems[0].find("junk.bin"), std::string::npos) << failed.problems[0];
}

TEST(AnalysisWithBoxes, RequestedTasksAndExplicitQuestions) {
  const auto& data = fixture_data();
  AnalysisRequest request;
  request.tasks = {"abnormality"};
  request.questions.push_back({"What is the <region> in the picture?", "", std::array<int, 4>{10, 10, 60, 60}, ""});
  const BoxRun run = analyze_with_boxes(data.inputs("xray"), {}, request);
  ASSERT_EQ(run.result.series.at(0).state, SeriesOutcome::State::Analysed) << run.result.series[0].reason;
  EXPECT_EQ(run.engine->questions,
            (std::vector<std::string>{"Can we observe any signs of abnormality? Please respond with interleaved "
                                      "segmentation masks for the corresponding parts.",
                                      "What is the <region> in the picture?"}));
  EXPECT_EQ(run.result.series[0].tasks, (std::vector<std::string>{"abnormality", "question"}));

  AnalysisRequest unknown;
  unknown.tasks = {"organz"};
  auto analyzer = make_analyzer({}, std::make_unique<test::BoxEngine>());
  try {
    analyzer->analyze(data.inputs("xray"), unknown, {}, nullptr, "");
    FAIL();
  } catch (const PipelineError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown task 'organz'"), std::string::npos) << e.what();
  }
  // A task of another modality's rule: this series is skipped, saying why.
  AnalysisRequest other;
  other.tasks = {"organs"};
  const auto r = analyzer->analyze(data.inputs("xray"), other, {}, nullptr, "");
  ASSERT_EQ(r.series.size(), 1u);
  EXPECT_EQ(r.series[0].state, SeriesOutcome::State::Skipped);
  EXPECT_NE(r.series[0].reason.find("none of the requested tasks (organs) is in rule xray-chest"), std::string::npos)
      << r.series[0].reason;
}

TEST(AnalysisWithBoxes, ProgressIsReportedAndCancellationStops) {
  const auto& data = fixture_data();
  auto analyzer = make_analyzer({}, std::make_unique<test::BoxEngine>());
  std::vector<Progress> seen;
  std::atomic<bool> cancel{false};
  analyzer->analyze(data.inputs("ct"), {}, [&](const Progress& p) { seen.push_back(p); }, &cancel, "");
  ASSERT_GT(seen.size(), 3u);
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_GE(seen[i].fraction, seen[i - 1].fraction);
  EXPECT_EQ(seen.back().fraction, 1.0);
  bool saw_model = false;
  for (const auto& p : seen) saw_model |= p.stage == "model" && p.message.find("CT series 1/1: slice") == 0;
  EXPECT_TRUE(saw_model);

  try {
    analyzer->analyze(data.inputs("ct"), {}, [&](const Progress& p) { if (p.stage == "model") cancel = true; }, &cancel, "");
    FAIL() << "not cancelled";
  } catch (const Cancelled& e) {
    EXPECT_EQ(std::string(e.what()), "cancelled");
  }
}

TEST(AnalysisWithBoxes, BadSettingsAndRulesAreRefusedAtCreation) {
  test::TempDir dir;
  test::write_file(dir / "rules.json", R"({"version": 1, "extends": "defaults", "rules": [
    {"name": "x", "match": {"modality": ["CT"]}, "modality_phrase": "CT",
     "tasks": [{"name": "t", "family": "segmentation", "targets": ["liver"], "window": "bone"}]}]})");
  AnalyzerSettings settings;
  settings.task_rules = dir / "rules.json";
  try {
    make_analyzer(settings, std::make_unique<test::BoxEngine>());
    FAIL();
  } catch (const PipelineError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown window preset 'bone'"), std::string::npos) << e.what();
  }
  settings.task_rules = dir / "absent.json";
  EXPECT_THROW(make_analyzer(settings, std::make_unique<test::BoxEngine>()), PipelineError);
  AnalyzerSettings no_model;
  try {
    Analyzer::create(no_model);
    FAIL();
  } catch (const PipelineError& e) {
    EXPECT_NE(std::string(e.what()).find("no model folder"), std::string::npos);
  }
  no_model.model_dir = dir / "nothing-here";
  try {
    Analyzer::create(no_model);
    FAIL();
  } catch (const PipelineError& e) {
    EXPECT_NE(std::string(e.what()).find("nothing-here"), std::string::npos) << e.what();
  }
}

TEST(AnalysisWithBoxes, AskOnOneFrameGivesTextFindingsAndASeg) {
  const auto& data = fixture_data();
  auto analyzer = make_analyzer({}, std::make_unique<test::BoxEngine>());
  const auto us = data.inputs("us");
  const auto answer = analyzer->ask(us.at(0), 5, {"Please segment liver in ultrasound.", "", {}, ""}, "ask-seed");
  EXPECT_EQ(answer.text, "Liver.");
  ASSERT_EQ(answer.findings.size(), 1u);
  ASSERT_TRUE(answer.seg);
  EXPECT_EQ(answer.findings[0].key_frame, 5);
  test::TempDir dir;
  test::write_object(dir / "seg.dcm", *answer.seg);
  const auto decoded = test::read_seg_with_pydicom(dir / "seg.dcm");
  ASSERT_EQ(decoded["frames"].size(), 1u);
  EXPECT_EQ(decoded["frames"][0]["source_frame"], 5);
  EXPECT_EQ(decoded["frames"][0]["bbox"], nlohmann::json({80, 160, 240, 320}));
  EXPECT_TRUE(test::dciodvfy_errors(dir / "seg.dcm").empty());
  try {
    analyzer->ask(us.at(0), 17, {"x", "", {}, ""}, "");
    FAIL();
  } catch (const PipelineError& e) {
    EXPECT_NE(std::string(e.what()).find("has no frame 17"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace unibiomed::pipeline
