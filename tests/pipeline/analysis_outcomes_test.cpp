// The study result from series outcomes: a failing series leaves nothing behind whichever its
// place (its SEG number and preview numbers go to the next), cancellation is its own type, the
// findings read as sentences (the model's answer kept apart), specks below the target's minimum
// size leave the findings and the SEG alike, unreadable geometry is said per series, values that
// DCMTK refuses (zero sizes, invalid header values, leading-zero UIDs) still give results, targets a
// checkpoint was not trained on are not asked, ask() codes a named target as that target, and
// images without a series UID fail once, as one series, while the rest of the study is reported.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <set>
#include <sstream>

#include "config/task_rules.h"
#include "inference/answer_parser.h"
#include "pipeline/study_analyzer.h"
#include "pipeline/study_plan.h"
#include "tests/pipeline/pipeline_test_support.h"
#include "tests/support/test_support.h"

namespace unibiomed::pipeline {
namespace {

namespace fs = std::filesystem;
using test::fixture_data;

// Copies of a sample's files with `change` applied to each dataset.
std::vector<InstanceInput> changed_copies(const std::string& sample, const fs::path& dir,
                                          const std::function<void(DcmDataset&)>& change) {
  fs::create_directories(dir);
  std::vector<InstanceInput> out;
  for (const auto& in : fixture_data().inputs(sample)) {
    DcmFileFormat file;
    if (file.loadFile(in.path.c_str()).bad()) throw std::runtime_error("cannot read " + in.path.string());
    change(*file.getDataset());
    const fs::path copy = dir / in.path.filename();
    if (file.saveFile(copy.c_str(), file.getDataset()->getOriginalXfer()).bad())
      throw std::runtime_error("cannot write " + copy.string());
    out.push_back({copy.string(), {}, copy});
  }
  return out;
}

std::string study_uid_of(const std::string& sample) {
  DcmFileFormat file;
  file.loadFile(fixture_data().inputs(sample).front().path.c_str());
  OFString uid;
  file.getDataset()->findAndGetOFString(DCM_StudyInstanceUID, uid);
  return uid.c_str();
}

std::string series_uid_of(const std::vector<InstanceInput>& inputs) {
  DcmFileFormat file;
  file.loadFile(inputs.front().path.c_str());
  OFString uid;
  file.getDataset()->findAndGetOFString(DCM_SeriesInstanceUID, uid);
  return uid.c_str();
}

StudyResult analyze(const std::vector<InstanceInput>& inputs, std::unique_ptr<GroundingEngine> engine,
                    AnalyzerSettings settings = {}) {
  return make_analyzer(settings, std::move(engine))->analyze(inputs, {}, {}, nullptr, "seed");
}

bool contains(const std::vector<uint8_t>& bytes, const std::string& text) {
  return std::search(bytes.begin(), bytes.end(), text.begin(), text.end()) != bytes.end();
}

// The box engine, with a speck of 3 x 3 view pixels far from the abnormality's box.
class SpeckEngine : public test::BoxEngine {
 public:
  std::vector<inference::GroundedAnswer> answer(Batch& batch, const std::string& question,
                                                const std::atomic<bool>* cancel) override {
    auto answers = test::BoxEngine::answer(batch, question, cancel);
    if (question.rfind("Please segment", 0) == 0) return answers;
    for (auto& a : answers) {
      a.text = "It is [SEG]. Diabetic retinopathy.";
      a.parsed = inference::parse_answer(a.text, question);
      for (auto& s : a.segments) {
        s.phrase = "Diabetic retinopathy";
        for (int y = 10; y < 13; ++y)
          for (int x = 10; x < 13; ++x) {
            s.mask[size_t(y) * s.width + x] = 1;
            s.probability[size_t(y) * s.width + x] = 0.9f;
          }
      }
    }
    return answers;
  }
};

TEST(AnalysisOutcomes, AFailingSeriesLeavesNothingWhereverItIs) {
  // Endoscopy (720 wide) moved into the fundus' study (1024 wide): one study, two series.
  test::TempDir dir;
  const std::string study = study_uid_of("fundus");
  auto inputs = fixture_data().inputs("fundus");
  const auto endoscopy = changed_copies("endoscopy", dir / "endoscopy",
                                        [&](DcmDataset& ds) { ds.putAndInsertString(DCM_StudyInstanceUID, study.c_str()); });
  inputs.insert(inputs.end(), endoscopy.begin(), endoscopy.end());
  const std::string endoscopy_uid = series_uid_of(endoscopy);
  const std::string fundus_uid = series_uid_of(fixture_data().inputs("fundus"));
  for (int fail_width : {1024, 720}) {
    SCOPED_TRACE("failing views " + std::to_string(fail_width) + " wide");
    const std::string kept = fail_width == 1024 ? endoscopy_uid : fundus_uid;
    const StudyResult r = analyze(inputs, std::make_unique<test::BoxEngine>(fail_width));
    ASSERT_EQ(r.series.size(), 2u);
    int failed = 0;
    for (const auto& s : r.series) {
      if (s.state == SeriesOutcome::State::Failed) {
        ++failed;
        EXPECT_NE(s.series_instance_uid, kept);
        EXPECT_NE(s.reason.find("refusing views " + std::to_string(fail_width) + " wide"), std::string::npos) << s.reason;
      } else {
        EXPECT_EQ(s.state, SeriesOutcome::State::Analysed) << s.reason;
        EXPECT_EQ(s.series_instance_uid, kept);
      }
    }
    EXPECT_EQ(failed, 1);
    ASSERT_FALSE(r.findings.empty());
    for (const auto& f : r.findings) EXPECT_EQ(f.series_instance_uid, kept);
    // One SEG (the first of the study: series number 9001) and the SR.
    ASSERT_EQ(r.objects.size(), 2u);
    EXPECT_EQ(r.objects[0].kind, "SEG");
    EXPECT_EQ(r.objects[1].kind, "SR");
    DcmFileFormat seg;
    test::TempDir out;
    test::write_object(out / "seg.dcm", r.objects[0]);
    ASSERT_TRUE(seg.loadFile((out / "seg.dcm").c_str()).good());
    OFString number;
    seg.getDataset()->findAndGetOFString(DCM_SeriesNumber, number);
    EXPECT_EQ(std::string(number.c_str()), "9001");
    // Previews numbered from 01, one per finding.
    ASSERT_EQ(r.previews.size(), r.findings.size());
    EXPECT_NE(r.previews[0].file_name.find("-01-"), std::string::npos) << r.previews[0].file_name;
    const auto summary = nlohmann::json::parse(r.summary_json);
    EXPECT_EQ(summary["series"].size(), 2u);
    EXPECT_EQ(summary["findings"].size(), r.findings.size());
  }
}

TEST(AnalysisOutcomes, ImagesWithoutASeriesUidFailOnceAndTheRestOfTheStudyIsReported) {
  // MR slices without SeriesInstanceUID in the fundus' study: results cannot reference them, so
  // they fail together as one series named by its first file; the fundus gets its SEG and the SR.
  test::TempDir dir;
  const std::string study = study_uid_of("fundus");
  auto inputs = fixture_data().inputs("fundus");
  const auto mr = changed_copies("mr", dir / "mr", [&](DcmDataset& ds) {
    ds.putAndInsertString(DCM_StudyInstanceUID, study.c_str());
    ds.findAndDeleteElement(DCM_SeriesInstanceUID);
  });
  ASSERT_GT(mr.size(), 1u);
  inputs.insert(inputs.end(), mr.begin(), mr.end());
  const StudyResult r = analyze(inputs, std::make_unique<test::BoxEngine>());
  ASSERT_EQ(r.series.size(), 2u);
  const SeriesOutcome& fundus = r.series[0].series_instance_uid.empty() ? r.series[1] : r.series[0];
  const SeriesOutcome& orphans = r.series[0].series_instance_uid.empty() ? r.series[0] : r.series[1];
  EXPECT_EQ(fundus.state, SeriesOutcome::State::Analysed) << fundus.reason;
  EXPECT_EQ(fundus.series_instance_uid, series_uid_of(fixture_data().inputs("fundus")));
  EXPECT_EQ(orphans.state, SeriesOutcome::State::Failed);
  EXPECT_EQ(orphans.reason.rfind(std::to_string(mr.size()) + " instance(s) without SeriesInstanceUID (0020,000E)", 0),
            0u)
      << orphans.reason;
  EXPECT_TRUE(std::any_of(mr.begin(), mr.end(), [&](const InstanceInput& in) {
    return orphans.reason.find(in.id) != std::string::npos;
  })) << orphans.reason;
  EXPECT_EQ(orphans.notes.size(), mr.size()) << testing::PrintToString(orphans.notes);
  std::set<std::string> kinds;
  for (const auto& o : r.objects) kinds.insert(o.kind);
  EXPECT_EQ(kinds, (std::set<std::string>{"SEG", "SR"}));
  EXPECT_FALSE(r.findings.empty());
  for (const auto& f : r.findings) EXPECT_EQ(f.series_instance_uid, fundus.series_instance_uid);
}

TEST(AnalysisOutcomes, AMultiFrameInstanceInThreePlanesGetsOneSegPerPlane) {
  // An enhanced MR whose frames lie in three planes (tests/pipeline/make_multiplane.py, from the
  // sample MR's slices): three stacks, each with its own SEG of its own frames only. Before, the
  // SEG sources were every frame of the instance, which one SEG cannot hold (three
  // orientations), and the series failed after the model had run.
  test::TempDir dir;
  const auto slices = fixture_data().inputs("mr");
  ASSERT_GE(slices.size(), 9u);
  std::vector<std::string> command{"/usr/bin/python3",
                                   (test::source_dir() / "tests/pipeline/make_multiplane.py").string(),
                                   (dir / "planes.dcm").string(), "3"};
  for (size_t k = 0; k < 9; ++k) command.push_back(slices[k].path.string());
  const auto made = test::run_command(command);
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const StudyResult r = analyze(test::file_inputs({dir / "planes.dcm"}), std::make_unique<test::BoxEngine>());
  ASSERT_EQ(r.series.size(), 1u);
  ASSERT_EQ(r.series[0].state, SeriesOutcome::State::Analysed) << r.series[0].reason;
  std::set<std::set<int>> frames_of_segs;
  for (const auto& o : r.objects) {
    const fs::path file = dir / o.file_name;
    test::write_object(file, o);
    std::string out;
    EXPECT_TRUE(test::dciodvfy_errors(file, &out).empty()) << o.file_name << ":\n" << out;
    if (o.kind != "SEG") continue;
    std::set<int> frames;
    const auto decoded = test::read_seg_with_pydicom(file);
    for (const auto& f : decoded["frames"]) frames.insert(f["source_frame"].get<int>());
    frames_of_segs.insert(frames);
  }
  EXPECT_EQ(frames_of_segs, (std::set<std::set<int>>{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}}));
}

TEST(AnalysisOutcomes, CancellationIsItsOwnType) {
  auto analyzer = make_analyzer({}, std::make_unique<test::BoxEngine>());
  std::atomic<bool> cancel{true};
  EXPECT_THROW(analyzer->analyze(fixture_data().inputs("xray"), {}, {}, &cancel, ""), Cancelled);
  cancel = false;
  try {
    analyzer->analyze(fixture_data().inputs("ct"), {},
                      [&](const Progress& p) {
                        if (p.stage == "model") cancel = true;
                      },
                      &cancel, "");
    FAIL() << "not cancelled";
  } catch (const Cancelled& e) {
    EXPECT_STREQ(e.what(), "cancelled");
  }
  // An engine's error is a failed series, not a cancellation.
  std::atomic<bool> no{false};
  const auto r =
      make_analyzer({}, std::make_unique<test::BoxEngine>(1024))->analyze(fixture_data().inputs("fundus"), {}, {}, &no, "");
  EXPECT_EQ(r.series.at(0).state, SeriesOutcome::State::Failed);
}

TEST(AnalysisOutcomes, FindingsReadAsSentencesAndKeepTheModelsAnswer) {
  const StudyResult r = analyze(fixture_data().inputs("us"), std::make_unique<test::BoxEngine>());
  ASSERT_EQ(r.findings.size(), 2u);
  EXPECT_EQ(r.findings[0].label, "Liver");
  EXPECT_EQ(r.findings[0].text, "Liver.");  // "It is [SEG]." says nothing more than the target
  EXPECT_EQ(r.findings[0].model_answer, "It is [SEG].");
  EXPECT_EQ(r.findings[1].label, "Cyst");
  EXPECT_EQ(r.findings[1].text, "Cyst.");
  EXPECT_EQ(r.findings[1].model_answer, "It is [SEG]. Cyst.");
  ASSERT_EQ(r.answers.size(), 1u);
  EXPECT_NE(r.answers[0].find("abnormality: Cyst."), std::string::npos) << r.answers[0];
  const auto summary = nlohmann::json::parse(r.summary_json);
  EXPECT_EQ(summary["findings"][1]["text"], "Cyst.");
  EXPECT_EQ(summary["findings"][1]["model_answer"], "It is [SEG]. Cyst.");
  const ResultObject* sr = nullptr;
  for (const auto& o : r.objects)
    if (o.kind == "SR") sr = &o;
  ASSERT_NE(sr, nullptr);
  EXPECT_FALSE(contains(sr->bytes, "It is")) << "the SR carries the model's filler";
  EXPECT_FALSE(contains(sr->bytes, "[SEG]"));
  EXPECT_TRUE(contains(sr->bytes, "Cyst"));
}

TEST(AnalysisOutcomes, SpecksBelowTheMinimumLeaveFindingsAndSegAlike) {
  // Fundus, 0.0117 mm pixels: a 3 x 3 speck is 0.0012 mm2, under the fundus lesion's 0.01 mm2;
  // the box [512, 768)^2 is 9 mm2.
  const StudyResult r = analyze(fixture_data().inputs("fundus"), std::make_unique<SpeckEngine>());
  ASSERT_EQ(r.series.size(), 1u);
  ASSERT_EQ(r.series[0].state, SeriesOutcome::State::Analysed) << r.series[0].reason;
  std::vector<const Finding*> lesions;
  for (const auto& f : r.findings)
    if (f.task == "abnormality") lesions.push_back(&f);
  ASSERT_EQ(lesions.size(), 1u) << "the speck became a finding";
  EXPECT_EQ(lesions[0]->label, "Diabetic retinopathy");  // not numbered: one finding
  EXPECT_EQ(lesions[0]->text, "Diabetic retinopathy.");
  bool noted = false;
  for (const auto& n : r.series[0].notes)
    noted |= n.find("1 component smaller than 0.01 mm2 dropped as noise") != std::string::npos;
  EXPECT_TRUE(noted) << testing::PrintToString(r.series[0].notes);
  test::TempDir dir;
  const ResultObject* seg = nullptr;
  for (const auto& o : r.objects)
    if (o.kind == "SEG") seg = &o;
  ASSERT_NE(seg, nullptr);
  test::write_object(dir / "seg.dcm", *seg);
  const auto decoded = test::read_seg_with_pydicom(dir / "seg.dcm");
  bool saw_lesion = false;
  for (const auto& f : decoded["frames"])
    if (f["segment"] == lesions[0]->segment_number) {
      saw_lesion = true;
      EXPECT_EQ(f["pixels"], 256 * 256) << "the speck is in the SEG";
      EXPECT_EQ(f["bbox"], nlohmann::json({512, 512, 768, 768}));
    }
  EXPECT_TRUE(saw_lesion);

  // With the minimum at 0 (a rules file redefining the target), the speck is a second lesion.
  test::TempDir rules_dir;
  test::write_file(rules_dir / "rules.json", R"({"version": 1, "extends": "defaults", "targets": {"lesion": {
    "phrase": "lesion", "label": "Lesion", "kind": "lesion", "colour": [255, 60, 60], "min_size": 0,
    "category": {"value": "49755003", "scheme": "SCT", "meaning": "Morphologically Abnormal Structure"},
    "type": {"value": "52988006", "scheme": "SCT", "meaning": "Lesion"}}},
    "rules": [{"name": "fundus", "match": {"modality": ["Fundus"]}, "modality_phrase": "fundus",
               "tasks": [{"name": "abnormality", "family": "disease", "targets": ["lesion"]}]}]})");
  AnalyzerSettings settings;
  settings.task_rules = rules_dir / "rules.json";
  const StudyResult all = analyze(fixture_data().inputs("fundus"), std::make_unique<SpeckEngine>(), settings);
  EXPECT_EQ(all.findings.size(), 2u);

  // With a minimum above the box's 9 mm2, nothing is left of the model's answer: the series'
  // notes still say what was dropped, since the answer named a finding.
  const std::string rules = test::read_file(rules_dir / "rules.json");
  std::string large = rules;
  large.replace(large.find("\"min_size\": 0"), 13, "\"min_size\": 100");
  test::write_file(rules_dir / "large.json", large);
  settings.task_rules = rules_dir / "large.json";
  const StudyResult none = analyze(fixture_data().inputs("fundus"), std::make_unique<SpeckEngine>(), settings);
  ASSERT_EQ(none.series.size(), 1u);
  EXPECT_TRUE(none.findings.empty());
  bool said = false;
  for (const auto& n : none.series[0].notes)
    said |= n == "abnormality (Lesion): 2 components smaller than 100 mm2 dropped as noise";
  EXPECT_TRUE(said) << testing::PrintToString(none.series[0].notes);
}

