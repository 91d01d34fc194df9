// Video mode (issue 18) with an engine whose tracks are known (BoxEngine): a multi-frame series
// is read as one video by default, one tracked object is one finding across the frames, the
// mode comes from the task rule, the key frames lie inside the rule's slice range, progress is
// reported per frame and cancellation stops between frames, a failing video fails its series
// by name, and slices mode gives what it always gave.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <dcmtk/dcmdata/dctk.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <nlohmann/json.hpp>

#include "pipeline/model_pass.h"
#include "pipeline/study_analyzer.h"
#include "tests/pipeline/pipeline_test_support.h"
#include "tests/support/test_support.h"

namespace unibiomed::pipeline {
namespace {

namespace fs = std::filesystem;
using test::fixture_data;

struct VideoRun {
  std::unique_ptr<Analyzer> analyzer;  // owns the engine
  StudyResult result;
  test::BoxEngine* engine = nullptr;
};

VideoRun run_boxes(const std::vector<InstanceInput>& inputs, AnalyzerSettings settings = {},
                   const AnalysisRequest& request = {}, const std::function<void(test::BoxEngine&)>& setup = {}) {
  auto engine = std::make_unique<test::BoxEngine>();
  VideoRun run;
  run.engine = engine.get();
  if (setup) setup(*engine);
  settings.previews = false;
  run.analyzer = make_analyzer(settings, std::move(engine));
  run.result = run.analyzer->analyze(inputs, request, {}, nullptr, "seed");
  return run;
}

// A rules file extending the defaults with `extra` (JSON members after "extends").
fs::path rules_file(const test::TempDir& dir, const std::string& name, const std::string& extra) {
  const fs::path path = dir / name;
  test::write_file(path, R"({"version": 1, "extends": "defaults")" + extra + "}");
  return path;
}

const ResultObject* seg_of(const StudyResult& r) {
  for (const auto& o : r.objects)
    if (o.kind == "SEG") return &o;
  return nullptr;
}

TEST(VideoKeyFrames, EvenlySpacedInsideTheSliceRange) {
  EXPECT_EQ(video_key_frames(16, std::nullopt), (std::vector<int>{0, 4, 8, 11, 15}));
  EXPECT_EQ(video_key_frames(3, std::nullopt), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(video_key_frames(1, std::nullopt), (std::vector<int>{0}));
  config::SliceSelection s;
  s.from = 0.25;
  s.to = 0.75;  // of 100 slices: 25..74
  const auto k = video_key_frames(100, s);
  ASSERT_EQ(k.size(), 5u);
  EXPECT_EQ(k.front(), 25);
  EXPECT_EQ(k.back(), 74);
  for (int f : k) {
    EXPECT_GE(f, 25);
    EXPECT_LE(f, 74);
  }
  s.from = 0.4;
  s.to = 0.8;  // of 5 slices: 2..3
  EXPECT_EQ(video_key_frames(5, s), (std::vector<int>{2, 3}));
}

// The demo's cine: a cyst that moves between frames so that no two frames' masks touch.
// Connected components would report one "Cyst" per frame; the tracked object is ONE finding
// with one segment across every frame, its area per frame and its longest diameter.
TEST(AnalysisInVideoMode, OneTrackedObjectIsOneFindingAcrossTheFrames) {
  const auto& data = fixture_data();
  AnalysisRequest request;
  request.tasks = {"abnormality"};
  const VideoRun run = run_boxes(data.inputs("us"), {}, request, [](test::BoxEngine& e) { e.video_moving = true; });
  const StudyResult& r = run.result;
  ASSERT_EQ(r.series.size(), 1u);
  const SeriesOutcome& s = r.series[0];
  ASSERT_EQ(s.state, SeriesOutcome::State::Analysed) << s.reason;
  EXPECT_EQ(s.mode, "video");
  EXPECT_EQ(s.frames_total, 16);
  EXPECT_EQ(s.frames_analysed, 16);
  EXPECT_EQ(run.engine->video_frame_counts, (std::vector<int>{16}));
  ASSERT_EQ(run.engine->video_key_frames.size(), 1u);
  EXPECT_EQ(run.engine->video_key_frames[0], (std::vector<int>{0, 4, 8, 11, 15}));
  EXPECT_EQ(s.key_frames, (std::vector<int>{0, 4, 8, 11, 15}));
  EXPECT_TRUE(run.engine->video_both_directions.at(0));
  EXPECT_EQ(run.engine->frames_propagated, 16);

  ASSERT_EQ(r.findings.size(), 1u);
  const Finding& f = r.findings[0];
  EXPECT_EQ(f.label, "Cyst");
  EXPECT_EQ(f.segment_number, 1);
  EXPECT_EQ(f.frame_areas.size(), 16u);  // on every frame
  EXPECT_FALSE(f.frame_area_unit.empty());
  bool long_axis = false;
  for (const auto& m : f.measurements) long_axis |= m.name == "Long axis" && m.value > 0;
  EXPECT_EQ(long_axis, f.frame_area_unit == "mm2");  // a long axis where the spacing is known

  // The SEG: one segment with a mask on each of the 16 frames.
  const ResultObject* seg = seg_of(r);
  ASSERT_NE(seg, nullptr);
  const test::TempDir dir;
  test::write_object(dir / "seg.dcm", *seg);
  const auto j = test::read_seg_with_pydicom(dir / "seg.dcm");
  EXPECT_EQ(j["segments"].size(), 1u) << j.dump(2);
  std::string out;
  EXPECT_TRUE(test::dciodvfy_errors(dir / "seg.dcm", &out).empty()) << out;

  const auto summary = nlohmann::json::parse(r.summary_json);
  EXPECT_EQ(summary["series"][0]["mode"], "video");
  EXPECT_EQ(summary["findings"][0]["frame_areas"]["frames"].size(), 16u);
  // The SR says which mode read the series.
  const ResultObject* sr = nullptr;
  for (const auto& o : r.objects)
    if (o.kind == "SR") sr = &o;
  ASSERT_NE(sr, nullptr);
  const std::string sr_bytes(sr->bytes.begin(), sr->bytes.end());
  EXPECT_NE(sr_bytes.find(s.series_instance_uid + " video"), std::string::npos);
}

// An ultrasound series of two cines and a still image (the first cine's first frame stored on
// its own, as scanners do): each cine is read as one video, the still is asked as an image,
// each gets its SEG saying which mode read it, the series says how many frames were asked one
// by one, and its key frames count among all its analysed frames. (The whole series used to
// fall back to slices mode, every cine frame asked on its own.)
TEST(AnalysisInVideoMode, CinesAndAStillImageOfOneSeriesAreVideosAndAnImage) {
  const test::TempDir dir;
  std::vector<InstanceInput> inputs = fixture_data().inputs("us");
  ASSERT_EQ(inputs.size(), 1u);
  inputs.push_back(test::sample_us_copy(dir.path(), 2, false));
  inputs.push_back(test::sample_us_copy(dir.path(), 3, true));
  ASSERT_EQ(inputs.size(), 3u);
  AnalysisRequest request;
  request.tasks = {"abnormality"};
  const VideoRun run = run_boxes(inputs, {}, request, [](test::BoxEngine& e) { e.video_moving = true; });
  ASSERT_EQ(run.result.series.size(), 1u);
  const SeriesOutcome& s = run.result.series[0];
  ASSERT_EQ(s.state, SeriesOutcome::State::Analysed) << s.reason;
  EXPECT_EQ(s.mode, "video");
  EXPECT_EQ(s.frames_analysed, 33);
  EXPECT_EQ(run.engine->video_frame_counts, (std::vector<int>{16, 16}));  // the cines
  // Each cine's 5 key frames, counted among the series' 33 analysed frames (the still last).
  EXPECT_EQ(s.key_frames, (std::vector<int>{0, 4, 8, 11, 15, 16, 20, 24, 27, 31}));
  EXPECT_EQ(run.engine->frames_propagated, 32);
  EXPECT_EQ(run.engine->questions.size(), 3u);  // once of each video, once of the still
  bool said = false;
  for (const auto& n : s.notes)
    said |= n.find("video mode for 2 sequence(s) of frames; 1 frame(s) with no analysed neighbour") != std::string::npos;
  EXPECT_TRUE(said) << testing::PrintToString(s.notes);

  // One finding tracked through the 16 frames of each cine, one on the still; the frames of the
  // areas are numbered as key_frames are (the second cine's are 16 to 31), and each finding
  // names the SEG that holds it.
  ASSERT_EQ(run.result.findings.size(), 3u);
  std::vector<int> first_frames;
  size_t still = 0;
  std::set<std::string> seg_uids;
  for (const Finding& f : run.result.findings) {
    if (f.frame_areas.size() == 16) first_frames.push_back(f.frame_areas.front().first);
    still += f.frame_areas.empty() ? 1 : 0;
    seg_uids.insert(f.seg_sop_instance_uid);
  }
  std::sort(first_frames.begin(), first_frames.end());
  EXPECT_EQ(first_frames, (std::vector<int>{0, 16}));
  EXPECT_EQ(still, 1u);
  // The answer about the still names it (it is one image among cines).
  bool named = false;
  for (const auto& a : run.result.answers) named |= a.find(", instance 3, abnormality") != std::string::npos;
  EXPECT_TRUE(named) << testing::PrintToString(run.result.answers);

  // A SEG per cine and one for the still, each naming the mode that read its frames, all valid.
  std::vector<std::string> modes;
  std::set<std::string> descriptions;
  for (const auto& o : run.result.objects) {
    if (o.kind != "SEG") continue;
    EXPECT_EQ(seg_uids.count(o.sop_instance_uid), 1u) << o.sop_instance_uid;
    const std::string bytes(o.bytes.begin(), o.bytes.end());
    const bool video = bytes.find("mode video") != std::string::npos;
    const bool slices = bytes.find("mode slices") != std::string::npos;
    EXPECT_NE(video, slices);
    modes.push_back(video ? "video" : "slices");
    const fs::path file = dir / ("seg-" + std::to_string(modes.size()) + ".dcm");
    test::write_object(file, o);
    std::string out;
    EXPECT_TRUE(test::dciodvfy_errors(file, &out).empty()) << out;
    DcmFileFormat seg;
    ASSERT_TRUE(seg.loadFile(file.c_str()).good());
    OFString description;
    seg.getDataset()->findAndGetOFString(DCM_SeriesDescription, description);
    descriptions.insert(description.c_str());
    const auto j = test::read_seg_with_pydicom(file);
    size_t drawn = 0;  // frames with pixels (not an empty padding frame)
    for (const auto& frame : j["frames"]) drawn += frame["pixels"].get<int>() > 0 ? 1 : 0;
    EXPECT_EQ(drawn, video ? 16u : 1u) << j.dump(2);
  }
  std::sort(modes.begin(), modes.end());
  EXPECT_EQ(modes, (std::vector<std::string>{"slices", "video", "video"}));
  // A viewer lists three SEG series: each says what it covers.
  EXPECT_EQ(descriptions, (std::set<std::string>{"UniBiomed segmentation (16 frames of instance 1)",
                                                 "UniBiomed segmentation (16 frames of instance 2)",
                                                 "UniBiomed segmentation (instance 3)"}));
}

// Two [SEG]s of one answer are two tracked objects: two findings, numbered by size.
TEST(AnalysisInVideoMode, EachTrackedObjectIsAFindingOfItsOwn) {
  const auto& data = fixture_data();
  AnalysisRequest request;
  request.tasks = {"abnormality"};
  const VideoRun run = run_boxes(data.inputs("us"), {}, request, [](test::BoxEngine& e) { e.video_segments = 2; });
  ASSERT_EQ(run.result.series.at(0).state, SeriesOutcome::State::Analysed) << run.result.series[0].reason;
  ASSERT_EQ(run.result.findings.size(), 2u);
  EXPECT_EQ(run.result.findings[0].label, "Cyst 1");
  EXPECT_EQ(run.result.findings[1].label, "Cyst 2");
}

// The rule chooses: "mode": "slices" on the rule (or for the whole file) asks frame by frame
// as before; the rule's slice range then selects the slices, while in video mode it only
// places the key frames and every slice is tracked.
TEST(AnalysisInVideoMode, TheRuleChoosesTheModeAndTheSliceRangePlacesTheKeyFrames) {
  const auto& data = fixture_data();
  const test::TempDir dir;
  const std::string ct_rule = R"(, "rules": [{"name": "ct-abdomen", "match": {"modality": ["CT"]}, "modality_phrase": "CT",
      "slices": {"from": 0.4, "to": 0.8}, "tasks": [{"name": "organs", "family": "segmentation", "targets": ["liver"], "window": "abdomen"}]%MODE%}])";
  auto with_mode = [&](const std::string& mode) {
    std::string text = ct_rule;
    text.replace(text.find("%MODE%"), 6, mode);
    return text;
  };
  AnalyzerSettings video;
  video.task_rules = rules_file(dir, "video.json", with_mode(""));
  const VideoRun v = run_boxes(data.inputs("ct"), video);
  ASSERT_EQ(v.result.series.at(0).state, SeriesOutcome::State::Analysed) << v.result.series[0].reason;
  EXPECT_EQ(v.result.series[0].mode, "video");
  EXPECT_EQ(v.result.series[0].frames_analysed, 5);          // every slice tracked
  EXPECT_EQ(v.engine->video_key_frames.at(0), (std::vector<int>{2, 3}));  // inside 0.4..0.8 of 5
  ASSERT_EQ(v.result.findings.size(), 1u);

