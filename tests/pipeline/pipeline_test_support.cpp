// SPDX-License-Identifier: GPL-3.0-or-later
#include "tests/pipeline/pipeline_test_support.h"

#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dctk.h>

#include <algorithm>
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

pipeline::InstanceInput sample_us_copy(const fs::path& dir, int number, bool still) {
  const fs::path cine = fixture_data().sample("us").files.at(0);
  DcmFileFormat file;
  if (file.loadFile(cine.c_str()).bad()) throw std::runtime_error("cannot read " + cine.string());
  DcmDataset& ds = *file.getDataset();
  const std::string uid = "1.2.826.0.1.3680043.10.1082.7." + std::to_string(number);
  if (still) {
    Uint16 rows = 0, columns = 0;
    const Uint8* pixels = nullptr;
    if (ds.findAndGetUint16(DCM_Rows, rows).bad() || ds.findAndGetUint16(DCM_Columns, columns).bad() ||
        ds.findAndGetUint8Array(DCM_PixelData, pixels).bad())
      throw std::runtime_error(cine.string() + " is not the 8-bit cine the sample writer writes");
    const std::vector<Uint8> first(pixels, pixels + size_t(rows) * columns);
    ds.putAndInsertUint8Array(DCM_PixelData, first.data(), Uint32(first.size()));
    for (const DcmTagKey& tag : {DCM_NumberOfFrames, DCM_FrameTime, DCM_FrameIncrementPointer}) delete ds.remove(tag);
    ds.putAndInsertString(DCM_SOPClassUID, UID_UltrasoundImageStorage);
    file.getMetaInfo()->putAndInsertString(DCM_MediaStorageSOPClassUID, UID_UltrasoundImageStorage);
  }
  ds.putAndInsertString(DCM_SOPInstanceUID, uid.c_str());
  ds.putAndInsertString(DCM_InstanceNumber, std::to_string(number).c_str());
  file.getMetaInfo()->putAndInsertString(DCM_MediaStorageSOPInstanceUID, uid.c_str());
  fs::create_directories(dir);
  const fs::path path = dir / ("instance-" + std::to_string(number) + ".dcm");
  if (file.saveFile(path.c_str(), EXS_LittleEndianExplicit).bad())
    throw std::runtime_error("cannot write " + path.string());
  return file_inputs({path}).front();
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
    if (segmentation) {
      a.segments.push_back(box_segment(w, h, w / 4, h / 4, w / 2, h / 2, a.parsed.findings.empty() ? "" : a.parsed.findings[0].phrase));
      if (pair_apart > 0) {
        auto& s = a.segments.back();
        const int shift = w / 4 + std::min(pair_apart, w / 4);
        for (int y = h / 4; y < h / 2; ++y)
          for (int x = w / 4 + shift; x < w / 2 + shift && x < w; ++x)
            s.mask[size_t(y) * w + x] = 1, s.probability[size_t(y) * w + x] = 0.9f;
      }
      if (split_boxes) {
        const int gap = w / 4 + (w / 4) * 2 / 3;
        auto& s = a.segments.back();
        for (int y = h / 4; y < h / 2; ++y)
          for (int x = gap; x < gap + 2; ++x) s.mask[size_t(y) * w + x] = 0, s.probability[size_t(y) * w + x] = 0.1f;
      }
    } else
      a.segments.push_back(box_segment(w, h, w / 2, h / 2, 3 * w / 4, 3 * h / 4, "Cyst"));
    out.push_back(std::move(a));
  }
  timings_.questions += static_cast<long>(out.size());
  return out;
}

namespace {

struct FrameVideo : pipeline::GroundingEngine::VideoBatch {
  int count = 0, width = 0, height = 0;
  int frames() const override { return count; }
};

}  // namespace

