// End to end with a real model of the real architecture: the tiny random checkpoint
// (`model make-random --config tiny`) analyses the sample studies of every modality and
// pydicom's CT and MR files through Analyzer::create; the results validate. Its answers are
// random tokens, so what is checked is the plumbing, the rules chosen per series and the
// validity of every object written. To switch to a trained demo checkpoint, change
// test_model_dir() below.
// Also the `unibiomed analyze` command: exit codes, output files, --help.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dctk.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <regex>
#include <set>

#include "inference/random_checkpoint.h"
#include "tests/pipeline/pipeline_test_support.h"
#include "tests/support/test_support.h"

namespace unibiomed::pipeline {
namespace {

namespace fs = std::filesystem;
using test::fixture_data;
const fs::path kPydicomFiles = "/usr/lib/python3/dist-packages/pydicom/data/test_files";

fs::path test_model_dir() { return fixture_data().tiny_model; }

AnalyzerSettings tiny_settings() {
  AnalyzerSettings s;
  s.model_dir = test_model_dir();
  s.max_slices_per_series = 2;  // the model's time is what a test pays for
  s.max_new_tokens = 4;
  s.batch_size = 2;
  return s;
}

TEST(AnalysisWithTinyModel, EveryModalityOfTheSamplesIsAnalysedAndTheResultsValidate) {
  const auto& data = fixture_data();
  auto analyzer = Analyzer::create(tiny_settings());
  EXPECT_TRUE(std::regex_match(analyzer->weights_hash(), std::regex("[0-9a-f]{64}"))) << analyzer->weights_hash();
  const std::map<std::string, std::string> expected_rule = {
      {"ct", "ct-abdomen"}, {"mr", "mr-brain"},         {"xray", "xray-chest"}, {"us", "us-liver"},
      {"fundus", "fundus"}, {"dermoscopy", "dermoscopy"}, {"endoscopy", "endoscopy"}, {"wsi", "pathology"}};
  test::TempDir dir;
  for (const auto& [name, rule] : expected_rule) {
    SCOPED_TRACE(name);
    const StudyResult r = analyzer->analyze(data.inputs(name), {}, {}, nullptr, "tiny-" + name);
    ASSERT_EQ(r.series.size(), 1u);
    const SeriesOutcome& s = r.series[0];
    EXPECT_EQ(s.state, SeriesOutcome::State::Analysed) << s.reason;
    EXPECT_EQ(s.rule, rule);
    EXPECT_GE(s.views, 1);
    EXPECT_LE(s.frames_analysed, 2);
    EXPECT_EQ(r.weights_hash, analyzer->weights_hash());
    // The disease-recognition answers are report-level text when no mask came back: an SR.
    bool has_sr = false;
    for (const auto& o : r.objects) {
      const fs::path file = dir / (name + "-" + o.file_name);
      test::write_object(file, o);
      std::string out;
      EXPECT_TRUE(test::dciodvfy_errors(file, &out).empty()) << o.kind << " of " << name << ":\n" << out;
      has_sr |= o.kind == "SR";
    }
    EXPECT_TRUE(has_sr);
    const auto summary = nlohmann::json::parse(r.summary_json);
    EXPECT_EQ(summary["series"][0]["rule"], rule);
    // Video mode runs InternViT inside the video answer (on its key frames): its time is the
    // language model's there.
    const auto& timings = summary["timings_seconds"];
    EXPECT_GT(timings["model_vision"].get<double>() + timings["model_language"].get<double>(), 0);
    // Multi-frame series (the CT stack, the ultrasound cine, the endoscopy clip) are read in
    // video mode by default, the rest slice by slice.
    const bool multi_frame = name == "ct" || name == "us" || name == "endoscopy" || name == "mr";
    EXPECT_EQ(summary["series"][0]["mode"], s.frames_analysed > 1 && multi_frame ? "video" : "slices");
  }
}

// Whatever a model answers becomes valid DICOM: random checkpoints of other seeds answer with
// control characters, backslashes and long runs of odd tokens, which the SEG's segment labels
// (LO: no control character, no backslash, 64 bytes) and the SR's texts (UT) must not carry.
// Before, such an answer failed the series ("label contains a control character").
TEST(AnalysisWithTinyModel, AnyAnswerOfTheModelBecomesValidObjects) {
  const auto& data = fixture_data();
  test::TempDir dir;
  int answers_with_control = 0;
  for (const uint64_t seed : {2u, 3u}) {
    inference::RandomCheckpointOptions model;
    model.kind = "tiny";
    model.seed = seed;
    const fs::path model_dir = dir / ("tiny-" + std::to_string(seed));
    inference::write_random_checkpoint(model_dir, model);
    AnalyzerSettings settings = tiny_settings();
    settings.model_dir = model_dir;
    settings.max_new_tokens = 64;
    auto analyzer = Analyzer::create(settings);
    for (const std::string name : {"ct", "endoscopy", "xray"}) {
      SCOPED_TRACE("seed " + std::to_string(seed) + ", " + name);
      const StudyResult r = analyzer->analyze(data.inputs(name), {}, {}, nullptr, "any-" + name);
      ASSERT_EQ(r.series.size(), 1u);
      EXPECT_EQ(r.series[0].state, SeriesOutcome::State::Analysed) << r.series[0].reason;
      std::vector<std::string> texts = r.answers;
      for (const auto& f : r.findings) texts.push_back(f.model_answer);
      for (const auto& t : texts)
        answers_with_control += std::any_of(t.begin(), t.end(), [](char c) {
          return (static_cast<unsigned char>(c) < 0x20 && c != '\n') || c == '\\';
        });
      for (const auto& o : r.objects) {
        const fs::path file = dir / (std::to_string(seed) + "-" + name + "-" + o.file_name);
        test::write_object(file, o);
        std::string out;
        EXPECT_TRUE(test::dciodvfy_errors(file, &out).empty()) << o.kind << ":\n" << out;
      }
    }
  }
  // The case this test is about happened: some answers held what DICOM text may not.
  std::cout << "[ answers  ] " << answers_with_control << " answers with control characters or backslashes\n";
  EXPECT_GT(answers_with_control, 0);
}

// Answers whose [SEG] sentence holds a backslash, or whose phrase is nothing but a control
// character (answer fixtures of the tiny model, as `model make-random --answer` writes them):
// the finding is delivered, its SEG segment description keeps the backslash (ST allows it), and
// the finding's label in the summary is the SEG's segment label, without control characters.
// Before, the backslash failed the series and the ESC phrase became the SR's and summary's label.
TEST(AnalysisWithTinyModel, AnswersWithBackslashesOrControlPhrasesAreDeliveredWithOneLabel) {
  const auto& data = fixture_data();
  test::TempDir dir;
  const std::vector<std::string> fixed_answers{"Tum\\or[SEG]", "Tumor[SEG]\x1b"};
  for (size_t k = 0; k < fixed_answers.size(); ++k) {
    SCOPED_TRACE("answer " + testing::PrintToString(fixed_answers[k]));
    inference::RandomCheckpointOptions model;
    model.kind = "tiny";
    model.seed = 15 + k;
    model.fixed_answer = fixed_answers[k];
    const fs::path model_dir = dir / ("fixed-" + std::to_string(k));
    inference::write_random_checkpoint(model_dir, model);
    AnalyzerSettings settings = tiny_settings();
    settings.model_dir = model_dir;
    settings.max_new_tokens = 16;
    AnalysisRequest request;
    request.rules = false;
    request.questions.push_back({"What is it?", "", {}, ""});
    const StudyResult r = Analyzer::create(settings)->analyze(data.inputs("endoscopy"), request, {}, nullptr, "fixed");
    ASSERT_EQ(r.series.size(), 1u);
    ASSERT_EQ(r.series[0].state, SeriesOutcome::State::Analysed) << r.series[0].reason;
    ASSERT_FALSE(r.findings.empty()) << testing::PrintToString(r.series[0].notes);
    const ResultObject* seg = nullptr;
    for (const auto& o : r.objects) {
      const fs::path file = dir / (std::to_string(k) + "-" + o.file_name);
      test::write_object(file, o);
      std::string out;
      EXPECT_TRUE(test::dciodvfy_errors(file, &out).empty()) << o.kind << ":\n" << out;
      if (o.kind == "SEG") seg = &o;
    }
    ASSERT_NE(seg, nullptr);
    test::write_object(dir / "seg.dcm", *seg);
    const auto decoded = test::read_seg_with_pydicom(dir / "seg.dcm");
    std::set<std::string> segment_labels;
    for (const auto& s : decoded["segments"]) segment_labels.insert(s["label"].get<std::string>());
    const auto summary = nlohmann::json::parse(r.summary_json);
    for (const auto& f : summary["findings"]) {
      const std::string label = f["label"].get<std::string>();
      EXPECT_TRUE(segment_labels.count(label)) << label << " is not a segment label of the SEG";
      EXPECT_TRUE(std::none_of(label.begin(), label.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; }))
          << testing::PrintToString(label);
    }
    if (k == 0) {
      DcmFileFormat file;
      ASSERT_TRUE(file.loadFile((dir / "seg.dcm").c_str()).good());
      DcmItem* first = nullptr;
      ASSERT_TRUE(file.getDataset()->findAndGetSequenceItem(DCM_SegmentSequence, first, 0).good());
      OFString description;
      first->findAndGetOFStringArray(DCM_SegmentDescription, description);
      EXPECT_NE(std::string(description.c_str()).find("Tum\\or"), std::string::npos) << description;
    }
  }
}

// The real model on an ultrasound series of a cine and a still (a checkpoint whose answer is
// fixed, so that both give findings): the cine is one video, the still one image; each has its
// SEG naming its mode and part, valid for dciodvfy; each finding names its SEG, and only the
// cine's have areas per frame, numbered among the series' analysed frames like key_frames.
TEST(AnalysisWithTinyModel, ACineAndAStillOfOneSeriesAreAVideoAndAnImage) {
  test::TempDir dir;
  inference::RandomCheckpointOptions model;
  model.kind = "tiny";
  model.seed = 7;
  model.fixed_answer = "Sure, [SEG].";
  inference::write_random_checkpoint(dir / "model", model);
  AnalyzerSettings settings = tiny_settings();
  settings.model_dir = dir / "model";
  settings.max_slices_per_series = 17;  // every frame: the cine stays a sequence
  settings.max_new_tokens = 16;
  std::vector<InstanceInput> inputs = fixture_data().inputs("us");
  inputs.push_back(test::sample_us_copy(dir / "input", 2, true));
  const StudyResult r = Analyzer::create(settings)->analyze(inputs, {}, {}, nullptr, "mixed");
  ASSERT_EQ(r.series.size(), 1u);
  const SeriesOutcome& s = r.series[0];
  ASSERT_EQ(s.state, SeriesOutcome::State::Analysed) << s.reason;
  EXPECT_EQ(s.mode, "video");
  EXPECT_EQ(s.frames_analysed, 17);
  EXPECT_EQ(s.key_frames, (std::vector<int>{0, 4, 8, 11, 15}));
  EXPECT_EQ(s.frames_one_by_one, 1) << "the still";
  // The SR's algorithm parameters say how the series was read, the still included.
  const auto sr =
      std::find_if(r.objects.begin(), r.objects.end(), [](const ResultObject& o) { return o.kind == "SR"; });
  ASSERT_NE(sr, r.objects.end());
  const std::string sr_bytes(sr->bytes.begin(), sr->bytes.end());
  EXPECT_NE(sr_bytes.find("mode per series: " + s.series_instance_uid + " video (1 frame(s) one by one)"),
            std::string::npos);
  std::map<std::string, std::string> description_of_seg;
  std::set<std::string> series_numbers;  // two SEGs and the SR: each its own
  for (const auto& o : r.objects) {
    const fs::path file = dir / o.file_name;
    test::write_object(file, o);
    std::string out;
    EXPECT_TRUE(test::dciodvfy_errors(file, &out).empty()) << o.kind << ":\n" << out;
    DcmFileFormat seg;
    ASSERT_TRUE(seg.loadFile(file.c_str()).good());
    OFString number;
    seg.getDataset()->findAndGetOFString(DCM_SeriesNumber, number);
    series_numbers.insert(number.c_str());
    if (o.kind != "SEG") continue;
    OFString description, parameters;
    seg.getDataset()->findAndGetOFString(DCM_SeriesDescription, description);
    DcmItem* segment = nullptr;
    ASSERT_TRUE(seg.getDataset()->findAndGetSequenceItem(DCM_SegmentSequence, segment, 0).good());
    DcmItem* algorithm = nullptr;
    ASSERT_TRUE(segment->findAndGetSequenceItem(DCM_SegmentationAlgorithmIdentificationSequence, algorithm, 0).good());
    algorithm->findAndGetOFStringArray(DCM_AlgorithmParameters, parameters);
    const std::string mode =
        std::string(parameters.c_str()).find("mode video") != std::string::npos ? "video" : "slices";
    description_of_seg[o.sop_instance_uid] = mode + ": " + description.c_str();
  }
  EXPECT_EQ(series_numbers, (std::set<std::string>{"9001", "9002", "9003"}));
  std::set<std::string> seen;
  for (const auto& [uid, text] : description_of_seg) seen.insert(text);
  EXPECT_EQ(seen, (std::set<std::string>{"video: UniBiomed segmentation (16 frames of instance 1)",
                                         "slices: UniBiomed segmentation (instance 2)"}));
  ASSERT_FALSE(r.findings.empty());
  size_t on_the_cine = 0;
  for (const auto& f : r.findings) {
    ASSERT_TRUE(description_of_seg.count(f.seg_sop_instance_uid)) << f.label;
    const bool video = description_of_seg[f.seg_sop_instance_uid].rfind("video", 0) == 0;
    on_the_cine += video ? 1 : 0;
    EXPECT_EQ(f.frame_areas.empty(), !video) << f.label;
    for (const auto& [frame, area] : f.frame_areas) EXPECT_TRUE(frame >= 0 && frame < 16) << frame;
  }
  EXPECT_GT(on_the_cine, 0u);
  EXPECT_LT(on_the_cine, r.findings.size());
}

TEST(AnalysisWithTinyModel, PydicomFilesAreAnalysedOrRefusedWithAReason) {
  ASSERT_TRUE(fs::exists(kPydicomFiles / "CT_small.dcm")) << test::install_hint("pydicom's test files", "Debian's python3-pydicom");
  auto analyzer = Analyzer::create(tiny_settings());
  struct Case {
    const char* file;
    SeriesOutcome::State state;
    const char* rule_or_reason;
  };
  const std::vector<Case> cases = {
      {"CT_small.dcm", SeriesOutcome::State::Analysed, "ct-abdomen"},
      {"MR_small.dcm", SeriesOutcome::State::Analysed, "mr-abdomen"},
      {"MR_small_jpeg_ls_lossless.dcm", SeriesOutcome::State::Analysed, "mr-abdomen"},  // compressed
      {"rtplan.dcm", SeriesOutcome::State::Skipped, "radiotherapy object"},              // not an image
      {"test-SR.dcm", SeriesOutcome::State::Skipped, "structured report"},
      {"SC_rgb_rle_2frame.dcm", SeriesOutcome::State::Skipped, "do not say which modality"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.file);
    const auto r = analyzer->analyze(test::file_inputs({kPydicomFiles / c.file}), {}, {}, nullptr, c.file);
    ASSERT_EQ(r.series.size(), 1u);
    EXPECT_EQ(r.series[0].state, c.state) << r.series[0].reason;
    if (c.state == SeriesOutcome::State::Analysed)
      EXPECT_EQ(r.series[0].rule, c.rule_or_reason);
    else
      EXPECT_NE(r.series[0].reason.find(c.rule_or_reason), std::string::npos) << r.series[0].reason;
  }
  // Nothing readable at all is an error of the whole call.
  InstanceInput junk;
  junk.id = "junk";
  junk.bytes = {1, 2, 3};
  EXPECT_THROW(analyzer->analyze({junk}, {}, {}, nullptr, ""), PipelineError);
}

TEST(AnalysisWithTinyModel, StudiesInOtherCharacterSetsAreAnalysedAndReportedInUtf8) {
  // pydicom's character-set examples (secondary captures, made MR here so that a rule takes
  // them): Japanese in ISO 2022 (which DCMTK cannot read with iconv), Chinese GB18030, and
  // Latin-1 descriptions. Before, the first failed the study and the last the summary.json.
  const fs::path charsets = kPydicomFiles.parent_path() / "charset_files";
  ASSERT_TRUE(fs::exists(charsets / "chrH32.dcm"))
      << test::install_hint("pydicom's charset files", "Debian's python3-pydicom");
  struct Case {
    const char* file;
    const char* description;  // series description written in the file's own set, or ""
    std::string name;         // PatientName in UTF-8
    std::string description_utf8;
  };
  const std::vector<Case> cases = {
      {"chrH32.dcm", "",
       "\xEF\xBE\x94\xEF\xBE\x8F\xEF\xBE\x80\xEF\xBE\x9E^\xEF\xBE\x80\xEF\xBE\x9B\xEF\xBD\xB3="
       "\xE5\xB1\xB1\xE7\x94\xB0^\xE5\xA4\xAA\xE9\x83\x8E=\xE3\x82\x84\xE3\x81\xBE\xE3\x81\xA0^"
       "\xE3\x81\x9F\xE3\x82\x8D\xE3\x81\x86",
       ""},
      {"chrX2.dcm", "", "Wang^XiaoDong=\xE7\x8E\x8B^\xE5\xB0\x8F\xE4\xB8\x9C=", ""},
      {"chrFren.dcm", "Cr\xE2ne \xE9t\xE9", "Buc^J\xC3\xA9r\xC3\xB4me", "Cr\xC3\xA2ne \xC3\xA9t\xC3\xA9"},
  };
  auto analyzer = Analyzer::create(tiny_settings());
  test::TempDir dir;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.file);
    const fs::path file = dir / c.file;
    {
      DcmFileFormat source;
      ASSERT_TRUE(source.loadFile((charsets / c.file).c_str()).good());
      DcmDataset& ds = *source.getDataset();
      ds.putAndInsertString(DCM_Modality, "MR");
      if (*c.description) ds.putAndInsertString(DCM_SeriesDescription, c.description);
      ASSERT_TRUE(source.saveFile(file.c_str(), EXS_LittleEndianExplicit).good());
    }
    const StudyResult r = analyzer->analyze(test::file_inputs({file}), {}, {}, nullptr, c.file);
    ASSERT_EQ(r.series.size(), 1u);
    EXPECT_EQ(r.series[0].state, SeriesOutcome::State::Analysed) << r.series[0].reason;
    const auto summary = nlohmann::json::parse(r.summary_json);
    EXPECT_EQ(summary["series"][0]["description"], c.description_utf8);
    bool has_sr = false;
    for (const auto& o : r.objects) {
      const fs::path written = dir / (std::string(c.file) + "-" + o.file_name);
      test::write_object(written, o);
      std::string out;
      EXPECT_TRUE(test::dciodvfy_errors(written, &out).empty()) << o.kind << ":\n" << out;
      DcmFileFormat result;
      ASSERT_TRUE(result.loadFile(written.c_str()).good());
      OFString value;
      result.getDataset()->findAndGetOFStringArray(DCM_SpecificCharacterSet, value);
      EXPECT_EQ(std::string(value.c_str()), "ISO_IR 192") << o.kind;
      result.getDataset()->findAndGetOFStringArray(DCM_PatientName, value);
      EXPECT_EQ(std::string(value.c_str()), c.name) << o.kind;
      has_sr |= o.kind == "SR";
    }
    EXPECT_TRUE(has_sr);
  }
}

