// Whole slides through the pipeline with an engine that segments what it sees (the stained
// tissue, by colour) in every region: the stitched findings must be exactly the connected
// pieces of the same threshold applied to the whole level at once, measured in mm with the
// level's spacing, whatever the regions cut; glass regions are never asked.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>

#include "dicom/series.h"
#include "dicom/slide.h"
#include "inference/answer_parser.h"
#include "pipeline/consolidation.h"
#include "pipeline/measurements.h"
#include "pipeline/preview.h"
#include "pipeline/study_analyzer.h"
#include "tests/pipeline/pipeline_test_support.h"
#include "tests/support/test_support.h"

namespace unibiomed::pipeline {
namespace {

using test::fixture_data;

// Stained: saturated and not the black padding of a view.
bool stained(const uint8_t* p) {
  const int hi = std::max({p[0], p[1], p[2]}), lo = std::min({p[0], p[1], p[2]});
  return hi > 60 && hi - lo > 40;
}

struct SeenBatch : GroundingEngine::Batch {
  std::vector<inference::RgbImage> images;
  size_t size() const override { return images.size(); }
};

// Answers every question about a view with one mask: its stained pixels.
class StainEngine : public GroundingEngine {
 public:
  std::unique_ptr<Batch> encode(const std::vector<inference::RgbImage>& images, const std::atomic<bool>*) override {
    auto b = std::make_unique<SeenBatch>();
    b->images = images;
    views += images.size();
    for (const auto& im : images) largest_view = std::max(largest_view, std::max(im.width, im.height));
    return b;
  }
  std::vector<inference::GroundedAnswer> answer(Batch& batch, const std::string& question,
                                                const std::atomic<bool>*) override {
    std::vector<inference::GroundedAnswer> out;
    const bool segmentation = question.rfind("Please segment", 0) == 0;
    for (const auto& im : static_cast<SeenBatch&>(batch).images) {
      inference::GroundedAnswer a;
      a.stop_reason = "eos";
      a.text = segmentation ? "It is [SEG]." : "It is [SEG]. Tumour.";
      a.parsed = inference::parse_answer(a.text, question);
      inference::GroundedSegment s;
      s.width = im.width;
      s.height = im.height;
      s.phrase = segmentation ? "" : "Tumour";
      s.mask.assign(size_t(im.width) * size_t(im.height), 0);
      s.probability.assign(s.mask.size(), 0.2f);
      for (size_t i = 0; i < s.mask.size(); ++i)
        if (stained(&im.rgb[3 * i])) s.mask[i] = 1, s.probability[i] = 0.9f;
      s.iou = 0.7f;
      a.segments.push_back(std::move(s));
      out.push_back(std::move(a));
    }
    return out;
  }
  std::unique_ptr<VideoBatch> encode_video(const std::vector<inference::RgbImage>&, const std::atomic<bool>*) override {
    throw inference::InferenceError("stain engine: no video");
  }
  inference::VideoAnswer answer_video(VideoBatch&, const std::string&, const inference::VideoOptions&) override {
    throw inference::InferenceError("stain engine: no video");
  }
  std::string description() const override { return "stain engine (tests)"; }
  std::string weights_hash() const override { return std::string(64, '1'); }
  EngineTimings timings() const override { return {}; }
  size_t views = 0;
  int largest_view = 0;
};

// 8-connected pieces of a mask: per piece, its pixels and its mask.
std::vector<std::vector<uint8_t>> pieces(const std::vector<uint8_t>& mask, int w, int h) {
  std::vector<int> label(mask.size(), -1);
  std::vector<std::vector<uint8_t>> out;
  for (size_t start = 0; start < mask.size(); ++start) {
    if (!mask[start] || label[start] >= 0) continue;
    out.emplace_back(mask.size(), 0);
    std::vector<size_t> stack{start};
    label[start] = int(out.size());
    while (!stack.empty()) {
      const size_t p = stack.back();
      stack.pop_back();
      out.back()[p] = 1;
      const int x = int(p % size_t(w)), y = int(p / size_t(w));
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const int nx = x + dx, ny = y + dy;
          if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
          const size_t n = size_t(ny) * size_t(w) + size_t(nx);
          if (mask[n] && label[n] < 0) label[n] = int(out.size()), stack.push_back(n);
        }
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return count_pixels(a) > count_pixels(b); });
  return out;
}

TEST(AnalysisOfSlides, FindingsAreTheStitchedPiecesOfTheWholeLevelInMm) {
  const auto& data = fixture_data();
  AnalyzerSettings settings;
  settings.slide_region_size = 128;  // level 1 (256 x 192 at 0.5 um): 3 x 2 regions, overlap 16
  settings.previews = false;
  auto engine = std::make_unique<StainEngine>();
  StainEngine* seen = engine.get();
  auto analyzer = make_analyzer(settings, std::move(engine));
  const StudyResult r = analyzer->analyze(data.inputs("wsi"), {}, {}, nullptr, "seed");
  ASSERT_EQ(r.series.size(), 1u);
  const SeriesOutcome& s = r.series[0];
  ASSERT_EQ(s.state, SeriesOutcome::State::Analysed) << s.reason;
  EXPECT_EQ(s.rule, "pathology");
  EXPECT_LE(seen->largest_view, 128);
  EXPECT_EQ(size_t(s.views), seen->views);
  bool tissue_note = false;
  for (const auto& n : s.notes)
    tissue_note |= n.find("of 6 regions of 128 px (overlap 16) on slide level 1") != std::string::npos;
  EXPECT_TRUE(tissue_note) << (s.notes.empty() ? "" : s.notes.front());
  // Regions side by side are never a video, whatever the rule's mode.
  EXPECT_EQ(s.mode, "slices");
  for (const auto& n : s.notes) EXPECT_EQ(n.find("video"), std::string::npos) << n;

  // The same threshold on the whole level at once.
  const dicom::SeriesCollection c = dicom::read_series({data.sample("wsi").folder});
  ASSERT_EQ(c.series.size(), 1u);
  const dicom::SlidePyramid pyramid(c.series.front());
  const dicom::SlideLevel& level = pyramid.levels().at(1);
  ASSERT_EQ(level.total_columns, 256);
  const dicom::RgbImage whole = pyramid.read_region(1, 0, 0, 256, 192);
  std::vector<uint8_t> mask(256 * 192);
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = stained(&whole.rgb[3 * i]);
  const auto truth = pieces(mask, 256, 192);
  ASSERT_GT(truth.size(), 0u);
  ASSERT_GT(count_pixels(truth[0]), size_t(128 * 128)) << "the section crosses every region border";

  const double spacing = level.mm_per_pixel_x;
  EXPECT_NEAR(spacing, 0.0005, 1e-12);
  for (const std::string task : {"neoplastic-cells", "abnormality"}) {
    SCOPED_TRACE(task);
    std::vector<const Finding*> found;
    for (const auto& f : r.findings)
      if (f.task == task) found.push_back(&f);
    ASSERT_EQ(found.size(), truth.size());
    for (size_t i = 0; i < found.size(); ++i) {
      const Finding& f = *found[i];
      EXPECT_EQ(f.label, task == "abnormality" ? "Tumour" : "Neoplastic cells");
      ASSERT_GE(f.measurements.size(), 1u);
      EXPECT_EQ(f.measurements[0].name, "Area");
      EXPECT_EQ(f.measurements[0].unit, "mm2");
      EXPECT_NEAR(f.measurements[0].value, double(count_pixels(truth[i])) * spacing * spacing, 1e-12) << i;
    }
    // The largest piece's long axis, from the whole level's mask.
    ASSERT_EQ(found[0]->measurements.size(), 2u);
    EXPECT_EQ(found[0]->measurements[1].name, "Long axis");
    EXPECT_NEAR(found[0]->measurements[1].value, longest_diameter(truth[0], 256, 192, spacing, spacing).length, 1e-9);
    EXPECT_NEAR(found[0]->mean_probability, 0.9, 0.01);
    EXPECT_NEAR(found[0]->mean_iou, 0.7, 1e-6);
  }

  // One tiled SEG of level 1 with a segment per finding, and the SR: validators clean, every
  // segment read back by pydicom onto the total pixel matrix is its piece.
  test::TempDir dir("slide-analysis");
  const ResultObject* seg = nullptr;
  const ResultObject* sr = nullptr;
  for (const auto& o : r.objects) (o.kind == "SEG" ? seg : sr) = &o;
  ASSERT_TRUE(seg && sr);
  EXPECT_EQ(seg->segmentation_type, "BINARY");
  test::write_object(dir / "seg.dcm", *seg);
  test::write_object(dir / "sr.dcm", *sr);
  std::string report;
  EXPECT_TRUE(test::dciodvfy_errors(dir / "seg.dcm", &report).empty()) << report;
  EXPECT_TRUE(test::dciodvfy_errors(dir / "sr.dcm", &report).empty()) << report;
  EXPECT_TRUE(test::pixelmed_sr_errors(dir / "sr.dcm", &report).empty()) << report;
  ASSERT_EQ(truth.size(), 1u) << "the stain is one piece on this slide";
  std::string expected;
  for (const auto& f : r.findings) {
    EXPECT_GT(f.segment_number, 0) << f.label;
    expected.append(truth[0].begin(), truth[0].end());
  }
  test::write_file(dir / "expected.raw", expected);
  const auto check = test::run_command(
      {"/usr/bin/python3", (test::source_dir() / "tests/writers/check_slide_seg.py").string(),
       (dir / "seg.dcm").string(), (dir / "expected.raw").string(), std::to_string(r.findings.size())});
  EXPECT_EQ(check.exit_code, 0) << check.output;
  // The SR's outline lies on the level's total pixel matrix: its SCOORD references the level's
  // instance without a frame number, with points inside 256 x 192.
  const auto scoord = test::run_command(
      {"/usr/bin/python3", "-c",
       "import sys, pydicom\n"
       "sr = pydicom.dcmread(sys.argv[1]); out = []\n"
       "def walk(items):\n"
       "  for i in items:\n"
       "    if i.ValueType == 'SCOORD':\n"
       "      ref = i.ContentSequence[0].ReferencedSOPSequence[0]\n"
       "      xs = i.GraphicData[0::2]; ys = i.GraphicData[1::2]\n"
       "      out.append('%s %d %g %g %g %g' % (ref.ReferencedSOPInstanceUID, 'ReferencedFrameNumber' in ref, "
       "min(xs), max(xs), min(ys), max(ys)))\n"
       "    walk(getattr(i, 'ContentSequence', []))\n"
       "walk(sr.ContentSequence); print('\\n'.join(out))\n",
       (dir / "sr.dcm").string()});
  ASSERT_EQ(scoord.exit_code, 0) << scoord.output;
  const std::string level_uid = level.sop_instance_uids.front();
  std::istringstream lines(scoord.output);
  std::string uid;
  int with_frame = 0, count = 0;
  double x0, x1, y0, y1;
  while (lines >> uid >> with_frame >> x0 >> x1 >> y0 >> y1) {
    ++count;
    EXPECT_EQ(uid, level_uid);
    EXPECT_EQ(with_frame, 0);
    EXPECT_GE(x0, 0);
    EXPECT_LE(x1, 256);
    EXPECT_GE(y0, 0);
    EXPECT_LE(y1, 192);
    EXPECT_GT(x1 - x0, 128) << "the outline of the whole piece, across the regions";
  }
  EXPECT_GE(count, 2) << scoord.output;
}

// Answers every question with a grid of small squares (sides 2 to 6 pixels; none in a view's top
// 16 rows, where a preview writes its label): hundreds of findings on one slide.
class DotsEngine : public StainEngine {
 public:
  std::vector<inference::GroundedAnswer> answer(Batch& batch, const std::string& question,
                                                const std::atomic<bool>* cancel) override {
    auto out = StainEngine::answer(batch, question, cancel);
    for (auto& a : out)
      for (auto& s : a.segments)
        for (int y = 0; y < s.height; ++y)
          for (int x = 0; x < s.width; ++x) {
            const int side = 2 + (x / 16 + y / 16) % 5;
            const bool on = y >= 16 && x % 16 < side && y % 16 < side;
            s.mask[size_t(y) * size_t(s.width) + size_t(x)] = on;
            s.probability[size_t(y) * size_t(s.width) + size_t(x)] = on ? 0.9f : 0.1f;
          }
    return out;
  }
};

TEST(AnalysisOfSlides, PreviewsAreDrawnForTheLargestFindingsOnly) {
  // A slide with hundreds of findings: every one is in the SEG and the SR, previews (each holds
  // its region's pixels until written) only for the 24 largest, and the series says so.
  const auto& data = fixture_data();
  AnalyzerSettings settings;
  settings.slide_region_size = 128;
  settings.previews = true;
  auto analyzer = make_analyzer(settings, std::make_unique<DotsEngine>());
  const StudyResult r = analyzer->analyze(data.inputs("wsi"), {}, {}, nullptr, "seed");
  ASSERT_EQ(r.series.size(), 1u);
  const SeriesOutcome& s = r.series[0];
  ASSERT_EQ(s.state, SeriesOutcome::State::Analysed) << s.reason;
  ASSERT_GT(r.findings.size(), 100u);
  EXPECT_EQ(r.previews.size(), 24u);
  size_t smallest_with = SIZE_MAX, largest_without = 0, with_segment = 0;
  for (const auto& f : r.findings) {
    ASSERT_FALSE(f.measurements.empty());
    const double area = f.measurements[0].value;
    if (f.preview_file.empty())
      largest_without = std::max(largest_without, size_t(std::lround(area / 0.0005 / 0.0005)));
    else
      smallest_with = std::min(smallest_with, size_t(std::lround(area / 0.0005 / 0.0005)));
    with_segment += f.segment_number > 0;
  }
  EXPECT_EQ(with_segment, r.findings.size());
  EXPECT_GE(smallest_with, largest_without) << "the previews are of the largest findings";
  bool noted = false;
  for (const auto& n : s.notes)
    noted |= n == "previews drawn for the 24 largest of " + std::to_string(r.findings.size()) + " findings (" +
                      std::to_string(r.findings.size() - 24) + " without one; every finding is in the SEG and SR)";
  EXPECT_TRUE(noted) << ::testing::PrintToString(s.notes);
  // Each preview outlines its finding (a square, or the part of one that its region's core holds)
  // in the target's colour: more pixels of that colour than its label alone draws on a blank
  // image of the same size, at most as many more as the finding has pixels.
  auto target_coloured = [](const std::vector<uint8_t>& rgb) {
    size_t n = 0;
    for (size_t i = 0; i < rgb.size(); i += 3) n += rgb[i] == 255 && rgb[i + 1] == 60 && rgb[i + 2] == 60;
    return n;
  };
  for (size_t i = 0; i < r.findings.size(); ++i) {
    const Finding& f = r.findings[i];
    if (f.preview_file.empty()) continue;
    const auto p = std::find_if(r.previews.begin(), r.previews.end(),
                                [&](const Preview& x) { return x.file_name == f.preview_file; });
    ASSERT_NE(p, r.previews.end()) << f.preview_file;
    ASSERT_EQ(p->rgb.size(), size_t(p->width) * size_t(p->height) * 3) << p->file_name;
    const dicom::RgbImage blank{p->width, p->height, std::vector<uint8_t>(p->rgb.size(), 0)};
    const size_t label_only =
        target_coloured(render_preview(blank, std::vector<uint8_t>(blank.rgb.size() / 3, 0), {255, 60, 60}, f.label).rgb);
    const size_t pixels = size_t(std::lround(f.measurements[0].value / 0.0005 / 0.0005));
    const size_t outline = target_coloured(p->rgb) - label_only;
    EXPECT_GT(outline, 0u) << p->file_name;
    EXPECT_LE(outline, pixels) << p->file_name;
  }
}

TEST(AnalysisOfSlides, FindingsUnderTheTargetsMinimumConfidenceAreLeftOutAndSaidSo) {
  // The stain engine's masks: probability 0.9 inside, IoU score 0.7, a confidence of about 0.79.
  test::TempDir dir;
  auto rules_asking = [&](const std::string& confidence) {
    test::write_file(dir / "rules.json", R"({"version": 1, "extends": "defaults", "targets": {"lesion": {
      "phrase": "lesion", "label": "Lesion", "kind": "lesion", "colour": [255, 60, 60], "min_size": 0,
      "min_confidence": )" + confidence + R"(,
      "category": {"value": "49755003", "scheme": "SCT", "meaning": "Morphologically Abnormal Structure"},
      "type": {"value": "52988006", "scheme": "SCT", "meaning": "Lesion"}}},
      "rules": [{"name": "pathology", "match": {"modality": ["Pathology"]}, "modality_phrase": "pathology",
                 "tasks": [{"name": "abnormality", "family": "disease", "targets": ["lesion"]}]}]})");
    AnalyzerSettings settings;
    settings.slide_region_size = 128;
    settings.previews = false;
    settings.task_rules = dir / "rules.json";
    return make_analyzer(settings, std::make_unique<StainEngine>())
        ->analyze(fixture_data().inputs("wsi"), {}, {}, nullptr, "seed");
  };
  const StudyResult kept = rules_asking("0.75");
  ASSERT_FALSE(kept.findings.empty());
  std::vector<double> confidences;
  for (const auto& f : kept.findings) {
    EXPECT_GT(f.confidence, 0.75) << f.label;
    confidences.push_back(f.confidence);
  }
  const StudyResult left_out = rules_asking("0.95");
  ASSERT_EQ(left_out.series.size(), 1u);
  ASSERT_EQ(left_out.series[0].state, SeriesOutcome::State::Analysed) << left_out.series[0].reason;
  EXPECT_TRUE(left_out.findings.empty());
  for (const auto& o : left_out.objects) EXPECT_NE(o.kind, "SEG");
  const std::string expected = "abnormality (Lesion): " + low_confidence_note(confidences, 0.95);
  bool said = false;
  for (const auto& n : left_out.series[0].notes) said |= n == expected;
  EXPECT_TRUE(said) << expected << " not in " << ::testing::PrintToString(left_out.series[0].notes);
}