bool has_note(const SeriesOutcome& s, const std::string& text) {
  for (const auto& n : s.notes)
    if (n.find(text) != std::string::npos) return true;
  return false;
}

TEST(AnalysisOutcomes, FindingsUnderATargetsMinimumConfidenceAreLeftOutAndSaidSo) {
  // The box engine's masks have a probability of 0.9 and an IoU score of 0.8: a confidence of
  // about 0.85. A site's rules file asking 0.9 of the fundus lesion leaves it out.
  auto rules_asking = [](const std::string& confidence) {
    return R"({"version": 1, "extends": "defaults", "targets": {"lesion": {
      "phrase": "lesion", "label": "Lesion", "kind": "lesion", "colour": [255, 60, 60], "min_size": 0,
      "min_confidence": )" +
           confidence + R"(,
      "category": {"value": "49755003", "scheme": "SCT", "meaning": "Morphologically Abnormal Structure"},
      "type": {"value": "52988006", "scheme": "SCT", "meaning": "Lesion"}}},
      "rules": [{"name": "fundus", "match": {"modality": ["Fundus"]}, "modality_phrase": "fundus",
                 "tasks": [{"name": "abnormality", "family": "disease", "targets": ["lesion"]}]}]})";
  };
  test::TempDir dir;
  AnalyzerSettings settings;
  settings.task_rules = dir / "rules.json";
  test::write_file(settings.task_rules, rules_asking("0.8"));
  const StudyResult kept = analyze(fixture_data().inputs("fundus"), std::make_unique<test::BoxEngine>(), settings);
  ASSERT_EQ(kept.findings.size(), 1u);
  const double confidence = kept.findings[0].confidence;
  EXPECT_GT(confidence, 0.8);
  EXPECT_LT(confidence, 0.9);

  test::write_file(settings.task_rules, rules_asking("0.9"));
  const StudyResult left_out = analyze(fixture_data().inputs("fundus"), std::make_unique<test::BoxEngine>(), settings);
  ASSERT_EQ(left_out.series.size(), 1u);
  EXPECT_EQ(left_out.series[0].state, SeriesOutcome::State::Analysed) << left_out.series[0].reason;
  EXPECT_TRUE(left_out.findings.empty());
  for (const auto& o : left_out.objects) EXPECT_NE(o.kind, "SEG") << "a SEG without findings";
  char expected[160];
  std::snprintf(expected, sizeof expected,
                "abnormality (Lesion): 1 finding with a confidence under 0.9 left out (%.4g)", confidence);
  bool said = false;
  for (const auto& n : left_out.series[0].notes) said |= n == expected;
  EXPECT_TRUE(said) << expected << " not in " << testing::PrintToString(left_out.series[0].notes);

  // ask() with the same rules: the [SEG] that became no finding is in the answer's notes.
  const auto analyzer = make_analyzer(settings, std::make_unique<test::BoxEngine>());
  const config::TaskRules defaults = config::TaskRules::defaults();
  const auto answer = analyzer->ask(fixture_data().inputs("fundus").at(0), 1,
                                    {defaults.prompt_template(config::TaskFamily::DiseaseRecognition), "", {}, ""}, "");
  ASSERT_EQ(answer.segments.size(), 1u);
  EXPECT_EQ(answer.segments[0].finding(), -1);
  EXPECT_TRUE(answer.findings.empty());
  std::snprintf(expected, sizeof expected, "[SEG] 0 (\"Cyst\"): 1 finding with a confidence under 0.9 left out (%.4g)",
                confidence);
  EXPECT_EQ(answer.notes, std::vector<std::string>{expected});
}