// --- the command line -------------------------------------------------------------------------

TEST(AnalyzeCommand, HelpUsageAndInputErrorsHaveTheirExitCodes) {
  const std::string cli = test::cli_path().string();
  auto help = test::run_command({cli, "analyze", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  for (const char* option : {"--model", "--device", "--task", "--ask", "--box", "--task-rules", "--max-slices", "-o"})
    EXPECT_NE(help.output.find(option), std::string::npos) << option;
  EXPECT_EQ(test::run_command({cli, "analyze"}).exit_code, 2);
  test::TempDir dir;
  EXPECT_EQ(test::run_command({cli, "analyze", (dir / "x").string()}).exit_code, 2);  // no -o
  EXPECT_EQ(test::run_command({cli, "analyze", "--box", "1,2,3", "--model", "m", "-o", (dir / "o").string(), "p"}).exit_code, 2);
  // An empty question asks nothing: said before the model loads (no model "m" is needed to know).
  auto empty_question =
      test::run_command({cli, "analyze", "--ask", "", "--model", "m", "-o", (dir / "o").string(), "p"});
  EXPECT_EQ(empty_question.exit_code, 2) << empty_question.output;
  EXPECT_NE(empty_question.output.find("an explicit question without text"), std::string::npos)
      << empty_question.output;
  test::write_file(dir / "rules.json", "{\"version\": 1,");
  auto bad_rules = test::run_command({cli, "analyze", "p", "-o", (dir / "o").string(), "--model", "m", "--task-rules",
                                      (dir / "rules.json").string()});
  EXPECT_EQ(bad_rules.exit_code, 3) << bad_rules.output;
  EXPECT_NE(bad_rules.output.find("rules.json"), std::string::npos) << bad_rules.output;
  auto missing = test::run_command({cli, "analyze", (dir / "absent").string(), "-o", (dir / "o").string(), "--model", "m"});
  EXPECT_EQ(missing.exit_code, 3) << missing.output;
  fs::create_directories(dir / "in");
  test::write_file(dir / "in" / "notes.txt", "not DICOM");
  auto nothing = test::run_command({cli, "analyze", (dir / "in").string(), "-o", (dir / "o").string(), "--model", "m"});
  EXPECT_EQ(nothing.exit_code, 3) << nothing.output;
  // An instance without Study Instance UID: its results would belong to no study.
  fs::create_directories(dir / "no-study");
  {
    DcmFileFormat file;
    ASSERT_TRUE(file.loadFile(fixture_data().inputs("fundus").front().path.c_str()).good());
    file.getDataset()->findAndDeleteElement(DCM_StudyInstanceUID);
    ASSERT_TRUE(file.saveFile((dir / "no-study" / "eye.dcm").c_str(), EXS_LittleEndianExplicit).good());
  }
  auto no_study =
      test::run_command({cli, "analyze", (dir / "no-study").string(), "-o", (dir / "o").string(), "--model", "m"});
  EXPECT_EQ(no_study.exit_code, 3) << no_study.output;
  EXPECT_NE(no_study.output.find("eye.dcm: no Study Instance UID (0020,000D)"), std::string::npos) << no_study.output;
  // pydicom's DICOMDIR-bigEnd: a media storage directory under another name, said to be one.
  const fs::path dicomdir = "/usr/lib/python3/dist-packages/pydicom/data/test_files/dicomdirtests/DICOMDIR-bigEnd";
  ASSERT_TRUE(fs::exists(dicomdir)) << test::install_hint("pydicom's test files", "Debian's python3-pydicom");
  auto directory = test::run_command({cli, "analyze", dicomdir.string(), "-o", (dir / "o").string(), "--model", "m"});
  EXPECT_EQ(directory.exit_code, 3) << directory.output;
  EXPECT_NE(directory.output.find("DICOMDIR-bigEnd: a DICOMDIR (media storage directory), not an instance"),
            std::string::npos)
      << directory.output;
  auto no_model = test::run_command({cli, "analyze", fixture_data().sample("fundus").folder.string(), "-o",
                                     (dir / "o").string(), "--model", (dir / "no-model").string()});
  EXPECT_EQ(no_model.exit_code, 4) << no_model.output;
  EXPECT_NE(no_model.output.find("no-model"), std::string::npos) << no_model.output;
  auto unknown_task = test::run_command({cli, "analyze", fixture_data().sample("fundus").folder.string(), "-o",
                                         (dir / "o").string(), "--model", test_model_dir().string(), "--task", "organz"});
  EXPECT_EQ(unknown_task.exit_code, 2) << unknown_task.output;
  EXPECT_NE(unknown_task.output.find("unknown task 'organz'"), std::string::npos) << unknown_task.output;
}

// The SOP Instance UID of a DICOM file, and those its Predecessor Documents Sequence names.
std::string sop_instance_uid(const fs::path& file) {
  DcmFileFormat f;
  OFString uid;
  if (f.loadFile(file.c_str()).good()) f.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, uid);
  return uid.c_str();
}

std::vector<std::string> predecessor_uids(const fs::path& file) {
  DcmFileFormat f;
  std::vector<std::string> uids;
  if (f.loadFile(file.c_str()).bad()) return {"(unreadable " + file.string() + ")"};
  DcmItem *study = nullptr, *series = nullptr, *sop = nullptr;
  for (unsigned long i = 0; f.getDataset()->findAndGetSequenceItem(DCM_PredecessorDocumentsSequence, study, i).good();
       ++i)
    for (unsigned long j = 0; study->findAndGetSequenceItem(DCM_ReferencedSeriesSequence, series, j).good(); ++j)
      for (unsigned long k = 0; series->findAndGetSequenceItem(DCM_ReferencedSOPSequence, sop, k).good(); ++k) {
        OFString uid;
        sop->findAndGetOFString(DCM_ReferencedSOPInstanceUID, uid);
        uids.push_back(uid.c_str());
      }
  return uids;
}

// `unibiomed analyze` of the fundus sample into `out` with the tiny model, quietly.
std::vector<std::string> analyze_fundus_into(const fs::path& out) {
  return {test::cli_path().string(),
          "analyze",
          fixture_data().sample("fundus").folder.string(),
          "-o",
          out.string(),
          "--model",
          test_model_dir().string(),
          "--max-new-tokens",
          "4",
          "--quiet"};
}

// A second analysis into the same folder first removes the files the first one listed in its
// summary.json (result objects, previews), and nothing else: a user's file stays, and a listed
// name that leads out of the folder is not followed. Its report names the first one's as its
// predecessor.
TEST(AnalyzeCommand, ASecondAnalysisIntoTheSameFolderLeavesNoFileOfTheFirst) {
  test::TempDir dir;
  const fs::path out = dir / "out";
  const std::vector<std::string> analyze = analyze_fundus_into(out);
  auto first = test::run_command(analyze);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  ASSERT_TRUE(fs::exists(out / "sr.dcm"));
  EXPECT_EQ(first.output.find("replaced the earlier analysis"), std::string::npos) << first.output;
  EXPECT_TRUE(predecessor_uids(out / "sr.dcm").empty());
  const std::string first_sr = sop_instance_uid(out / "sr.dcm");
  // What the first analysis could have left: a SEG of a series the second finds nothing in, a
  // preview; and what is not the node's: a user's note, a file beside the folder.
  auto summary = nlohmann::json::parse(test::read_file(out / "summary.json"));
  summary["objects"].push_back({{"kind", "SEG"}, {"file", "seg-series-99.dcm"}});
  summary["objects"].push_back({{"kind", "SEG"}, {"file", "../beside.dcm"}});
  summary["findings"].push_back({{"label", "Old"}, {"preview", "preview-series-99-01-old.png"}});
  test::write_file(out / "summary.json", summary.dump());
  test::write_file(out / "seg-series-99.dcm", "old");
  fs::create_directories(out / "previews");
  test::write_file(out / "previews" / "preview-series-99-01-old.png", "old");
  test::write_file(out / "notes.txt", "the radiologist's");
  test::write_file(dir / "beside.dcm", "not ours");

  std::vector<std::string> again = analyze;
  again.push_back("--no-previews");
  auto second = test::run_command(again);
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("replaced the earlier analysis in " + out.string()), std::string::npos) << second.output;
  EXPECT_FALSE(fs::exists(out / "seg-series-99.dcm"));
  EXPECT_FALSE(fs::exists(out / "previews")) << "every preview of the first analysis was listed";
  EXPECT_TRUE(fs::exists(out / "notes.txt"));
  EXPECT_TRUE(fs::exists(dir / "beside.dcm"));
  EXPECT_TRUE(fs::exists(out / "sr.dcm"));
  const auto now = nlohmann::json::parse(test::read_file(out / "summary.json"));
  for (const auto& o : now["objects"]) EXPECT_TRUE(fs::exists(out / o["file"].get<std::string>())) << o.dump();
  // The new report revises the first, as the plugin's reports do.
  const std::string second_sr = sop_instance_uid(out / "sr.dcm");
  EXPECT_EQ(predecessor_uids(out / "sr.dcm"), std::vector<std::string>{first_sr});
  EXPECT_NE(second.output.find("the new report revises the earlier one (SR " + first_sr + ")"), std::string::npos)
      << second.output;

  // The same seed twice gives the same report again, which revises nothing; an analysis of
  // questions only revises nothing either.
  std::vector<std::string> seeded = analyze;
  seeded.insert(seeded.end(), {"--seed", "same"});
  ASSERT_EQ(test::run_command(seeded).exit_code, 0);
  const std::string seeded_sr = sop_instance_uid(out / "sr.dcm");
  EXPECT_EQ(predecessor_uids(out / "sr.dcm"), std::vector<std::string>{second_sr});
  auto repeated = test::run_command(seeded);
  ASSERT_EQ(repeated.exit_code, 0) << repeated.output;
  EXPECT_EQ(sop_instance_uid(out / "sr.dcm"), seeded_sr);
  EXPECT_TRUE(predecessor_uids(out / "sr.dcm").empty());
  EXPECT_EQ(repeated.output.find("revises"), std::string::npos) << repeated.output;
  std::vector<std::string> questions = analyze;
  questions.insert(questions.end(), {"--no-rules", "--ask", "Is there a lesion?"});
  ASSERT_EQ(test::run_command(questions).exit_code, 0);
  ASSERT_TRUE(fs::exists(out / "sr.dcm")) << "the answer is the report's text";
  EXPECT_TRUE(predecessor_uids(out / "sr.dcm").empty());
}