TEST(AnalysisOfSlides, AskAboutOneTileOfASlideSaysHowASlideIsAsked) {
  // ask() is about one image; a level of a whole slide is asked through the analysis, which
  // reads it region by region. The message says so instead of "no frame 1".
  const auto slide = fixture_data().inputs("wsi");
  const auto analyzer = make_analyzer({}, std::make_unique<StainEngine>());
  for (int frame : {1, 2}) {
    try {
      analyzer->ask(slide.at(0), frame, {"Please segment tumor in pathology.", "", {}, ""}, "");
      ADD_FAILURE() << "a tile of a slide asked as an image";
    } catch (const PipelineError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(" is a level of a whole slide ("), std::string::npos) << what;
      EXPECT_NE(what.find("through an analysis question"), std::string::npos) << what;
    }
  }
}

TEST(AnalysisOfSlides, ARegionSizeOutsideTheRangeIsRefused) {
  AnalyzerSettings settings;
  settings.slide_region_size = 8;
  try {
    make_analyzer(settings, std::make_unique<StainEngine>());
    ADD_FAILURE() << "accepted";
  } catch (const PipelineError& e) {
    EXPECT_NE(std::string(e.what()).find("slide_region_size must be 16 to 8192 pixels, not 8"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace unibiomed::pipeline
