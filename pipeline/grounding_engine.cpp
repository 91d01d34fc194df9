// The GroundedModel-backed engine.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "pipeline/grounding_engine.h"

#include <chrono>
#include <optional>

#include "inference/device.h"
#include "inference/runtime.h"

namespace unibiomed::pipeline {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

class ModelBatch : public GroundingEngine::Batch {
 public:
  explicit ModelBatch(std::vector<std::shared_ptr<const inference::EncodedImage>> images) : images_(std::move(images)) {}
  size_t size() const override { return images_.size(); }
  const std::vector<std::shared_ptr<const inference::EncodedImage>>& images() const { return images_; }

 private:
  std::vector<std::shared_ptr<const inference::EncodedImage>> images_;
};

class ModelVideo : public GroundingEngine::VideoBatch {
 public:
  explicit ModelVideo(std::shared_ptr<const inference::EncodedVideo> video) : video_(std::move(video)) {}
  int frames() const override { return video_->frames(); }
  const inference::EncodedVideo& video() const { return *video_; }

 private:
  std::shared_ptr<const inference::EncodedVideo> video_;
};

class GroundedModelEngine : public GroundingEngine {
 public:
  GroundedModelEngine(std::unique_ptr<inference::GroundedModel> model, const EngineOptions& options)
      : model_(std::move(model)), options_(options), device_(model_->identity().device) {}

  std::unique_ptr<Batch> encode(const std::vector<inference::RgbImage>& images, const std::atomic<bool>* cancel) override {
    auto start = Clock::now();
    auto encoded = model_->encode_batch(images, cancel);
    // A GPU queues its kernels: each stage's clock stops once its work has run, not when it was
    // queued (a no-op on the CPU).
    inference::synchronize(device_);
    timings_.vision_seconds += seconds_since(start);
    // Every task family of the rules asks for masks: compute the SAM2 features now (once per
    // view, batched), so that their time is not folded into the language model's.
    start = Clock::now();
    model_->encode_grounding(encoded, cancel);
    inference::synchronize(device_);
    timings_.grounding_seconds += seconds_since(start);
    timings_.images += static_cast<long>(images.size());
    return std::make_unique<ModelBatch>(std::move(encoded));
  }

  std::vector<inference::GroundedAnswer> answer(Batch& batch, const std::string& question,
                                                const std::atomic<bool>* cancel) override {
    auto& b = static_cast<ModelBatch&>(batch);
    inference::AnswerOptions o;
    if (options_.max_new_tokens > 0) o.max_new_tokens = options_.max_new_tokens;
    o.probability_maps = true;
    o.cancel = cancel;
    o.batch_size = std::max(1, options_.batch_size);
    const auto start = Clock::now();
    auto answers = model_->answer_batch(b.images(), question, o);
    timings_.language_seconds += seconds_since(start);
    timings_.questions += static_cast<long>(b.size());
    return answers;
  }

  std::unique_ptr<VideoBatch> encode_video(const std::vector<inference::RgbImage>& frames,
                                           const std::atomic<bool>* cancel) override {
    const auto start = Clock::now();
    auto video = model_->encode_video(frames, cancel);
    inference::synchronize(device_);
    timings_.video_encoding_seconds += seconds_since(start);
    timings_.videos += 1;
    timings_.video_frames += static_cast<long>(frames.size());
    return std::make_unique<ModelVideo>(std::move(video));
  }

  inference::VideoAnswer answer_video(VideoBatch& video, const std::string& question,
                                      const inference::VideoOptions& options) override {
    auto& v = static_cast<ModelVideo&>(video);
    inference::VideoOptions o = options;
    if (options_.max_new_tokens > 0) o.max_new_tokens = options_.max_new_tokens;
    // The language model's share ends with the first propagated frame; the rest is SAM2's
    // memory propagation.
    const auto start = Clock::now();
    std::optional<Clock::time_point> first_frame;
    o.on_frame = [&, outer = options.on_frame](int done, int total) {
      if (!first_frame) first_frame = Clock::now();
      if (outer) outer(done, total);
    };
    auto answer = model_->answer_video(v.video(), question, o);
    const auto end = Clock::now();
    const auto split = first_frame.value_or(end);
    timings_.video_language_seconds += std::chrono::duration<double>(split - start).count();
    timings_.video_propagation_seconds += std::chrono::duration<double>(end - split).count();
    timings_.video_questions += 1;
    return answer;
  }

  std::string description() const override {
    const auto& id = model_->identity();
    return "UniBiomed (" + id.dir.filename().string() + ", " + std::to_string(id.parameters / 1000000) + " M parameters, " +
           id.device + " " + id.dtype + ")";
  }
  std::string weights_hash() const override { return model_->weights_hash(); }
  EngineTimings timings() const override { return timings_; }

 private:
  std::unique_ptr<inference::GroundedModel> model_;
  EngineOptions options_;
  c10::Device device_;
  EngineTimings timings_;
};

}  // namespace

std::unique_ptr<GroundingEngine> load_grounded_model(const EngineOptions& options) {
  inference::LoadOptions load;
  load.device = options.device;
  load.dtype = options.dtype;
  if (!options.tokenizer_dir.empty()) load.tokenizer_dir = options.tokenizer_dir;
  inference::configure_cpu_threads(options.threads);
  return std::make_unique<GroundedModelEngine>(inference::GroundedModel::load(options.model_dir, load), options);
}

}  // namespace unibiomed::pipeline