// --reject-previous: the second analysis into a folder also writes an IOCM rejection note of the
// first one's SEGs and SR (never of an earlier note), valid for dciodvfy; without the flag the
// earlier note goes with the rest of that analysis.
TEST(AnalyzeCommand, RejectPreviousWritesARejectionNoteOfTheEarlierAnalysis) {
  test::TempDir dir;
  const fs::path out = dir / "out";
  std::vector<std::string> analyze = analyze_fundus_into(out);
  analyze.push_back("--no-previews");
  std::vector<std::string> rejecting = analyze;
  rejecting.push_back("--reject-previous");
  // Nothing earlier: no note.
  auto first = test::run_command(rejecting);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_FALSE(fs::exists(out / "rejection-note.dcm"));
  auto uids_of = [&](const std::set<std::string>& kinds) {
    std::set<std::string> uids;
    const auto summary = nlohmann::json::parse(test::read_file(out / "summary.json"));
    for (const auto& o : summary["objects"])
      if (kinds.count(o["kind"].get<std::string>())) uids.insert(o["sop_instance_uid"].get<std::string>());
    return uids;
  };
  const std::set<std::string> first_results = uids_of({"SEG", "SR"});
  ASSERT_FALSE(first_results.empty());

  // The notes list what they withdraw in their content and their evidence.
  auto listed = [](const fs::path& file) {
    std::set<std::string> content, evidence;
    DcmFileFormat f;
    if (f.loadFile(file.c_str()).bad()) return std::make_pair(content, evidence);
    DcmDataset& ds = *f.getDataset();
    DcmItem *item = nullptr, *sop = nullptr, *study = nullptr, *series = nullptr;
    OFString uid;
    for (unsigned long i = 0; ds.findAndGetSequenceItem(DCM_ContentSequence, item, i).good(); ++i)
      if (item->findAndGetSequenceItem(DCM_ReferencedSOPSequence, sop, 0).good() &&
          sop->findAndGetOFString(DCM_ReferencedSOPInstanceUID, uid).good())
        content.insert(uid.c_str());
    for (unsigned long i = 0; ds.findAndGetSequenceItem(DCM_CurrentRequestedProcedureEvidenceSequence, study, i).good();
         ++i)
      for (unsigned long j = 0; study->findAndGetSequenceItem(DCM_ReferencedSeriesSequence, series, j).good(); ++j)
        for (unsigned long k = 0; series->findAndGetSequenceItem(DCM_ReferencedSOPSequence, sop, k).good(); ++k)
          if (sop->findAndGetOFString(DCM_ReferencedSOPInstanceUID, uid).good()) evidence.insert(uid.c_str());
    return std::make_pair(content, evidence);
  };
  auto second = test::run_command(rejecting);
  ASSERT_EQ(second.exit_code, 0) << second.output;
  ASSERT_TRUE(fs::exists(out / "rejection-note.dcm")) << second.output;
  EXPECT_NE(second.output.find("wrote rejection-note.dcm"), std::string::npos) << second.output;
  std::string validator;
  EXPECT_TRUE(test::dciodvfy_errors(out / "rejection-note.dcm", &validator).empty()) << validator;
  EXPECT_EQ(listed(out / "rejection-note.dcm"), std::make_pair(first_results, first_results));
  EXPECT_EQ(uids_of({"KO"}).size(), 1u) << "summary.json lists the note";
  const std::set<std::string> second_results = uids_of({"SEG", "SR"});

  // The third lists the second's SEGs and SR, not its note, and what an earlier note could not
  // withdraw (summary.json "unretired"); an entry that names no instance is left out, saying so.
  auto summary = nlohmann::json::parse(test::read_file(out / "summary.json"));
  const nlohmann::json unretired = {{"sop_class_uid", "1.2.840.10008.5.1.4.1.1.66.4"},
                                    {"sop_instance_uid", "2.25.4242"},
                                    {"series_instance_uid", "2.25.4243"}};
  summary["unretired"] = {unretired, {{"sop_instance_uid", "not a uid"}}};
  test::write_file(out / "summary.json", summary.dump());
  auto third = test::run_command(rejecting);
  ASSERT_EQ(third.exit_code, 0) << third.output;
  EXPECT_NE(third.output.find("names no instance to withdraw; left out"), std::string::npos) << third.output;
  std::set<std::string> expected = second_results;
  expected.insert("2.25.4242");
  EXPECT_EQ(listed(out / "rejection-note.dcm"), std::make_pair(expected, expected));
  EXPECT_FALSE(nlohmann::json::parse(test::read_file(out / "summary.json")).contains("unretired"));
  // Without the flag the earlier note is removed with the rest of that analysis.
  ASSERT_EQ(test::run_command(analyze).exit_code, 0);
  EXPECT_FALSE(fs::exists(out / "rejection-note.dcm"));
  EXPECT_TRUE(uids_of({"KO"}).empty());
}

