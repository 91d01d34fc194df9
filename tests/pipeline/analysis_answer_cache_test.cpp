// The answer cache (pipeline/answer_cache.h): a study analysed again by the same analyzer asks
// the model only about the series whose images or questions changed, and the results of the
// others come out as they did.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>
#include <gtest/gtest.h>

#include <random>

#include "pipeline/answer_cache.h"
#include "pipeline/summary.h"
#include "tests/pipeline/pipeline_test_support.h"
#include "tests/support/test_support.h"

namespace unibiomed::pipeline {
namespace {

namespace fs = std::filesystem;
using test::fixture_data;

FrameMask random_mask(std::mt19937& rng, size_t frame, bool solid) {
  FrameMask m;
  m.frame = frame;
  const size_t n = 37 * 23;
  for (size_t i = 0; i < n; ++i) {
    // Solid: long runs (a mask); else noise, where runs do not pay.
    const uint8_t v = solid ? uint8_t(i > 200 && i < 600) : uint8_t(rng() & 0xff);
    m.mask.push_back(v);
    m.probability.push_back(solid ? uint8_t(v * 255) : uint8_t(rng() & 0xff));
  }
  m.iou = 0.875 + double(frame) / 1024;
  m.phrase = "cyst " + std::to_string(frame);
  m.text = "A cyst.";
  m.answer = "It is [SEG]. Cyst.";
  return m;
}

bool same(const FrameMask& a, const FrameMask& b) {
  return a.frame == b.frame && a.mask == b.mask && a.probability == b.probability && a.iou == b.iou &&
         a.phrase == b.phrase && a.text == b.text && a.answer == b.answer;
}

TEST(AnswerCache, GivesBackWhatItKeptWithinItsBound) {
  std::mt19937 rng(7);
  CachedAnswers a;
  a.views = 12;
  a.results.resize(2);
  a.results[0].masks[0] = {random_mask(rng, 0, true), random_mask(rng, 3, false)};
  a.results[0].masks[2] = {random_mask(rng, 1, true)};
  a.results[0].texts[0] = {{0, "A cyst."}, {3, ""}};
  a.results[1].tracks[1] = {{random_mask(rng, 0, true), random_mask(rng, 1, true)}, {}};
  const CachedAnswers b = AnswerCache::decode(AnswerCache::encode(a));
  EXPECT_EQ(b.views, 12);
  ASSERT_EQ(b.results.size(), 2u);
  ASSERT_EQ(b.results[0].masks.size(), 2u);
  ASSERT_EQ(b.results[0].masks.at(0).size(), 2u);
  EXPECT_TRUE(same(b.results[0].masks.at(0)[0], a.results[0].masks.at(0)[0]));
  EXPECT_TRUE(same(b.results[0].masks.at(0)[1], a.results[0].masks.at(0)[1]));
  EXPECT_TRUE(same(b.results[0].masks.at(2)[0], a.results[0].masks.at(2)[0]));
  EXPECT_EQ(b.results[0].texts, a.results[0].texts);
  ASSERT_EQ(b.results[1].tracks.at(1).size(), 2u);
  EXPECT_TRUE(same(b.results[1].tracks.at(1)[0][1], a.results[1].tracks.at(1)[0][1]));
  EXPECT_TRUE(b.results[1].tracks.at(1)[1].empty());
  // Masks are stored as runs: a solid mask takes a small part of its raw size.
  CachedAnswers solid;
  solid.results.resize(1);
  for (size_t f = 0; f < 20; ++f) solid.results[0].masks[0].push_back(random_mask(rng, f, true));
  EXPECT_LT(AnswerCache::encode(solid).size(), 20u * 2 * 37 * 23 / 10);
  // A truncated entry is refused, not read past its end.
  const std::string blob = AnswerCache::encode(a);
  EXPECT_THROW(AnswerCache::decode(blob.substr(0, blob.size() / 2)), std::runtime_error);

  // The bound: entries leave least recently used first; one larger than the bound is not kept.
  const size_t size = AnswerCache::encode(a).size() + 64;
  AnswerCache cache(size * 2 + size / 2);
  cache.put(std::string(64, '1'), a);
  cache.put(std::string(64, '2'), a);
  ASSERT_TRUE(cache.find(std::string(64, '1')).has_value());  // 1 is now the more recent
  cache.put(std::string(64, '3'), a);
  EXPECT_EQ(cache.entries(), 2u);
  EXPECT_TRUE(cache.find(std::string(64, '1')).has_value());
  EXPECT_FALSE(cache.find(std::string(64, '2')).has_value());
  EXPECT_TRUE(cache.find(std::string(64, '3')).has_value());
  EXPECT_LE(cache.bytes(), size * 2 + size / 2);
  AnswerCache small(size / 2);
  small.put(std::string(64, '1'), a);
  EXPECT_EQ(small.entries(), 0u);
}

// Copies of the sample CT as another series of the same study (its own Series and SOP Instance
// UIDs); `touch` also changes the first file's bytes (a corrected slice).
std::vector<InstanceInput> second_series(const fs::path& dir, const std::string& series_uid, bool touch) {
  fs::create_directories(dir);
  std::vector<InstanceInput> out;
  int n = 0;
  for (const auto& in : fixture_data().inputs("ct")) {
    DcmFileFormat file;
    if (file.loadFile(in.path.c_str()).bad()) throw std::runtime_error("cannot read " + in.path.string());
    DcmDataset& ds = *file.getDataset();
    ds.putAndInsertString(DCM_SeriesInstanceUID, series_uid.c_str());
    ds.putAndInsertString(DCM_SOPInstanceUID, (series_uid + "." + std::to_string(++n)).c_str());
    file.getMetaInfo()->putAndInsertString(DCM_MediaStorageSOPInstanceUID,
                                           (series_uid + "." + std::to_string(n)).c_str());
    ds.putAndInsertString(DCM_SeriesNumber, "2");
    if (touch && n == 1) ds.putAndInsertString(DCM_ImageComments, "corrected");
    const fs::path copy = dir / in.path.filename();
    if (file.saveFile(copy.c_str(), ds.getOriginalXfer()).bad())
      throw std::runtime_error("cannot write " + copy.string());
    out.push_back({copy.string(), {}, copy});
  }
  return out;
}

std::vector<uint8_t> pixel_data(const ResultObject& object, const fs::path& dir) {
  fs::create_directories(dir);
  const fs::path file = dir / object.file_name;
  test::write_object(file, object);
  DcmFileFormat f;
  EXPECT_TRUE(f.loadFile(file.c_str()).good());
  const Uint8* data = nullptr;
  unsigned long length = 0;
  EXPECT_TRUE(f.getDataset()->findAndGetUint8Array(DCM_PixelData, data, &length).good());
  return data ? std::vector<uint8_t>(data, data + length) : std::vector<uint8_t>();
}

bool noted(const StudyResult& r, const std::string& series_uid) {
  for (const auto& s : r.series) {
    if (s.series_instance_uid != series_uid) continue;
    for (const auto& n : s.notes)
      if (n.find("the node's answer cache") != std::string::npos) return true;
  }
  return false;
}

TEST(AnalysisAnswerCache, AStudyAnalysedAgainAsksTheModelOnlyAboutWhatChanged) {
  test::TempDir dir;
  AnalyzerSettings settings;
  settings.answer_cache_bytes = size_t(64) << 20;
  auto engine = std::make_unique<test::BoxEngine>();
  test::BoxEngine* box = engine.get();
  const auto analyzer = make_analyzer(settings, std::move(engine));
  const auto ct = fixture_data().inputs("ct");
  const StageTimings none{};
  auto findings = [&](const StudyResult& r) {
    return nlohmann::json::parse(summary_json(r, "", "", none))["findings"];
  };

  const StudyResult first = analyzer->analyze(ct, {}, {}, nullptr, "seed");
  const size_t asked = box->questions.size();
  ASSERT_GT(asked, 0u);
  ASSERT_FALSE(first.findings.empty());
  const std::string ct_uid = first.series.at(0).series_instance_uid;
  EXPECT_FALSE(noted(first, ct_uid));

  // The same study again: the model is asked nothing, and the findings and SEGs are the same.
  const StudyResult again = analyzer->analyze(ct, {}, {}, nullptr, "seed");
  EXPECT_EQ(box->questions.size(), asked);
  EXPECT_TRUE(noted(again, ct_uid)) << testing::PrintToString(again.series.at(0).notes);
  EXPECT_EQ(findings(again), findings(first));
  EXPECT_EQ(again.series.at(0).views, first.series.at(0).views);
  ASSERT_EQ(again.objects.size(), first.objects.size());
  for (size_t i = 0; i < first.objects.size(); ++i) {
    ASSERT_EQ(again.objects[i].kind, first.objects[i].kind);
    if (first.objects[i].kind != "SEG") continue;
    EXPECT_EQ(pixel_data(again.objects[i], dir / "again"), pixel_data(first.objects[i], dir / "first"));
  }

  // A second series of the study arrives: only it is asked about (the same images under other
  // UIDs are other bytes).
  const std::string later_uid = "2.25.1234567890123456789";
  auto both = ct;
  for (auto& in : second_series(dir / "later", later_uid, false)) both.push_back(in);
  const StudyResult run2 = analyzer->analyze(both, {}, {}, nullptr, "seed 2");
  EXPECT_EQ(box->questions.size(), 2 * asked);
  EXPECT_TRUE(noted(run2, ct_uid));
  EXPECT_FALSE(noted(run2, later_uid));

  // One of its files corrected: that series is asked about again, the first one is not.
  auto corrected = ct;
  for (auto& in : second_series(dir / "corrected", later_uid, true)) corrected.push_back(in);
  const StudyResult run3 = analyzer->analyze(corrected, {}, {}, nullptr, "seed 3");
  EXPECT_EQ(box->questions.size(), 3 * asked);
  EXPECT_TRUE(noted(run3, ct_uid));
  EXPECT_FALSE(noted(run3, later_uid));

  // Other questions (one task of the rules): asked.
  AnalysisRequest organs;
  organs.tasks = {"organs"};
  const size_t before = box->questions.size();
  const StudyResult run4 = analyzer->analyze(ct, organs, {}, nullptr, "seed 4");
  EXPECT_GT(box->questions.size(), before);
  EXPECT_LT(box->questions.size() - before, asked);
  EXPECT_FALSE(noted(run4, ct_uid));
  // ... and those again: not.
  const size_t after = box->questions.size();
  analyzer->analyze(ct, organs, {}, nullptr, "seed 5");
  EXPECT_EQ(box->questions.size(), after);

  // Without the cache (the default) the model is asked every time.
  auto plain_engine = std::make_unique<test::BoxEngine>();
  test::BoxEngine* plain_box = plain_engine.get();
  const auto plain = make_analyzer({}, std::move(plain_engine));
  plain->analyze(ct, {}, {}, nullptr, "seed");
  plain->analyze(ct, {}, {}, nullptr, "seed");
  EXPECT_EQ(plain_box->questions.size(), 2 * asked);
}

}  // namespace
}  // namespace unibiomed::pipeline
