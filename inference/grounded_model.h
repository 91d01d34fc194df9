// The whole UniBiomed model behind one API: an image and a question in, the answer text and one
// mask per [SEG] out (modeling_sa2va_chat.py predict_forward). This is the header the pipeline
// and the Orthanc plugin include, so it holds no libtorch types.
//
//   auto model = GroundedModel::load("/models/UniBiomed", {"cuda", "auto"});
//   auto image = model->encode(rgb);                       // InternViT tiles; SAM2 on first [SEG]
//   GroundedAnswer a = model->answer(*image, "Please segment liver in CT.");
//   GroundedAnswer b = model->answer(*image, "Please segment spleen in CT.");  // no re-encoding
//   auto slices = model->answer_batch(images, "Please segment liver in CT.");  // many images
//
// The SAM2 image features of an EncodedImage are computed the first time one of its answers
// contains a [SEG] and then kept with it, so every [SEG] of every question reuses them (the
// reference re-encodes the image for each [SEG]).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "inference/answer_parser.h"
#include "inference/image.h"
#include "inference/model_config.h"

namespace unibiomed::inference {

struct LoadOptions {
  std::string device = "cpu";  // "cpu", "cuda", "cuda:N"
  std::string dtype = "auto";  // "auto" (bfloat16 on CUDA and on CPUs with bfloat16 dot products, else float32), "float32", "bfloat16", "float16"
  // Tokenizer files from another folder (default: the model folder).
  std::optional<std::filesystem::path> tokenizer_dir;
};

struct AnswerOptions {
  int max_new_tokens = 2048;                  // the reference's default
  bool probability_maps = true;               // fill GroundedSegment::probability
  const std::atomic<bool>* cancel = nullptr;  // checked between decode steps and encoder blocks
  int batch_size = 8;                         // answer_batch: images decoded together
};

// One [SEG] of an answer and its mask at the image's original size.
struct GroundedSegment {
  int seg_index = 0;   // 0-based order of the [SEG] token in the answer
  std::string phrase;  // what it grounds (parse_answer), may be empty
  int width = 0, height = 0;
  std::vector<uint8_t> mask;       // height x width, row-major: 1 where sigmoid(logit) > 0.5
  std::vector<float> probability;  // height x width sigmoid(logit); empty unless asked for
  float iou = 0;                   // the decoder's predicted IoU of the chosen mask (0..1)
  float object_score = 0;          // object-score logit; reported, not applied (as the reference)
  int64_t area() const;            // mask pixels set
};

struct GroundedAnswer {
  std::string text;           // predict_forward's prediction: the decoded answer, stripped
  std::vector<int64_t> ids;   // the generated ids (the eos token included when it stopped there)
  std::string stop_reason;    // "eos", "stop_word", "max_new_tokens" or "cancelled"
  std::vector<GroundedSegment> segments;  // one per [SEG] that has a hidden state, in order
  ParsedAnswer parsed;        // the findings of the text (phrases per [SEG])
  bool cancelled() const { return stop_reason == "cancelled"; }
};

// An image prepared for questions: its InternVL image tokens, and its SAM2 features once a
// [SEG] needed them. Thread-safe; shareable between threads.
class EncodedImage {
 public:
  struct State;  // libtorch tensors, defined in grounded_model.cpp
  explicit EncodedImage(std::unique_ptr<State> state);
  ~EncodedImage();
  int width() const;
  int height() const;
  int tiles() const;                 // InternVL tiles incl. the thumbnail
  bool has_grounding_features() const;  // SAM2 features computed already
  State& state() const { return *state_; }