std::unique_ptr<pipeline::GroundingEngine::VideoBatch> BoxEngine::encode_video(
    const std::vector<inference::RgbImage>& frames, const std::atomic<bool>*) {
  if (video_fails) throw inference::InferenceError("video mode is not implemented yet");
  if (frames.empty()) throw inference::InferenceError("box engine: a video without frames");
  auto v = std::make_unique<FrameVideo>();
  v->count = static_cast<int>(frames.size());
  v->width = frames.front().width;
  v->height = frames.front().height;
  for (size_t i = 0; i < frames.size(); ++i)
    if (frames[i].width != v->width || frames[i].height != v->height)
      throw inference::InferenceError("box engine: frame " + std::to_string(i) + " is " + std::to_string(frames[i].width) +
                                      "x" + std::to_string(frames[i].height) + ", frame 0 " + std::to_string(v->width) +
                                      "x" + std::to_string(v->height));
  if (v->width == fail_width_)
    throw inference::InferenceError("box engine: refusing views " + std::to_string(v->width) + " wide");
  video_frame_counts.push_back(v->count);
  timings_.videos += 1;
  timings_.video_frames += v->count;
  return v;
}

inference::VideoAnswer BoxEngine::answer_video(VideoBatch& video, const std::string& question,
                                               const inference::VideoOptions& options) {
  const auto& v = static_cast<FrameVideo&>(video);
  questions.push_back(question);
  std::vector<int> keys = options.key_frames;
  if (keys.empty())
    for (int i = 0; i < std::min(5, v.count); ++i) keys.push_back(i);
  for (int k : keys)
    if (k < 0 || k >= v.count) throw inference::InferenceError("box engine: key frame " + std::to_string(k) + " out of range");
  video_key_frames.push_back(keys);
  video_both_directions.push_back(options.both_directions);
  inference::VideoAnswer a;
  a.key_frames = keys;
  const bool segmentation = question.rfind("Please segment", 0) == 0;
  if (segmentation) {
    a.text = "It is [SEG].";
  } else {
    a.text = "It is [SEG]. Cyst.";
    for (int k = 1; k < video_segments; ++k) a.text += " [SEG]. Cyst.";
  }
  a.parsed = inference::parse_answer(a.text, question);
  const int w = v.width, h = v.height;
  const int segments = segmentation ? 1 : std::max(1, video_segments);
  for (int k = 0; k < segments; ++k) {
    inference::VideoSegment s;
    s.seg_index = k;
    s.phrase = segmentation ? (a.parsed.findings.empty() ? "" : a.parsed.findings[0].phrase) : "Cyst";
    s.width = w;
    s.height = h;
    s.masks.assign(static_cast<size_t>(v.count), std::vector<uint8_t>(size_t(w) * h, 0));
    if (options.probability_maps) s.probability.assign(static_cast<size_t>(v.count), std::vector<float>(size_t(w) * h, 0.1f));
    s.iou.assign(static_cast<size_t>(v.count), 0.8f);
    s.object_score.assign(static_cast<size_t>(v.count), 5.0f);
    s.tracked.assign(static_cast<size_t>(v.count), 0);
    a.segments.push_back(std::move(s));
  }
  const int first = options.both_directions ? 0 : keys.front();
  for (int t = 0; t < v.count; ++t) {
    if (options.cancel && options.cancel->load()) {
      a.stop_reason = "cancelled";
      return a;
    }
    if (t >= first)
      for (int k = 0; k < segments; ++k) {
        auto& s = a.segments[static_cast<size_t>(k)];
        s.tracked[size_t(t)] = 1;
        int x0 = segmentation ? w / 4 : w / 2, y0 = segmentation ? h / 4 : h / 2;
        const int bw = w / 4, bh = std::max(1, h / 4 / segments);
        y0 += k * bh;
        if (video_moving) x0 = (t * 2 * bw) % std::max(1, w - bw);
        // A pair: the same box again, moved right by w/4 + pair_apart.
        const int copies = segmentation && pair_apart > 0 ? 2 : 1;
        for (int c = 0; c < copies; ++c) {
          const int shift = c ? w / 4 + std::min(pair_apart, w / 4) : 0;
          for (int y = y0; y < std::min(h, y0 + bh); ++y)
            for (int x = x0 + shift; x < std::min(w, x0 + shift + bw); ++x) {
              s.masks[size_t(t)][size_t(y) * w + x] = 1;
              if (!s.probability.empty()) s.probability[size_t(t)][size_t(y) * w + x] = 0.9f;
            }
        }
      }
    ++frames_propagated;
    if (options.on_frame) options.on_frame(t + 1, v.count);
  }
  a.stop_reason = "eos";
  timings_.video_questions += 1;
  return a;
}

}  // namespace unibiomed::test
