// The GroundedModel-backed engine.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "pipeline/grounding_engine.h"

#include <chrono>

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

class GroundedModelEngine : public GroundingEngine {
 public:
  GroundedModelEngine(std::unique_ptr<inference::GroundedModel> model, const EngineOptions& options)
      : model_(std::move(model)), options_(options) {}

  std::unique_ptr<Batch> encode(const std::vector<inference::RgbImage>& images, const std::atomic<bool>* cancel) override {
    auto start = Clock::now();
    auto encoded = model_->encode_batch(images, cancel);
    timings_.vision_seconds += seconds_since(start);
    // Every task family of the rules asks for masks: compute the SAM2 features now (once per
    // view, batched), so that their time is not folded into the language model's.
    start = Clock::now();
    model_->encode_grounding(encoded, cancel);
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