  AnalyzerSettings slices;
  slices.task_rules = rules_file(dir, "slices.json", with_mode(R"(, "mode": "slices")"));
  const VideoRun s = run_boxes(data.inputs("ct"), slices);
  ASSERT_EQ(s.result.series.at(0).state, SeriesOutcome::State::Analysed) << s.result.series[0].reason;
  EXPECT_EQ(s.result.series[0].mode, "slices");
  EXPECT_EQ(s.result.series[0].frames_analysed, 2);  // the rule's range
  EXPECT_TRUE(s.engine->video_frame_counts.empty());
  EXPECT_TRUE(s.result.series[0].key_frames.empty());

  // The file's top-level mode switches every rule that says none, the defaults' too.
  AnalyzerSettings all_slices;
  all_slices.task_rules = rules_file(dir, "all-slices.json", R"(, "mode": "slices")");
  const VideoRun a = run_boxes(data.inputs("us"), all_slices);
  EXPECT_EQ(a.result.series.at(0).mode, "slices");
  EXPECT_TRUE(a.engine->video_frame_counts.empty());
  EXPECT_EQ(nlohmann::json::parse(a.result.summary_json)["series"][0]["mode"], "slices");
}

// A checkpoint whose memory path was never trained says so in its targets.json ("video":
// false): its multi-frame series are read slice by slice, and the series says why.
TEST(AnalysisInVideoMode, ACheckpointWithoutTrainedTrackingIsAskedSliceBySlice) {
  const test::TempDir model;
  test::write_file(model / "targets.json", R"({"video": false, "modalities": {"Ultrasound": ["lesion"]}})");
  AnalyzerSettings settings;
  settings.model_dir = model.path();
  const VideoRun r = run_boxes(fixture_data().inputs("us"), settings);
  ASSERT_EQ(r.result.series.at(0).state, SeriesOutcome::State::Analysed) << r.result.series[0].reason;
  EXPECT_EQ(r.result.series[0].mode, "slices");
  EXPECT_TRUE(r.engine->video_frame_counts.empty());
  bool said = false;
  for (const auto& n : r.result.series[0].notes) said |= n.find("video mode (SAM2 memory path) is not to be used") != std::string::npos;
  EXPECT_TRUE(said) << testing::PrintToString(r.result.series[0].notes);
  // The same checkpoint without the flag tracks.
  test::write_file(model / "targets.json", R"({"modalities": {"Ultrasound": ["lesion"]}})");
  const VideoRun v = run_boxes(fixture_data().inputs("us"), settings);
  EXPECT_EQ(v.result.series.at(0).mode, "video");
  // Video mode for some modality classes only: the ultrasound cine tracks where the list names
  // ultrasound, and is read slice by slice (naming the list) where it names CT only.
  test::write_file(model / "targets.json", R"({"video": ["Ultrasound"], "modalities": {"Ultrasound": ["lesion"]}})");
  EXPECT_EQ(run_boxes(fixture_data().inputs("us"), settings).result.series.at(0).mode, "video");
  test::write_file(model / "targets.json", R"({"video": ["CT"], "modalities": {"Ultrasound": ["lesion"]}})");
  const VideoRun ct_only = run_boxes(fixture_data().inputs("us"), settings);
  EXPECT_EQ(ct_only.result.series.at(0).mode, "slices");
  said = false;
  for (const auto& n : ct_only.result.series[0].notes)
    said |= n.find("is not to be used for Ultrasound (" + (model / "targets.json").string() + " allows it for CT only)") !=
            std::string::npos;
  EXPECT_TRUE(said) << testing::PrintToString(ct_only.result.series[0].notes);
  for (const std::string bad : {R"("no")", R"(["Sonar"])", R"([1])"}) {
    test::write_file(model / "targets.json", R"({"video": )" + bad + R"(, "modalities": {}})");
    try {
      run_boxes(fixture_data().inputs("us"), settings);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const PipelineError& e) {
      EXPECT_NE(std::string(e.what()).find("\"video\""), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("targets.json"), std::string::npos) << e.what();
    }
  }
}