TEST(AnalysisOutcomes, GeometryThatIsNotANumberIsSaidPerSeries) {
  // PixelSpacing: no size in mm at all. Whatever becomes of the series (the SEG writer wants
  // the spacing of a frame of reference), its record says why.
  test::TempDir dir;
  const auto inputs = changed_copies("ct", dir / "spacing", [](DcmDataset& ds) { ds.putAndInsertString(DCM_PixelSpacing, "abc"); });
  const std::string uid = series_uid_of(inputs);
  const StudyResult r = analyze(inputs, std::make_unique<test::BoxEngine>());
  ASSERT_EQ(r.series.size(), 1u);
  const std::string expected = "series " + uid + ": no measurements: PixelSpacing is not a number ('abc') in 5 of 5 instances";
  EXPECT_TRUE(has_note(r.series[0], expected)) << testing::PrintToString(r.series[0].notes);
  const auto summary = nlohmann::json::parse(r.summary_json);
  EXPECT_NE(summary["series"][0]["notes"].dump().find("PixelSpacing is not a number ('abc')"), std::string::npos)
      << summary["series"][0].dump(2);
  for (const auto& f : r.findings)
    for (const auto& m : f.measurements) EXPECT_NE(m.unit, "mm2") << f.label;
  // The series is analysed and its SEG written as for images without geometry: no frame of
  // reference (it would need pixel measures), still valid for dciodvfy.
  ASSERT_EQ(r.series[0].state, SeriesOutcome::State::Analysed) << r.series[0].reason;
  ASSERT_FALSE(r.findings.empty());
  const ResultObject* spacing_seg = nullptr;
  for (const auto& o : r.objects)
    if (o.kind == "SEG") spacing_seg = &o;
  ASSERT_NE(spacing_seg, nullptr);
  test::write_object(dir / "spacing-seg.dcm", *spacing_seg);
  std::string dciodvfy_output;
  EXPECT_TRUE(test::dciodvfy_errors(dir / "spacing-seg.dcm", &dciodvfy_output).empty()) << dciodvfy_output;
  DcmFileFormat spacing_file;
  ASSERT_TRUE(spacing_file.loadFile((dir / "spacing-seg.dcm").c_str()).good());
  EXPECT_FALSE(spacing_file.getDataset()->tagExists(DCM_FrameOfReferenceUID));

  // ImagePositionPatient: the slices are no volume; analysed, areas but no volumes.
  const auto position = changed_copies("ct", dir / "position",
                                       [](DcmDataset& ds) { ds.putAndInsertString(DCM_ImagePositionPatient, "a\\b\\c"); });
  const StudyResult p = analyze(position, std::make_unique<test::BoxEngine>());
  ASSERT_EQ(p.series.at(0).state, SeriesOutcome::State::Analysed) << p.series[0].reason;
  EXPECT_TRUE(has_note(p.series[0], "series " + uid + ": no volume measurements: ImagePositionPatient is not a number ('a\\b\\c')"))
      << testing::PrintToString(p.series[0].notes);
  ASSERT_FALSE(p.findings.empty());
  for (const auto& f : p.findings)
    for (const auto& m : f.measurements) EXPECT_NE(m.name, "Volume") << f.label;

  // Positions far beyond any patient (1e300 mm apart): read as none, said, and the SEG states
  // no spacing between slices (dciodvfy rejected the 1e300 it was given before).
  const auto far = changed_copies("ct", dir / "far", [n = 0](DcmDataset& ds) mutable {
    ds.putAndInsertString(DCM_ImagePositionPatient, ("0\\0\\" + std::to_string(++n) + "e300").c_str());
  });
  const StudyResult farr = analyze(far, std::make_unique<test::BoxEngine>());
  ASSERT_EQ(farr.series.at(0).state, SeriesOutcome::State::Analysed) << farr.series[0].reason;
  EXPECT_TRUE(
      has_note(farr.series[0], "series " + uid +
                                   ": no volume measurements: ImagePositionPatient is not a position (coordinates "
                                   "in mm within 1 km of the origin) ('0\\0\\1e300') in " +
                                   std::to_string(far.size()) + " of " + std::to_string(far.size()) + " instances"))
      << testing::PrintToString(farr.series[0].notes);
  for (const auto& o : farr.objects) {
    test::write_object(dir / ("far-" + o.file_name), o);
    std::string output;
    EXPECT_TRUE(test::dciodvfy_errors(dir / ("far-" + o.file_name), &output).empty()) << o.kind << ":\n" << output;
  }

  // A wrong count of values, a single-valued attribute; the clean sample says nothing.
  const auto orientation = changed_copies("ct", dir / "orientation", [](DcmDataset& ds) {
    ds.putAndInsertString(DCM_ImageOrientationPatient, "1\\0\\0\\0\\1");
    ds.putAndInsertString(DCM_SliceThickness, "thin");
  });
  const StudyResult o = analyze(orientation, std::make_unique<test::BoxEngine>());
  EXPECT_TRUE(has_note(o.series.at(0), "ImageOrientationPatient has 5 values, not 6 ('1\\0\\0\\0\\1')"))
      << testing::PrintToString(o.series[0].notes);
  EXPECT_TRUE(has_note(o.series.at(0), "SliceThickness is not a number ('thin')")) << testing::PrintToString(o.series[0].notes);

  // The same values in an enhanced image's functional groups are said the same way.
  const auto enhanced = changed_copies("ct", dir / "enhanced", [](DcmDataset& ds) {
    DcmItem *shared = nullptr, *frame = nullptr, *item = nullptr;
    ASSERT_TRUE(ds.findOrCreateSequenceItem(DCM_SharedFunctionalGroupsSequence, shared, 0).good());
    ASSERT_TRUE(ds.findOrCreateSequenceItem(DCM_PerFrameFunctionalGroupsSequence, frame, 0).good());
    ASSERT_TRUE(shared->findOrCreateSequenceItem(DCM_PixelMeasuresSequence, item, 0).good());
    item->putAndInsertString(DCM_PixelSpacing, "0\\0");
    item->putAndInsertString(DCM_SliceThickness, "nan");
    OFString value;
    ds.findAndGetOFStringArray(DCM_ImageOrientationPatient, value);
    ASSERT_TRUE(shared->findOrCreateSequenceItem(DCM_PlaneOrientationSequence, item, 0).good());
    item->putAndInsertString(DCM_ImageOrientationPatient, value.c_str());
    ds.findAndGetOFStringArray(DCM_ImagePositionPatient, value);
    ASSERT_TRUE(frame->findOrCreateSequenceItem(DCM_PlanePositionSequence, item, 0).good());
    item->putAndInsertString(DCM_ImagePositionPatient, value.c_str());
    for (const DcmTagKey& moved :
         {DCM_PixelSpacing, DCM_SliceThickness, DCM_ImageOrientationPatient, DCM_ImagePositionPatient})
      ds.findAndDeleteElement(moved);
    ds.putAndInsertString(DCM_SOPClassUID, UID_EnhancedCTImageStorage);
    ds.putAndInsertString(DCM_NumberOfFrames, "1");
  });
  const StudyResult e = analyze(enhanced, std::make_unique<test::BoxEngine>());
  ASSERT_EQ(e.series.at(0).state, SeriesOutcome::State::Analysed) << e.series[0].reason;
  EXPECT_TRUE(has_note(e.series[0],
                       "no measurements: PixelSpacing is not a size (a positive number of mm up to 10 m) "
                       "('0\\0') in 5 of 5 instances"))
      << testing::PrintToString(e.series[0].notes);
  EXPECT_TRUE(has_note(e.series[0], "no slice thickness: SliceThickness is not a finite number ('nan')"))
      << testing::PrintToString(e.series[0].notes);
  EXPECT_FALSE(has_note(e.series[0], "ImagePositionPatient")) << testing::PrintToString(e.series[0].notes);

  // A CT without any pixel spacing or position: missing, not unreadable, and said as well.
  const auto bare = changed_copies("ct", dir / "bare", [](DcmDataset& ds) {
    ds.findAndDeleteElement(DCM_PixelSpacing);
    ds.findAndDeleteElement(DCM_ImagePositionPatient);
  });
  const StudyResult b = analyze(bare, std::make_unique<test::BoxEngine>());
  ASSERT_EQ(b.series.at(0).state, SeriesOutcome::State::Analysed) << b.series[0].reason;
  EXPECT_TRUE(has_note(b.series[0], "series " + uid + ": no measurements: its images have no PixelSpacing (0028,0030)"))
      << testing::PrintToString(b.series[0].notes);
  EXPECT_TRUE(has_note(
      b.series[0], "series " + uid + ": no volume measurements: its frames have no ImagePositionPatient (0020,0032)"))
      << testing::PrintToString(b.series[0].notes);
  EXPECT_FALSE(has_note(b.series[0], "ImageOrientationPatient")) << "the orientation is there";
  ASSERT_FALSE(b.findings.empty());
  for (const auto& f : b.findings)
    for (const auto& m : f.measurements) {
      EXPECT_NE(m.unit, "mm2") << f.label;
      EXPECT_NE(m.name, "Volume") << f.label;
    }

  const StudyResult clean = analyze(fixture_data().inputs("ct"), std::make_unique<test::BoxEngine>());
  EXPECT_FALSE(has_note(clean.series.at(0), "its images have no"));
  EXPECT_FALSE(has_note(clean.series.at(0), "its frames have no"));
  EXPECT_FALSE(has_note(clean.series.at(0), "not a number"));
  EXPECT_FALSE(has_note(clean.series.at(0), "values, not"));
}

