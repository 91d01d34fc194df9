// Shared by the pipeline's analysis tests: the sample studies and tiny checkpoint written once
// per process, validators (dciodvfy, pixelmed), the pydicom SEG reader, and an engine whose
// masks are known in advance.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pipeline/analyzer.h"
#include "pipeline/grounding_engine.h"
#include "samples/sample_studies.h"
#include "tests/support/validators.h"  // dciodvfy_errors, pixelmed_sr_errors

namespace unibiomed::test {

// Written once per test process under a temporary folder (removed at exit): the sample studies
// (small CT) and a tiny random checkpoint of the real layout.
struct PipelineFixtureData {
  std::filesystem::path root;
  std::vector<samples::SampleSeries> samples;
  std::filesystem::path tiny_model;
  const samples::SampleSeries& sample(const std::string& name) const;
  std::vector<pipeline::InstanceInput> inputs(const std::string& name) const;
};
const PipelineFixtureData& fixture_data();

std::vector<pipeline::InstanceInput> file_inputs(const std::vector<std::filesystem::path>& files);

// A copy of the sample ultrasound cine in `dir` as instance `number` of the same series, with its
// own SOP Instance UID; `still`: its first frame alone, as an Ultrasound Image (a still beside
// the cine, as scanners store them).
pipeline::InstanceInput sample_us_copy(const std::filesystem::path& dir, int number, bool still);

// tests/pipeline/read_seg.py on a SEG file (pydicom).
nlohmann::json read_seg_with_pydicom(const std::filesystem::path& file);

void write_object(const std::filesystem::path& path, const pipeline::ResultObject& object);

// An engine that answers like the model would, with masks at places fixed in view coordinates,
// so that where they must land on the source frames is known: for segmentation prompts
// "It is [SEG]." with the box [w/4, w/2) x [h/4, h/2) of the view; for other prompts
// "It is [SEG]. Cyst." with the box [w/2, 3w/4) x [h/2, 3h/4). `fail_width` makes it throw for
// views of that width (a series that fails). Not a model: it exercises everything around it.
class BoxEngine : public pipeline::GroundingEngine {
 public:
  explicit BoxEngine(int fail_width = -1) : fail_width_(fail_width) {}
  std::unique_ptr<Batch> encode(const std::vector<inference::RgbImage>& images, const std::atomic<bool>* cancel) override;
  std::vector<inference::GroundedAnswer> answer(Batch& batch, const std::string& question,
                                                const std::atomic<bool>* cancel) override;
  // Video mode: the same boxes on every frame, one tracked object per [SEG]; with
  // `video_moving`, the box of frame t moves right by its own width every frame (frames where
  // it would leave the view get none), so that no two frames' masks touch: connected
  // components would make one finding per frame, tracking makes one. `video_segments` [SEG]s
  // per answer (the k-th box shifted down by k times its height). Checks the cancel flag
  // before every frame and reports each frame through on_frame.
  std::unique_ptr<VideoBatch> encode_video(const std::vector<inference::RgbImage>& frames,
                                           const std::atomic<bool>* cancel) override;
  inference::VideoAnswer answer_video(VideoBatch& video, const std::string& question,
                                      const inference::VideoOptions& options) override;
    std::string description() const override { return "box engine (tests)"; }
  std::string weights_hash() const override { return std::string(64, '0'); }
  pipeline::EngineTimings timings() const override { return timings_; }
  std::vector<std::string> questions;  // every question asked, in order
  // The segmentation box falls apart into two pieces, a larger left and a smaller right one: its
  // columns from two thirds of its width on, two pixels wide, are left out.
  bool split_boxes = false;
  // > 0: the segmentation answer is two boxes of the same size, [w/4, w/2) and that box moved
  // right by w/4 + this many view columns (at most w/4): a structure on both sides.
  int pair_apart = 0;
  bool video_moving = false;
  int video_segments = 1;
  bool video_fails = false;            // encode_video throws InferenceError ("not implemented")
  std::vector<int> video_frame_counts;  // per encode_video, its frames
  std::vector<std::vector<int>> video_key_frames;  // per answer_video, the key frames asked for
  std::vector<bool> video_both_directions;         // per answer_video
  int frames_propagated = 0;            // on_frame calls

 private:
  int fail_width_;
  pipeline::EngineTimings timings_;
};

}  // namespace unibiomed::test