// Same masks on every frame: tracking and connected components agree, so video mode and
// slices mode give the same findings, measurements and segments; slices mode asks every frame
// on its own as it always did.
TEST(AnalysisInVideoMode, StillMasksGiveTheSameFindingsInBothModes) {
  const auto& data = fixture_data();
  const test::TempDir dir;
  AnalyzerSettings slices;
  slices.task_rules = rules_file(dir, "slices.json", R"(, "mode": "slices")");
  for (const std::string name : {"ct", "us"}) {
    SCOPED_TRACE(name);
    const VideoRun v = run_boxes(data.inputs(name));
    const VideoRun s = run_boxes(data.inputs(name), slices);
    ASSERT_EQ(v.result.series.at(0).mode, "video");
    ASSERT_EQ(s.result.series.at(0).mode, "slices");
    ASSERT_EQ(v.result.findings.size(), s.result.findings.size());
    for (size_t i = 0; i < v.result.findings.size(); ++i) {
      const Finding& a = v.result.findings[i];
      const Finding& b = s.result.findings[i];
      EXPECT_EQ(a.label, b.label);
      EXPECT_EQ(a.key_frame, b.key_frame);
      ASSERT_EQ(a.measurements.size(), b.measurements.size()) << a.label;
      for (size_t m = 0; m < a.measurements.size(); ++m) {
        EXPECT_EQ(a.measurements[m].name, b.measurements[m].name);
        EXPECT_NEAR(a.measurements[m].value, b.measurements[m].value, 1e-6) << a.label << " " << a.measurements[m].name;
      }
      EXPECT_TRUE(b.frame_areas.empty());  // slices mode's findings are as before
    }
  }
}