// The measurements of a finding by name, "" unit when absent.
const Measurement* measurement(const Finding& f, const std::string& name) {
  for (const auto& m : f.measurements)
    if (m.name == name) return &m;
  return nullptr;
}

// The areas in the study's SR, in the order of its groups (dsrdump of it is left in `dump`).
std::vector<double> sr_areas(const StudyResult& r, const test::TempDir& dir, std::string& dump) {
  const ResultObject* sr = nullptr;
  for (const auto& o : r.objects)
    if (o.kind == "SR") sr = &o;
  if (!sr) return {};
  test::write_object(dir / "sr.dcm", *sr);
  dump = test::run_command({"dsrdump", (dir / "sr.dcm").string()}).output;
  std::vector<double> areas;
  for (size_t at = dump.find("\"Area\")=\""); at != std::string::npos; at = dump.find("\"Area\")=\"", at + 1))
    areas.push_back(std::stod(dump.substr(at + 9)));
  return areas;
}

// Appends a 2D tissue region calibrated in cm (`cm` per pixel both ways) to an ultrasound
// image, with its bounds (MinX0, MinY0, MaxX1, MaxY1) when given.
void add_us_region(DcmDataset& ds, std::optional<std::array<Uint32, 4>> bounds, double cm) {
  DcmItem* region = nullptr;
  ds.findOrCreateSequenceItem(DCM_SequenceOfUltrasoundRegions, region, -2);
  if (bounds) {
    region->putAndInsertUint32(DCM_RegionLocationMinX0, (*bounds)[0]);
    region->putAndInsertUint32(DCM_RegionLocationMinY0, (*bounds)[1]);
    region->putAndInsertUint32(DCM_RegionLocationMaxX1, (*bounds)[2]);
    region->putAndInsertUint32(DCM_RegionLocationMaxY1, (*bounds)[3]);
  }
  region->putAndInsertUint16(DCM_RegionSpatialFormat, 1);
  region->putAndInsertUint16(DCM_PhysicalUnitsXDirection, 3);
  region->putAndInsertUint16(DCM_PhysicalUnitsYDirection, 3);
  region->putAndInsertFloat64(DCM_PhysicalDeltaX, cm);
  region->putAndInsertFloat64(DCM_PhysicalDeltaY, cm);
}

// Every Area of an SR dump (dsrdump) is in pixels.
void expect_areas_in_pixels(const std::string& dump) {
  std::istringstream lines(dump);
  for (std::string line; std::getline(lines, line);)
    if (line.find("\"Area\")=") != std::string::npos) {
      EXPECT_NE(line.find("{pixels}"), std::string::npos) << line;
    }
}

// The sample cine with a PixelSpacing of 0.3 mm in place of its region (0.03 cm per pixel).
StudyResult analyze_us_spaced(const test::TempDir& dir) {
  return analyze(changed_copies("us", dir / "spacing",
                                [](DcmDataset& ds) {
                                  delete ds.remove(DCM_SequenceOfUltrasoundRegions);
                                  ds.putAndInsertString(DCM_PixelSpacing, "0.3\\0.3");
                                }),
                 std::make_unique<test::BoxEngine>());
}

