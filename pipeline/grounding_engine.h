// What the pipeline needs of the model: encode a batch of views once, then ask every question
// of the plan about them (MODEL.md: encoders run once per view, every [SEG] reuses them). The
// implementation on inference::GroundedModel is the one the node uses; the interface lets the
// benchmark split the time by stage and the tests drive the pipeline with a scripted engine
// whose masks are known in advance.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "inference/grounded_model.h"
#include "inference/image.h"

namespace unibiomed::pipeline {

// Seconds spent per stage, summed over every call.
struct EngineTimings {
  double vision_seconds = 0;     // InternViT + projector (image tokens)
  double grounding_seconds = 0;  // SAM2 image encoder
  double language_seconds = 0;   // prompt prefill, decoding, [SEG] -> mask decoding
  long images = 0;
  long questions = 0;            // question x image pairs
  double video_encoding_seconds = 0;    // video mode: SAM2 features of every frame
  double video_language_seconds = 0;    // video mode: key frames' tokens, prefill, decoding
  double video_propagation_seconds = 0; // video mode: [SEG] -> masks through every frame
  long videos = 0;                      // videos encoded
  long video_frames = 0;                // their frames
  long video_questions = 0;             // questions asked of a video
};

class GroundingEngine {
 public:
  // Encoded views; valid until destroyed.
  class Batch {
   public:
    virtual ~Batch() = default;
    virtual size_t size() const = 0;
  };

  // The frames of one video (the slices of a volume, the frames of a cine), encoded once for
  // every question asked of it; valid until destroyed.
  class VideoBatch {
   public:
    virtual ~VideoBatch() = default;
    virtual int frames() const = 0;
  };

  virtual ~GroundingEngine() = default;
  // Throws inference::InferenceError (or the engine's error) on failure; a cancellation while
  // encoding throws too.
  virtual std::unique_ptr<Batch> encode(const std::vector<inference::RgbImage>& images,
                                        const std::atomic<bool>* cancel) = 0;
  // One answer per image of the batch, in order. `question` is the user text ("<image>" is put
  // in front when absent). A cancelled answer has stop_reason "cancelled".
  virtual std::vector<inference::GroundedAnswer> answer(Batch& batch, const std::string& question,
                                                        const std::atomic<bool>* cancel) = 0;
  // Video mode (SAM2 memory propagation, inference/grounded_model.h): the frames, all of one
  // size, in order. Throws inference::InferenceError (or the engine's error) on failure.
  virtual std::unique_ptr<VideoBatch> encode_video(const std::vector<inference::RgbImage>& frames,
                                                   const std::atomic<bool>* cancel) = 0;
  // One question of the whole video: the language model sees options.key_frames, each [SEG]
  // is tracked through every frame. options.cancel is checked between frames; a cancelled
  // answer has stop_reason "cancelled". options.on_frame reports progress.
  virtual inference::VideoAnswer answer_video(VideoBatch& video, const std::string& question,
                                              const inference::VideoOptions& options) = 0;
  virtual std::string description() const = 0;
  virtual std::string weights_hash() const = 0;
  virtual EngineTimings timings() const = 0;
};

struct EngineOptions {
  std::filesystem::path model_dir;
  std::filesystem::path tokenizer_dir;  // empty = model_dir
  std::string device = "cpu";
  std::string dtype = "auto";
  int threads = 0;           // torch threads; 0 = the machine's cores
  int max_new_tokens = 0;    // 0 = the model's default (2048)
  int batch_size = 8;        // images decoded together
};

// The node's engine: inference::GroundedModel, SAM2 features computed eagerly per batch so that
// its time is measured apart from the language model's. Throws inference::InferenceError naming
// the folder and the missing piece.
std::unique_ptr<GroundingEngine> load_grounded_model(const EngineOptions& options);

}  // namespace unibiomed::pipeline