TEST(AnalysisInVideoMode, ProgressPerFrameAndCancellationBetweenFrames) {
  const auto& data = fixture_data();
  AnalysisRequest request;
  request.tasks = {"liver"};
  {
    auto engine = std::make_unique<test::BoxEngine>();
    auto analyzer = make_analyzer({}, std::move(engine));
    std::vector<std::string> messages;
    analyzer->analyze(data.inputs("us"), request, [&](const Progress& p) { messages.push_back(p.message); }, nullptr, "");
    int frames = 0;
    for (const auto& m : messages) frames += m.find(": frame ") != std::string::npos ? 1 : 0;
    EXPECT_EQ(frames, 16);
  }
  auto engine = std::make_unique<test::BoxEngine>();
  test::BoxEngine* box = engine.get();
  auto analyzer = make_analyzer({}, std::move(engine));
  std::atomic<bool> cancel{false};
  try {
    analyzer->analyze(
        data.inputs("us"), request,
        [&](const Progress& p) {
          if (p.message.find(": frame 3/") != std::string::npos) cancel = true;
        },
        &cancel, "");
    FAIL() << "not cancelled";
  } catch (const Cancelled&) {
  }
  EXPECT_EQ(box->frames_propagated, 3);  // stopped before the 4th frame
}

// A video that cannot be read fails its series, saying which and in which mode; it is not
// quietly asked again slice by slice.
TEST(AnalysisInVideoMode, AFailingVideoFailsItsSeriesByName) {
  const auto& data = fixture_data();
  const VideoRun run = run_boxes(data.inputs("us"), {}, {}, [](test::BoxEngine& e) { e.video_fails = true; });
  const SeriesOutcome& s = run.result.series.at(0);
  EXPECT_EQ(s.state, SeriesOutcome::State::Failed);
  EXPECT_NE(s.reason.find("video mode failed on Ultrasound series"), std::string::npos) << s.reason;
  EXPECT_NE(s.reason.find(s.series_instance_uid), std::string::npos) << s.reason;
  EXPECT_NE(s.reason.find("not implemented"), std::string::npos) << s.reason;
  EXPECT_NE(s.reason.find("\"mode\": \"slices\""), std::string::npos) << s.reason;
  EXPECT_TRUE(run.result.findings.empty());
  EXPECT_EQ(run.engine->questions.size(), 0u);  // no slice-by-slice fallback
  // A one-frame series is never a video.
  const VideoRun xray = run_boxes(data.inputs("xray"), {}, {}, [](test::BoxEngine& e) { e.video_fails = true; });
  EXPECT_EQ(xray.result.series.at(0).state, SeriesOutcome::State::Analysed) << xray.result.series[0].reason;
  EXPECT_EQ(xray.result.series[0].mode, "slices");
}