 private:
  std::unique_ptr<State> state_;
};

// ---- Video / volume mode (SAM2 memory propagation) ------------------------------------------
// The frames of one series (slices of a volume, frames of a cine or clip), all the same size.
// The language model sees a few key frames, each [SEG] prompts SAM2 on those, and SAM2's memory
// (memory encoder, memory attention, object pointers) tracks the object through every other
// frame. docs/MODEL.md ("Video and volume mode") describes the reference behaviour.
struct VideoOptions {
  // Frames shown to the language model, ascending, each resized whole to one 448 tile. Empty =
  // the reference: the first min(5, N) frames.
  std::vector<int> key_frames;
  // false = the reference: propagate forward only, from the first key frame to the last frame
  // (frames before the first key frame get empty masks). true = forward from the key frames to
  // the last frame AND backward from them to frame 0, so every frame is tracked.
  bool both_directions = false;
  // 0 = the reference: SAM2 gets the answer's [SEG] as its prompt on the key frames only, and
  // tracks every other frame from them. N > 0: also on every Nth frame (frames N/2, N/2 + N, ...),
  // each answered as an image (no memory), so that no tracked frame is more than about N/2 frames
  // from a prompted one: a small structure that lies between two key frames, or at the edge of
  // one, is not lost between them. The language model still sees the key frames only.
  int prompt_every = 0;
  // How many prompted frames a tracked frame attends to: -1 = all (the reference), else the
  // nearest ones (at least 2: the nearest before and after it, SAM2's max_cond_frames_in_attn).
  // With prompt_every over a long series, all of them would make every tracked frame attend to
  // a memory that grows with the series.
  int max_prompted_in_attention = -1;
  int max_new_tokens = 2048;
  bool probability_maps = false;              // fill VideoSegment::probability
  const std::atomic<bool>* cancel = nullptr;  // checked between decode steps and between frames
  // Called after each propagated frame (frames done, frames in all) for progress; may be empty.
  std::function<void(int, int)> on_frame;
};

// One [SEG] of a video answer: a mask per frame at the frames' size.
struct VideoSegment {
  int seg_index = 0;   // 0-based order of the [SEG] token in the answer
  std::string phrase;  // what it grounds (parse_answer), may be empty
  int width = 0, height = 0;
  std::vector<std::vector<uint8_t>> masks;       // [frame] height x width, 1 where sigmoid > 0.5
  std::vector<std::vector<float>> probability;   // [frame] sigmoid; empty unless asked for
  std::vector<float> iou;                        // [frame] predicted IoU of the chosen mask
  std::vector<float> object_score;               // [frame] object-score logit
  // [frame] 1 where SAM2 segmented the frame; 0 for frames it never reached (before the first
  // key frame without both_directions): their mask is empty and iou/object_score are 0.
  std::vector<uint8_t> tracked;
};

struct VideoAnswer {
  std::string text;
  std::vector<int64_t> ids;
  std::string stop_reason;  // as GroundedAnswer
  std::vector<int> key_frames;  // the frames the language model saw
  // The frames SAM2 got the [SEG] prompt on (the key frames, and every prompt_every-th frame);
  // the others were tracked.
  std::vector<int> prompted_frames;
  std::vector<VideoSegment> segments;
  ParsedAnswer parsed;
  bool cancelled() const { return stop_reason == "cancelled"; }
};

// The frames of a video prepared for questions: the SAM2 image features of every frame,
// computed once and shared by every [SEG] of every question on it. Thread-safe.
class EncodedVideo {
 public:
  struct State;  // libtorch tensors, defined in the video implementation
  explicit EncodedVideo(std::unique_ptr<State> state);
  ~EncodedVideo();
  int frames() const;
  int width() const;
  int height() const;
  State& state() const { return *state_; }

 private:
  std::unique_ptr<State> state_;
};

// Where the weights come from and what they are, for logs, `model info` and the SR.
struct ModelIdentity {
  std::filesystem::path dir;
  std::string device, dtype;
  int64_t parameters = 0;               // in the checkpoint
  std::vector<std::string> unused;      // tensors no part asked for (beyond the video-only ones)
  std::vector<std::string> video_only;  // SAM2 memory/video tensors present but not used in 2D
};

class GroundedModel {
 public:
  // Reads config.json, the checkpoint (model.safetensors or a sharded index) and the tokenizer
  // from `dir`. InferenceError says which piece is missing or wrong.
  static std::unique_ptr<GroundedModel> load(const std::filesystem::path& dir, const LoadOptions& options = {});
  ~GroundedModel();
  GroundedModel(const GroundedModel&) = delete;
  GroundedModel& operator=(const GroundedModel&) = delete;

  // The InternVL image tokens of each image (tiles of all images encoded as one batch).
  std::shared_ptr<const EncodedImage> encode(const RgbImage& image, const std::atomic<bool>* cancel = nullptr) const;
  std::vector<std::shared_ptr<const EncodedImage>> encode_batch(const std::vector<RgbImage>& images,
                                                                const std::atomic<bool>* cancel = nullptr) const;

  // `question` is the user text as predict_forward takes it; "<image>" is put in front when it
  // has none. Cancellation gives an answer with stop_reason "cancelled" and no segments.
  GroundedAnswer answer(const EncodedImage& image, const std::string& question, const AnswerOptions& options = {}) const;
  GroundedAnswer answer(const RgbImage& image, const std::string& question, const AnswerOptions& options = {}) const;
  // The same question on many images (the slices of a series): images with the same number of
  // tiles are decoded together, options.batch_size at a time. One answer per image, in order.
  std::vector<GroundedAnswer> answer_batch(const std::vector<std::shared_ptr<const EncodedImage>>& images,
                                           const std::string& question, const AnswerOptions& options = {}) const;
  std::vector<GroundedAnswer> answer_batch(const std::vector<RgbImage>& images, const std::string& question,
                                           const AnswerOptions& options = {}) const;

  // Video mode. encode_video keeps the frames (for the key frames' 448 tiles) and computes the
  // SAM2 features of every frame; answer_video asks one question about the whole video.
  // InferenceError on frames of different sizes or an empty list; a bad key frame index too.
  std::shared_ptr<const EncodedVideo> encode_video(const std::vector<RgbImage>& frames,
                                                   const std::atomic<bool>* cancel = nullptr) const;
  VideoAnswer answer_video(const EncodedVideo& video, const std::string& question,
                           const VideoOptions& options = {}) const;

  // Computes the SAM2 features of images that lack them (batched); answer() does it on demand.
  void encode_grounding(const std::vector<std::shared_ptr<const EncodedImage>>& images,
                        const std::atomic<bool>* cancel = nullptr) const;

  const ModelConfig& config() const;
  const ModelIdentity& identity() const;
  // SHA-256 of the safetensors file(s) (weights_hash.h), computed on first use and cached.
  std::string weights_hash() const;

  struct Impl;

 private:
  explicit GroundedModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "<image>" + question unless the question already contains "<image>".
std::string question_with_image(const std::string& question);

}  // namespace unibiomed::inference