TEST(AnalyzeCommand, WritesTheResultsOfEachStudyAndPlainProgressLines) {
  const auto& data = fixture_data();
  const std::string cli = test::cli_path().string();
  test::TempDir dir;
  // Two studies in one call: one output folder each.
  auto r = test::run_command({cli, "analyze", data.sample("fundus").folder.string(), data.sample("xray").folder.string(),
                              "-o", (dir / "out").string(), "--model", test_model_dir().string(), "--max-new-tokens",
                              "4", "--seed", "cli-test"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* study : {"study-1", "study-2"}) {
    EXPECT_TRUE(fs::exists(dir / "out" / study / "summary.json")) << study << "\n" << r.output;
    EXPECT_TRUE(fs::exists(dir / "out" / study / "sr.dcm")) << study;
  }
  // Not a terminal: plain progress lines, no carriage returns.
  EXPECT_NE(r.output.find("series 1/1: slice 1/1"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find('\r'), std::string::npos);
  EXPECT_NE(r.output.find("analysed  Fundus series"), std::string::npos) << r.output;
  // The same seed gives the same result UIDs on a second run.
  auto again = test::run_command({cli, "analyze", data.sample("fundus").folder.string(), data.sample("xray").folder.string(),
                                  "-o", (dir / "again").string(), "--model", test_model_dir().string(),
                                  "--max-new-tokens", "4", "--seed", "cli-test", "--quiet"});
  ASSERT_EQ(again.exit_code, 0) << again.output;
  auto uid_of = [](const fs::path& summary) {
    const auto j = nlohmann::json::parse(test::read_file(summary));
    for (const auto& o : j["objects"])
      if (o["kind"] == "SR") return o["sop_instance_uid"].get<std::string>();
    return std::string();
  };
  EXPECT_EQ(uid_of(dir / "out" / "study-1" / "summary.json"), uid_of(dir / "again" / "study-1" / "summary.json"));
  EXPECT_FALSE(uid_of(dir / "out" / "study-1" / "summary.json").empty());

  // A file beside the study that is no DICOM (a README) is passed over, said, and no failure; a
  // damaged instance (its DICM prefix, then too few bytes) is one: exit code 5, and why.
  fs::copy(data.sample("fundus").folder, dir / "mixed");
  test::write_file(dir / "mixed" / "README", "exported by the PACS");
  auto mixed = test::run_command({cli, "analyze", (dir / "mixed").string(), "-o", (dir / "mixed-out").string(),
                                  "--model", test_model_dir().string(), "--max-new-tokens", "4", "--quiet"});
  EXPECT_EQ(mixed.exit_code, 0) << mixed.output;
  EXPECT_NE(mixed.output.find("skipped: " + (dir / "mixed" / "README").string()), std::string::npos) << mixed.output;
  const std::string instance = test::read_file(fs::directory_iterator(data.sample("fundus").folder)->path());
  test::write_file(dir / "mixed" / "cut.dcm", instance.substr(0, 400));
  auto damaged = test::run_command({cli, "analyze", (dir / "mixed").string(), "-o", (dir / "damaged-out").string(),
                                    "--model", test_model_dir().string(), "--max-new-tokens", "4", "--quiet"});
  EXPECT_EQ(damaged.exit_code, 5) << damaged.output;
  EXPECT_NE(damaged.output.find("exit code 5: 1 damaged or empty DICOM file(s) were not read"), std::string::npos)
      << damaged.output;
}

}  // namespace
}  // namespace unibiomed::pipeline