// Each finding of `r` measured as the same finding of `spaced` at `ratio` times its pixel size:
// area and per-frame areas in mm2, long axis in mm.
void expect_measured_as(const StudyResult& r, const StudyResult& spaced, double ratio) {
  ASSERT_EQ(r.findings.size(), spaced.findings.size());
  for (size_t i = 0; i < r.findings.size(); ++i) {
    const Finding& f = r.findings[i];
    const Measurement* area = measurement(f, "Area");
    const Measurement* axis = measurement(f, "Long axis");
    ASSERT_TRUE(area && axis) << f.label;
    EXPECT_EQ(area->unit, "mm2");
    EXPECT_NEAR(area->value, measurement(spaced.findings[i], "Area")->value * ratio * ratio, 1e-9 * area->value);
    EXPECT_NEAR(axis->value, measurement(spaced.findings[i], "Long axis")->value * ratio, 1e-9 * axis->value);
    EXPECT_EQ(f.frame_area_unit, "mm2");
    ASSERT_EQ(f.frame_areas.size(), spaced.findings[i].frame_areas.size());
    for (size_t k = 0; k < f.frame_areas.size(); ++k)
      EXPECT_NEAR(f.frame_areas[k].second, spaced.findings[i].frame_areas[k].second * ratio * ratio,
                  1e-9 * f.frame_areas[k].second);
  }
}

// The sample cine with its region replaced by `regions` (bounds as fractions of its width and
// height: MinX0, MinY0, MaxX1, MaxY1, with the scale in cm per pixel).
std::vector<InstanceInput> us_with_regions(const fs::path& dir,
                                           const std::vector<std::pair<std::array<double, 4>, double>>& regions) {
  return changed_copies("us", dir, [=](DcmDataset& ds) {
    Uint16 rows = 0, columns = 0;
    ds.findAndGetUint16(DCM_Rows, rows);
    ds.findAndGetUint16(DCM_Columns, columns);
    delete ds.remove(DCM_SequenceOfUltrasoundRegions);
    for (const auto& [at, cm] : regions) {
      auto pixel = [](double fraction, Uint16 size) { return std::min(Uint32(fraction * size), Uint32(size - 1)); };
      add_us_region(ds, {{pixel(at[0], columns), pixel(at[1], rows), pixel(at[2], columns), pixel(at[3], rows)}}, cm);
    }
  });
}

TEST(AnalysisOutcomes, UltrasoundIsMeasuredWithItsRegionCalibration) {
  // The sample cine states its scale only in its ultrasound region (0.03 cm per pixel): the
  // cyst is measured exactly as with a PixelSpacing of 0.3 mm.
  test::TempDir dir;
  const auto calibrated = analyze(fixture_data().inputs("us"), std::make_unique<test::BoxEngine>());
  const auto spaced = analyze_us_spaced(dir);
  ASSERT_FALSE(calibrated.findings.empty());
  expect_measured_as(calibrated, spaced, 1);
  for (const auto& n : calibrated.series.at(0).notes) EXPECT_EQ(n.find("no measurements"), std::string::npos) << n;

  // Without any scale, or with two regions that disagree, it is measured in pixels and the
  // series' notes say why.
  const auto bare =
      changed_copies("us", dir / "bare", [](DcmDataset& ds) { delete ds.remove(DCM_SequenceOfUltrasoundRegions); });
  const std::string uid = series_uid_of(bare);
  const auto unscaled = analyze(bare, std::make_unique<test::BoxEngine>());
  EXPECT_TRUE(has_note(unscaled.series.at(0),
                       "series " + uid +
                           ": no measurements: its images have no PixelSpacing (0028,0030) or ultrasound region "
                           "calibrated in cm (SequenceOfUltrasoundRegions (0018,6011))"))
      << testing::PrintToString(unscaled.series[0].notes);
  // A second region of another scale over the same pixels (it states no bounds: the whole
  // image): no telling which applies, and each finding says so.
  const auto two = changed_copies("us", dir / "two-regions", [](DcmDataset& ds) { add_us_region(ds, {}, 0.05); });
  const auto ambiguous = analyze(two, std::make_unique<test::BoxEngine>());
  for (const auto& f : ambiguous.findings)
    EXPECT_TRUE(has_note(ambiguous.series.at(0),
                         ": " + f.label +
                             ": no measurements: it lies where 2D ultrasound regions of different scales overlap "
                             "(SequenceOfUltrasoundRegions (0018,6011))"))
        << f.label << " " << testing::PrintToString(ambiguous.series[0].notes);
  for (const auto* r : {&unscaled, &ambiguous}) {
    ASSERT_FALSE(r->findings.empty());
    for (const auto& f : r->findings) {
      for (const auto& m : f.measurements) EXPECT_NE(m.unit.rfind("mm", 0), 0u) << f.label << " " << m.name;
      EXPECT_EQ(f.frame_area_unit, "pixels");
    }
  }
  std::string dump;
  EXPECT_EQ(sr_areas(ambiguous, dir, dump).size(), ambiguous.findings.size()) << dump;
  expect_areas_in_pixels(dump);
}

TEST(AnalysisOutcomes, ADualPaneUltrasoundMeasuresEachFindingWithItsPanesScale) {
  // The cine's one region replaced by two panes, split at 4/5 of its width (the test engine's
  // boxes lie left of 3/4): the right pane comes first in the sequence, so that the scale
  // is the one of the pane the finding lies in, not of the first region.
  test::TempDir dir;
  auto panes = [&](const std::string& name, double left_cm, double right_cm) {
    return us_with_regions(dir / name, {{{0.8, 0, 1, 1}, right_cm}, {{0, 0, 0.799, 1}, left_cm}});
  };
  const auto spaced = analyze_us_spaced(dir);
  ASSERT_FALSE(spaced.findings.empty());
  for (const auto& [left_cm, right_cm] : {std::pair{0.03, 0.05}, std::pair{0.05, 0.03}}) {
    SCOPED_TRACE(testing::Message() << "left pane " << left_cm << " cm, right pane " << right_cm << " cm per pixel");
    const std::string name = "panes-" + std::to_string(left_cm);
    const auto r = analyze(panes(name, left_cm, right_cm), std::make_unique<test::BoxEngine>());
    expect_measured_as(r, spaced, left_cm / 0.03);  // the left pane's scale against 0.3 mm
    for (const auto& n : r.series.at(0).notes) EXPECT_EQ(n.find("no measurements"), std::string::npos) << n;
    // The SR's areas are the summary's, in the pane's scale.
    std::string dump;
    const std::vector<double> areas = sr_areas(r, dir, dump);
    ASSERT_EQ(areas.size(), r.findings.size()) << dump;
    for (size_t i = 0; i < areas.size(); ++i)
      EXPECT_NEAR(areas[i], measurement(r.findings[i], "Area")->value, 1e-3) << dump;
  }

  // A finding outside every calibrated region (only the strip right of 4/5 is) has no
  // measurements in mm, and the series' notes name it and why.
  const auto outside =
      analyze(us_with_regions(dir / "strip", {{{0.8, 0, 1, 1}, 0.03}}), std::make_unique<test::BoxEngine>());
  ASSERT_FALSE(outside.findings.empty());
  for (const auto& f : outside.findings) {
    for (const auto& m : f.measurements) EXPECT_NE(m.unit.rfind("mm", 0), 0u) << f.label << " " << m.name;
    EXPECT_EQ(f.frame_area_unit, "pixels");
    EXPECT_TRUE(has_note(outside.series.at(0), ": " + f.label +
                                                   ": no measurements: it lies outside the calibrated 2D ultrasound "
                                                   "regions (SequenceOfUltrasoundRegions (0018,6011))"))
        << f.label << " " << testing::PrintToString(outside.series[0].notes);
  }
  std::string dump;
  EXPECT_EQ(sr_areas(outside, dir, dump).size(), outside.findings.size()) << dump;
  expect_areas_in_pixels(dump);
}