// ask_video: the frames of one video, the reference's options (first min(5, N) frames, forward
// from frame 0), one finding per tracked object; frames of different sizes named.
TEST(AnalysisInVideoMode, AskAVideo) {
  const auto& data = fixture_data();
  auto engine = std::make_unique<test::BoxEngine>();
  test::BoxEngine* box = engine.get();
  box->video_moving = true;
  auto analyzer = make_analyzer({}, std::move(engine));
  const auto& ct = data.sample("ct").files;
  ASSERT_GE(ct.size(), 3u);
  std::vector<InstanceInput> frames = test::file_inputs({ct[0], ct[1], ct[2]});
  Question q;
  q.text = "Is there a cyst?";
  int on_frame = 0;
  const auto a = analyzer->ask_video(frames, q, [&](int, int) { ++on_frame; });
  EXPECT_EQ(on_frame, 3);
  EXPECT_EQ(box->video_key_frames.at(0), (std::vector<int>{0, 1, 2}));
  EXPECT_FALSE(box->video_both_directions.at(0));
  ASSERT_EQ(a.segments.size(), 1u);
  ASSERT_EQ(a.segments[0].frames.size(), 3u);
  for (const auto& f : a.segments[0].frames) EXPECT_GT(f.area, 0);
  ASSERT_EQ(a.findings.size(), 1u);
  EXPECT_EQ(a.findings[0].label, "Cyst");
  EXPECT_EQ(a.findings[0].frame_areas.size(), 3u);
  EXPECT_TRUE(a.notes.empty()) << testing::PrintToString(a.notes);  // in mm, nothing dropped

  frames.push_back(test::file_inputs({data.sample("xray").files.front()}).front());
  try {
    analyzer->ask_video(frames, q, {});
    FAIL() << "frames of different sizes accepted";
  } catch (const PipelineError& e) {
    EXPECT_NE(std::string(e.what()).find("frame 4 (" + data.sample("xray").files.front().string() + ")"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace unibiomed::pipeline
