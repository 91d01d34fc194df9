// SPDX-License-Identifier: GPL-3.0-or-later
#include "tests/pipeline/pipeline_test_support.h"

#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>

#include "inference/answer_parser.h"
#include "inference/error.h"
#include "inference/random_checkpoint.h"
#include "tests/support/test_support.h"

namespace unibiomed::test {

namespace fs = std::filesystem;

namespace {

struct FixtureOwner {
  std::unique_ptr<TempDir> dir;
  PipelineFixtureData data;
};

FixtureOwner& owner() {
  static FixtureOwner o;  // written once per test process; the TempDir removes it at exit
  return o;
}

}  // namespace

const samples::SampleSeries& PipelineFixtureData::sample(const std::string& name) const {
  for (const auto& s : samples)
    if (s.name == name) return s;
  throw std::runtime_error("no sample " + name);
}

std::vector<pipeline::InstanceInput> PipelineFixtureData::inputs(const std::string& name) const {
  return file_inputs(sample(name).files);
}

const PipelineFixtureData& fixture_data() {
  static std::once_flag once;
  std::call_once(once, [] {
    auto& o = owner();
    o.dir = std::make_unique<TempDir>("unibiomed-pipeline-test");
    o.data.root = o.dir->path();
    samples::SampleOptions options;
    options.ct_slices = 5;
    options.ct_size = 96;
    options.wsi_columns = 512;
    options.wsi_rows = 384;
    o.data.samples = samples::write_samples(o.data.root / "samples", options);
    inference::RandomCheckpointOptions model;
    model.kind = "tiny";
    model.seed = 1;
    o.data.tiny_model = o.data.root / "tiny-model";
    inference::write_random_checkpoint(o.data.tiny_model, model);
  });
  return owner().data;
}

std::vector<pipeline::InstanceInput> file_inputs(const std::vector<fs::path>& files) {
  std::vector<pipeline::InstanceInput> out;
  for (const auto& f : files) {
    pipeline::InstanceInput in;
    in.id = f.string();
    in.path = f;
    out.push_back(std::move(in));
  }
  return out;
}

nlohmann::json read_seg_with_pydicom(const fs::path& file) {
  const auto result =
      run_command({"/usr/bin/python3", (source_dir() / "tests" / "pipeline" / "read_seg.py").string(), file.string()});
  if (result.exit_code != 0) throw std::runtime_error("read_seg.py failed: " + result.output);
  return nlohmann::json::parse(result.output);
}

void write_object(const fs::path& path, const pipeline::ResultObject& object) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(object.bytes.data()), static_cast<std::streamsize>(object.bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

namespace {

struct ImageBatch : pipeline::GroundingEngine::Batch {
  std::vector<std::pair<int, int>> sizes;
  size_t size() const override { return sizes.size(); }
};

inference::GroundedSegment box_segment(int w, int h, int x0, int y0, int x1, int y1, const std::string& phrase) {
  inference::GroundedSegment s;
  s.width = w;
  s.height = h;
  s.phrase = phrase;
  s.mask.assign(size_t(w) * h, 0);
  s.probability.assign(s.mask.size(), 0.1f);
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) {
      s.mask[size_t(y) * w + x] = 1;
      s.probability[size_t(y) * w + x] = 0.9f;
    }
  s.iou = 0.8f;
  return s;
}

}  // namespace

std::unique_ptr<pipeline::GroundingEngine::Batch> BoxEngine::encode(const std::vector<inference::RgbImage>& images,
                                                                    const std::atomic<bool>*) {
  auto b = std::make_unique<ImageBatch>();
  for (const auto& im : images) {
    if (im.width == fail_width_)
      throw inference::InferenceError("box engine: refusing views " + std::to_string(im.width) + " wide");
    b->sizes.emplace_back(im.width, im.height);
  }
  timings_.images += static_cast<long>(images.size());
  return b;
}

std::vector<inference::GroundedAnswer> BoxEngine::answer(Batch& batch, const std::string& question,
                                                         const std::atomic<bool>* cancel) {
  questions.push_back(question);
  std::vector<inference::GroundedAnswer> out;
  const bool segmentation = question.rfind("Please segment", 0) == 0;
  for (const auto& [w, h] : static_cast<ImageBatch&>(batch).sizes) {
    inference::GroundedAnswer a;
    if (cancel && cancel->load()) {
      a.stop_reason = "cancelled";
      out.push_back(a);
      continue;
    }
    a.stop_reason = "eos";
    a.text = segmentation ? "It is [SEG]." : "It is [SEG]. Cyst.";
    a.parsed = inference::parse_answer(a.text, question);
    if (segmentation)
      a.segments.push_back(box_segment(w, h, w / 4, h / 4, w / 2, h / 2, a.parsed.findings.empty() ? "" : a.parsed.findings[0].phrase));
    else
      a.segments.push_back(box_segment(w, h, w / 2, h / 2, 3 * w / 4, 3 * h / 4, "Cyst"));
    out.push_back(std::move(a));
  }
  timings_.questions += static_cast<long>(out.size());
  return out;
}

}  // namespace unibiomed::test