TEST(AnalysisOutcomes, AskSaysWhyAnUltrasoundFindingHasNoMeasurements) {
  // ask() measures as the analysis does, and its notes give the reason the analysis gives in the
  // series' notes: a mask outside the calibrated region, or no scale at all.
  test::TempDir dir;
  auto analyzer = make_analyzer({}, std::make_unique<test::BoxEngine>());
  const Question liver{"Please segment liver in ultrasound.", "", {}, ""};
  const auto calibrated = analyzer->ask(fixture_data().inputs("us").at(0), 1, liver, "");
  ASSERT_EQ(calibrated.findings.size(), 1u);
  ASSERT_NE(measurement(calibrated.findings[0], "Area"), nullptr);
  EXPECT_EQ(measurement(calibrated.findings[0], "Area")->unit, "mm2");
  EXPECT_TRUE(calibrated.notes.empty()) << testing::PrintToString(calibrated.notes);

  const auto outside = analyzer->ask(us_with_regions(dir / "strip", {{{0.8, 0, 1, 1}, 0.03}}).at(0), 1, liver, "");
  ASSERT_EQ(outside.findings.size(), 1u);
  EXPECT_TRUE(outside.findings[0].measurements.empty()) << outside.findings[0].measurements.front().unit;
  EXPECT_EQ(outside.notes, std::vector<std::string>{"Liver: no measurements: it lies outside the calibrated 2D "
                                                    "ultrasound regions (SequenceOfUltrasoundRegions (0018,6011))"});

  const auto bare =
      changed_copies("us", dir / "bare", [](DcmDataset& ds) { delete ds.remove(DCM_SequenceOfUltrasoundRegions); });
  const auto unscaled = analyzer->ask(bare.at(0), 1, liver, "");
  ASSERT_EQ(unscaled.findings.size(), 1u);
  EXPECT_TRUE(unscaled.findings[0].measurements.empty());
  EXPECT_EQ(unscaled.notes, std::vector<std::string>{"series " + series_uid_of(bare) +
                                                     ": no measurements: its images have no PixelSpacing (0028,0030) "
                                                     "or ultrasound region calibrated in cm "
                                                     "(SequenceOfUltrasoundRegions (0018,6011))"});
}

TEST(AnalysisOutcomes, AskAboutAnImageWithoutASeriesUidAnswersWithoutASegAndSaysWhy) {
  // The SEG must name the source's series; the answer and its masks do not need it.
  test::TempDir dir;
  const auto bare =
      changed_copies("xray", dir / "no-series", [](DcmDataset& ds) { delete ds.remove(DCM_SeriesInstanceUID); });
  const auto answer = make_analyzer({}, std::make_unique<test::BoxEngine>())
                          ->ask(bare.at(0), 1, {"Please segment heart in chest X-ray.", "", {}, ""}, "");
  ASSERT_EQ(answer.findings.size(), 1u);
  EXPECT_EQ(answer.findings[0].label, "Heart");
  EXPECT_EQ(answer.findings[0].segment_number, 0);
  ASSERT_NE(measurement(answer.findings[0], "Area"), nullptr);  // measured all the same
  EXPECT_FALSE(answer.seg);
  ASSERT_EQ(answer.segments.size(), 1u);
  EXPECT_FALSE(answer.segments[0].mask.empty());
  ASSERT_EQ(answer.notes.size(), 1u) << testing::PrintToString(answer.notes);
  EXPECT_EQ(answer.notes[0].rfind(kNoSegNote, 0), 0u) << answer.notes[0];
  EXPECT_NE(answer.notes[0].find("has no Series Instance UID (0020,000E)"), std::string::npos) << answer.notes[0];
}

TEST(AnalysisOutcomes, RadiographsOfOneSizeAtDifferentPixelSizesAreEachMeasuredWithTheirOwn) {
  // A second copy of the chest radiograph at a finer detector pixel (0.15 mm, not 0.2): one
  // series of two images of one size. Each finding is measured with its own image's pixel size.
  test::TempDir dir;
  auto inputs = changed_copies("xray", dir / "first", [](DcmDataset&) {});
  const auto second = changed_copies("xray", dir / "second", [](DcmDataset& ds) {
    ds.putAndInsertString(DCM_SOPInstanceUID, "2.25.3141592653589793238462643383279");
    ds.putAndInsertString(DCM_InstanceNumber, "2");
    ds.putAndInsertString(DCM_ImagerPixelSpacing, "0.15\\0.15");
  });
  inputs.insert(inputs.end(), second.begin(), second.end());
  const StudyResult r = analyze(inputs, std::make_unique<test::BoxEngine>());
  ASSERT_EQ(r.series.size(), 1u);
  ASSERT_EQ(r.series[0].state, SeriesOutcome::State::Analysed) << r.series[0].reason;
  // The abnormality box lands on the same pixels of both images: two findings, one per image.
  std::map<std::string, const Finding*> cyst_on;
  for (const auto& f : r.findings)
    if (f.task != "organs") cyst_on[f.key_instance_uid] = &f;
  ASSERT_EQ(cyst_on.size(), 2u);
  const Finding* fine = cyst_on.at("2.25.3141592653589793238462643383279");
  cyst_on.erase("2.25.3141592653589793238462643383279");
  const Finding* coarse = cyst_on.begin()->second;
  ASSERT_TRUE(measurement(*fine, "Area") && measurement(*coarse, "Area"));
  EXPECT_NEAR(measurement(*fine, "Area")->value / measurement(*coarse, "Area")->value, 0.75 * 0.75, 1e-9);
  EXPECT_NEAR(measurement(*fine, "Long axis")->value / measurement(*coarse, "Long axis")->value, 0.75, 1e-9);
  // The SR measures each outline with its own image's pixel size, once per group.
  std::string dump;
  const std::vector<double> areas = sr_areas(r, dir, dump);
  ASSERT_EQ(areas.size(), r.findings.size()) << "one area per finding:\n" << dump;
  for (const Finding* f : {fine, coarse}) {
    const double expected = measurement(*f, "Area")->value;
    EXPECT_TRUE(
        std::any_of(areas.begin(), areas.end(), [&](double a) { return std::fabs(a - expected) < 1e-6 * expected; }))
        << expected << " in\n"
        << dump;
  }
}

TEST(AnalysisOutcomes, AStructureInPiecesHasOneAreaInSummaryAndReport) {
  // The organs' boxes fall apart into two pieces on the radiograph: one finding each, whose area
  // in the summary is the SR's, that of the outline drawn (the larger piece), not both pieces'.
  test::TempDir dir;
  auto engine = std::make_unique<test::BoxEngine>();
  engine->split_boxes = true;
  const StudyResult r = analyze(test::fixture_data().inputs("xray"), std::move(engine));
  ASSERT_EQ(r.series.size(), 1u);
  ASSERT_EQ(r.series[0].state, SeriesOutcome::State::Analysed) << r.series[0].reason;
  std::string dump;
  const std::vector<double> areas = sr_areas(r, dir, dump);
  ASSERT_EQ(areas.size(), r.findings.size()) << "one area per finding:\n" << dump;
  size_t split = 0;
  for (size_t i = 0; i < r.findings.size(); ++i) {
    const Measurement* area = measurement(r.findings[i], "Area");
    ASSERT_TRUE(area) << r.findings[i].label;
    EXPECT_NEAR(area->value, areas[i], 1e-6 * areas[i]) << r.findings[i].label << "\n" << dump;
    if (r.findings[i].label != "Cyst") ++split;
  }
  EXPECT_GT(split, 0u) << "no organ finding on the radiograph";
}

TEST(AnalysisOutcomes, ZeroSizesInvalidHeaderValuesAndLeadingZeroUidsStillGiveResults) {
  // What archives hold and DCMTK refuses to write: sizes of zero, values that break their VR, UIDs
  // with leading zeros. Each series is analysed, its SEG and SR are written, and its record says
  // what was left out.
  test::TempDir dir;
  const auto sizes = changed_copies("ct", dir / "sizes", [](DcmDataset& ds) {
    ds.putAndInsertString(DCM_PixelSpacing, "0\\0");
    ds.putAndInsertString(DCM_SliceThickness, "0");
  });
  const StudyResult z = analyze(sizes, std::make_unique<test::BoxEngine>());
  ASSERT_EQ(z.series.at(0).state, SeriesOutcome::State::Analysed) << z.series[0].reason;
  EXPECT_TRUE(has_note(z.series[0],
                       "no measurements: PixelSpacing is not a size (a positive number of mm up to 10 m) ('0\\0')"))
      << testing::PrintToString(z.series[0].notes);
  EXPECT_TRUE(has_note(z.series[0], "no slice thickness: SliceThickness is not a size"))
      << testing::PrintToString(z.series[0].notes);
  ASSERT_FALSE(z.findings.empty());
  for (const auto& f : z.findings)
    for (const auto& m : f.measurements) EXPECT_NE(m.unit, "mm2") << f.label;

  const auto header = changed_copies("ct", dir / "header", [](DcmDataset& ds) {
    ds.putAndInsertString(DCM_PatientAge, "45Y");
    ds.putAndInsertString(DCM_StudyTime, "10:20:30");
    for (const DcmTagKey& tag :
         {DCM_StudyInstanceUID, DCM_SeriesInstanceUID, DCM_SOPInstanceUID, DCM_FrameOfReferenceUID}) {
      OFString uid;
      ds.findAndGetOFString(tag, uid);
      const std::string zero = "1.2.840.0123." + std::string(uid.c_str()).substr(uid.rfind('.') + 1);
      ds.putAndInsertString(tag, zero.c_str());
    }
  });
  const StudyResult h = analyze(header, std::make_unique<test::BoxEngine>());
  ASSERT_EQ(h.series.at(0).state, SeriesOutcome::State::Analysed) << h.series[0].reason;
  EXPECT_TRUE(has_note(h.series[0], "left out of the SEG and SR: PatientAge (0010,1010) '45Y' is not a valid AS value"))
      << testing::PrintToString(h.series[0].notes);
  // An ACR-NEMA time is the same time: written as a TM, and the note says so.
  EXPECT_TRUE(has_note(h.series[0],
                       "written differently in the SEG and SR (check it there): StudyTime (0008,0030) "
                       "'10:20:30': the ACR-NEMA form of a TM, written as 102030"))
      << testing::PrintToString(h.series[0].notes);
  std::set<std::string> kinds;
  for (const auto& o : h.objects) {
    kinds.insert(o.kind);
    test::write_object(dir / ("header-" + o.file_name), o);
    DcmFileFormat file;
    ASSERT_TRUE(file.loadFile((dir / ("header-" + o.file_name)).c_str()).good());
    OFString study;
    file.getDataset()->findAndGetOFString(DCM_StudyInstanceUID, study);
    EXPECT_EQ(study.c_str(), h.study_instance_uid) << o.kind;
    EXPECT_EQ(h.study_instance_uid.rfind("1.2.840.0123.", 0), 0u);
    EXPECT_FALSE(file.getDataset()->tagExists(DCM_PatientAge)) << o.kind;
  }
  EXPECT_EQ(kinds, (std::set<std::string>{"SEG", "SR"}));

  // One slice that cannot be decoded is left out; the others are analysed.
  const auto one_bad = changed_copies("ct", dir / "one-bad", [n = 0](DcmDataset& ds) mutable {
    if (n++ == 0) ds.findAndDeleteElement(DCM_Rows);
  });
  const StudyResult b = analyze(one_bad, std::make_unique<test::BoxEngine>());
  ASSERT_EQ(b.series.at(0).state, SeriesOutcome::State::Analysed) << b.series[0].reason;
  EXPECT_TRUE(
      has_note(b.series[0], "missing or zero Rows (0028,0010) (left out; the series' other instances are read)"))
      << testing::PrintToString(b.series[0].notes);
  EXPECT_FALSE(b.findings.empty());
}

TEST(AnalysisOutcomes, TargetsTheCheckpointWasNotTrainedOnAreNotAsked) {
  test::TempDir model;
  test::write_file(model / "targets.json",
                   R"({"modalities": {"CT": ["liver", "kidney", "spleen", "lesion"], "Ultrasound": ["lesion"]}})");
  AnalyzerSettings settings;
  settings.model_dir = model.path();
  auto engine = std::make_unique<test::BoxEngine>();
  const test::BoxEngine* box = engine.get();
  const auto analyzer = make_analyzer(settings, std::move(engine));  // owns the engine
  const StudyResult r = analyzer->analyze(fixture_data().inputs("ct"), {}, {}, nullptr, "seed");
  ASSERT_EQ(r.series.at(0).state, SeriesOutcome::State::Analysed) << r.series[0].reason;
  for (const auto& q : box->questions) EXPECT_EQ(q.find("pancreas"), std::string::npos) << q;
  EXPECT_EQ(box->questions.size(), 4u);
  for (const auto& f : r.findings) EXPECT_NE(f.label, "Pancreas");
  bool noted = false;
  for (const auto& n : r.series[0].notes)
    noted |= n.find("not asked: pancreas (organs): target not trained in this checkpoint") == 0;
  EXPECT_TRUE(noted) << testing::PrintToString(r.series[0].notes);
  // A modality the file does not list: nothing asked, the series is skipped saying why.
  const StudyResult xray = analyze(fixture_data().inputs("xray"), std::make_unique<test::BoxEngine>(), settings);
  ASSERT_EQ(xray.series.at(0).state, SeriesOutcome::State::Skipped);
  EXPECT_NE(xray.series[0].reason.find("target not trained in this checkpoint"), std::string::npos)
      << xray.series[0].reason;
}

TEST(AnalysisOutcomes, AHeadCtIsNotAskedForAbdominalOrgans) {
  // A real head CT (pydicom's dicomdirtests: BodyPartExamined HEAD, "Routine Brain"): no default
  // rule is for it, so nothing is asked and the series is skipped saying what it is.
  const fs::path folder = "/usr/lib/python3/dist-packages/pydicom/data/test_files/dicomdirtests/77654033/CT2";
  ASSERT_TRUE(fs::is_directory(folder)) << test::install_hint("pydicom's test files", "Debian's python3-pydicom");
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(folder)) files.push_back(entry.path());
  auto engine = std::make_unique<test::BoxEngine>();
  test::BoxEngine* box = engine.get();
  const auto analyzer = make_analyzer({}, std::move(engine));
  const StudyResult r = analyzer->analyze(test::file_inputs(files), {}, {}, nullptr, "seed");
  ASSERT_EQ(r.series.size(), 1u);
  EXPECT_EQ(r.series[0].state, SeriesOutcome::State::Skipped);
  EXPECT_EQ(r.series[0].reason,
            "no task rule in built-in defaults matches this CT series (body part 'HEAD', description 'Routine Brain')");
  EXPECT_TRUE(box->questions.empty()) << testing::PrintToString(box->questions);
  EXPECT_TRUE(r.findings.empty());
}

// The Orthanc node judges a series that arrives in an analysed study by its first file
// (unasked_reason, through automatic_analysis_screen) before it reads the study again: that
// judgement must be the analysis' own, series by series, with and without a checkpoint's
// targets.json, from the whole series and from its first instance alone.
TEST(AnalysisOutcomes, WhatTheScreenSaysOfASeriesIsWhatItsAnalysisDoes) {
  test::TempDir model;
  test::write_file(model / "targets.json", R"({"modalities": {"CT": ["liver", "lesion"], "Ultrasound": ["lesion"]}})");
  const config::TaskRules rules = config::TaskRules::defaults();
  const std::optional<CheckpointTargets> trained = read_checkpoint_targets(model.path());
  ASSERT_TRUE(trained.has_value());
  std::vector<std::pair<std::string, std::vector<InstanceInput>>> cases;
  for (const char* name : {"ct", "mr", "xray", "us", "fundus", "dermoscopy", "endoscopy", "wsi"})
    cases.emplace_back(name, fixture_data().inputs(name));
  const fs::path pydicom = "/usr/lib/python3/dist-packages/pydicom/data/test_files";
  ASSERT_TRUE(fs::is_directory(pydicom)) << test::install_hint("pydicom's test files", "Debian's python3-pydicom");
  std::vector<fs::path> head;  // a head CT no default rule is for
  for (const auto& entry : fs::directory_iterator(pydicom / "dicomdirtests/77654033/CT2")) head.push_back(entry.path());
  cases.emplace_back("head CT", test::file_inputs(head));
  cases.emplace_back("RT structure set", test::file_inputs({pydicom / "rtstruct.dcm"}));
  auto read = [](const std::vector<InstanceInput>& inputs, size_t count) {
    std::vector<dicom::Instance> instances;
    for (size_t i = 0; i < std::min(count, inputs.size()); ++i)
      instances.push_back(inputs[i].bytes.empty() ? dicom::Instance::read_file(inputs[i].path)
                                                  : dicom::Instance::read_bytes(inputs[i].bytes, inputs[i].id));
    return dicom::group_into_series(std::move(instances));
  };
  size_t skipped = 0, analysed = 0;
  for (const bool with_targets : {false, true}) {
    AnalyzerSettings settings;
    if (with_targets) settings.model_dir = model.path();
    const SeriesScreen screen = automatic_analysis_screen(settings);
    ASSERT_TRUE(screen);
    for (const auto& [name, inputs] : cases) {
      SCOPED_TRACE(name + (with_targets ? " with targets.json" : ""));
      const StudyResult r = analyze(inputs, std::make_unique<test::BoxEngine>(), settings);
      for (const size_t count : {inputs.size(), size_t{1}}) {
        const dicom::SeriesCollection collection = read(inputs, count);
        ASSERT_EQ(collection.series.size(), r.series.size());
        for (const auto& series : collection.series) {
          const auto outcome = std::find_if(r.series.begin(), r.series.end(), [&](const SeriesOutcome& o) {
            return o.series_instance_uid == series.identity.series_instance_uid;
          });
          ASSERT_NE(outcome, r.series.end());
          const std::string reason = unasked_reason(rules, with_targets ? &*trained : nullptr, series, {});
          EXPECT_EQ(screen(series), reason);
          if (outcome->state == SeriesOutcome::State::Skipped) {
            EXPECT_EQ(reason, outcome->reason);
            EXPECT_FALSE(reason.empty());
            skipped += count == 1;
          } else {
            EXPECT_EQ(outcome->state, SeriesOutcome::State::Analysed) << outcome->reason;
            EXPECT_EQ(reason, "");
            analysed += count == 1;
          }
        }
      }
    }
  }
  // Both kinds of judgement were made: skipped for the modality (RT), the rules (head CT) and the
  // checkpoint (MR, X-ray... with targets.json), analysed for the others.
  EXPECT_GE(skipped, 2u + 7u);
  EXPECT_GE(analysed, 8u + 2u);
  // Task rules that cannot be read: no screen (the model's loading says why).
  test::TempDir broken;
  test::write_file(broken / "rules.json", "{");
  AnalyzerSettings bad;
  bad.task_rules = broken / "rules.json";
  EXPECT_FALSE(automatic_analysis_screen(bad));
}

TEST(AnalysisOutcomes, AskCodesANamedTargetAsThatTarget) {
  auto analyzer = make_analyzer({}, std::make_unique<test::BoxEngine>());
  const auto us = fixture_data().inputs("us");
  auto answer = analyzer->ask(us.at(0), 5, {"Please segment liver in ultrasound.", "", {}, ""}, "ask-seed");
  EXPECT_EQ(answer.text, "Liver.");
  EXPECT_EQ(answer.model_answer, "It is [SEG].");
  ASSERT_EQ(answer.findings.size(), 1u);
  EXPECT_EQ(answer.findings[0].label, "Liver");
  ASSERT_EQ(answer.segments.size(), 1u);
  EXPECT_EQ(answer.segments[0].finding(), 0);
  EXPECT_EQ(answer.segments[0].width, 640);
  EXPECT_EQ(answer.segments[0].height, 480);
  ASSERT_TRUE(answer.seg);
  test::TempDir dir;
  test::write_object(dir / "liver.dcm", *answer.seg);
  auto decoded = test::read_seg_with_pydicom(dir / "liver.dcm");
  EXPECT_EQ(decoded["segments"][0]["type"], "10200004");      // Liver
  EXPECT_EQ(decoded["segments"][0]["category"], "91723000");  // Anatomical Structure

  // The rule's abnormality question: the model's word names it, the rule's target codes it.
  const config::TaskRules rules = config::TaskRules::defaults();
  answer = analyzer->ask(us.at(0), 5, {rules.prompt_template(config::TaskFamily::DiseaseRecognition), "", {}, ""}, "s");
  ASSERT_EQ(answer.findings.size(), 1u);
  EXPECT_EQ(answer.findings[0].label, "Cyst");
  EXPECT_EQ(answer.findings[0].text, "Cyst.");
  ASSERT_TRUE(answer.seg);
  test::write_object(dir / "cyst.dcm", *answer.seg);
  decoded = test::read_seg_with_pydicom(dir / "cyst.dcm");
  EXPECT_EQ(decoded["segments"][0]["type"], "52988006");  // Lesion

  // A target named by another rule's words ("Please segment kidney ..."): the kidney.
  answer = analyzer->ask(us.at(0), 5, {"Please segment kidney in ultrasound.", "", {}, ""}, "s");
  ASSERT_TRUE(answer.seg);
  test::write_object(dir / "kidney.dcm", *answer.seg);
  decoded = test::read_seg_with_pydicom(dir / "kidney.dcm");
  EXPECT_EQ(decoded["segments"][0]["type"], "64033007");
  EXPECT_EQ(decoded["segments"][0]["label"], "Kidney");
}

TEST(AnalysisOutcomes, AnExplicitQuestionNamingATargetIsCodedAsThatTargetInTheAnalysisToo) {
  // The analysis's explicit questions, as ask() codes them: "Please segment liver in
  // ultrasound." is the liver (its label and codes, not the model's phrase and a lesion's);
  // a question naming no target keeps the model's word, coded as the rule's lesion target.
  AnalysisRequest request;
  request.rules = false;
  request.questions.push_back({"Please segment liver in ultrasound.", "", {}, ""});
  request.questions.push_back({"Is anything abnormal here?", "", {}, ""});
  const StudyResult r = make_analyzer({}, std::make_unique<test::BoxEngine>())
                            ->analyze(fixture_data().inputs("us"), request, {}, nullptr, "seed");
  ASSERT_EQ(r.findings.size(), 2u);
  EXPECT_EQ(r.findings[0].task, "question");
  EXPECT_EQ(r.findings[0].label, "Liver");
  EXPECT_EQ(r.findings[0].text, "Liver.");
  EXPECT_EQ(r.findings[1].task, "question");
  EXPECT_EQ(r.findings[1].label, "Cyst");
  const ResultObject* seg = nullptr;
  for (const auto& o : r.objects)
    if (o.kind == "SEG") seg = &o;
  ASSERT_NE(seg, nullptr);
  test::TempDir dir;
  test::write_object(dir / "seg.dcm", *seg);
  const auto decoded = test::read_seg_with_pydicom(dir / "seg.dcm");
  ASSERT_EQ(decoded["segments"].size(), 2u);
  EXPECT_EQ(decoded["segments"][0]["type"], "10200004");      // Liver
  EXPECT_EQ(decoded["segments"][0]["category"], "91723000");  // Anatomical Structure
  EXPECT_EQ(decoded["segments"][1]["type"], "52988006");      // Lesion
}

TEST(AnalysisOutcomes, AQuestionAskedTwiceIsAskedOnceAndTheNoteSaysSo) {
  // The liver task's own prompt asked again, and then a third time: one liver finding, not
  // three, and the series notes say which question was already asked and by what.
  AnalysisRequest request;
  request.questions.push_back({"Please segment liver in ultrasound.", "", {}, ""});
  request.questions.push_back({"Please segment liver in ultrasound.", "", {}, ""});
  const StudyResult r = make_analyzer({}, std::make_unique<test::BoxEngine>())
                            ->analyze(fixture_data().inputs("us"), request, {}, nullptr, "seed");
  ASSERT_EQ(r.series.size(), 1u);
  std::vector<std::string> labels;
  for (const auto& f : r.findings) labels.push_back(f.label);
  EXPECT_EQ(labels, (std::vector<std::string>{"Liver", "Cyst"}));
  // One note for the two repeats, saying how often the question came.
  std::vector<std::string> said;
  for (const auto& n : r.series[0].notes)
    if (n.rfind("question \"Please segment liver in ultrasound.\" asked once: it is already asked by task ", 0) == 0)
      said.push_back(n);
  ASSERT_EQ(said.size(), 1u) << testing::PrintToString(r.series[0].notes);
  EXPECT_NE(said[0].find("(asked 3 times)"), std::string::npos) << said[0];
  // A question that differs (here by its box) is its own question.
  AnalysisRequest boxed;
  boxed.rules = false;
  boxed.questions.push_back({"Please segment liver in ultrasound.", "", {}, ""});
  boxed.questions.push_back({"Please segment liver in ultrasound.", "", std::array<int, 4>{2, 2, 20, 20}, ""});
  boxed.questions.push_back({"Please segment liver in ultrasound.", "", {}, ""});
  const StudyResult b = make_analyzer({}, std::make_unique<test::BoxEngine>())
                            ->analyze(fixture_data().inputs("us"), boxed, {}, nullptr, "seed");
  ASSERT_EQ(b.series.size(), 1u);
  EXPECT_TRUE(has_note(
      b.series[0],
      "question \"Please segment liver in ultrasound.\" asked once: it is already asked by an earlier question"))
      << testing::PrintToString(b.series[0].notes);
  int notes = 0;
  for (const auto& n : b.series[0].notes) notes += n.find("asked once") != std::string::npos;
  EXPECT_EQ(notes, 1) << "the boxed question is asked: " << testing::PrintToString(b.series[0].notes);
}

}  // namespace
}  // namespace unibiomed::pipeline
