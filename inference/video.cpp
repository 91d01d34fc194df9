// SPDX-License-Identifier: GPL-3.0-or-later
// Video / volume mode: predict_forward's video branch (modeling_sa2va_chat.py) with SAM2's
// memory propagation (sam2_memory.h). The language model sees the key frames, each resized whole
// to one tile; each [SEG] prompts SAM2 on every key frame and is then tracked through the other
// frames, independently of the other [SEG]s. docs/MODEL.md "Video and volume mode".
#include <torch/nn/functional.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <mutex>

#include "inference/error.h"
#include "inference/grounded_model.h"
#include "inference/grounded_model_impl.h"
#include "inference/image_preprocess.h"
#include "inference/image_resize.h"
#include "inference/prompt.h"
#include "inference/splice.h"

namespace unibiomed::inference {

// What a video keeps between questions. The SAM2 features of every frame are computed once, in
// the compute dtype: per frame the raw stride-16 level (D x S/16 x S/16), conv_s1 (D/4 x S/8 x
// S/8) and conv_s0 (D/8 x S/4 x S/4), i.e. 4 * D * (S/16)^2 values. At the released sizes
// (S = 1024, D = 256) that is 4.2 M values: 16 MiB per frame in float32, 8 MiB in bfloat16, so
// a 300-slice volume holds 4.7 GiB (float32 on the CPU) or 2.3 GiB (bfloat16 on a GPU) of
// features, plus the RGB frames themselves (kept for the key frames' tiles).
struct EncodedVideo::State {
  const void* owner = nullptr;  // the GroundedModel::Impl that made it
  int frames = 0, width = 0, height = 0;
  std::vector<RgbImage> images;
  Sam2ImageFeatures features;  // batch = frames; image_embedding WITHOUT no_mem_embed
  mutable std::mutex mutex;
  std::map<std::vector<int>, torch::Tensor> key_tokens;  // InternViT tokens per key-frame set
};

EncodedVideo::EncodedVideo(std::unique_ptr<State> state) : state_(std::move(state)) {}
EncodedVideo::~EncodedVideo() = default;
int EncodedVideo::frames() const { return state_->frames; }
int EncodedVideo::width() const { return state_->width; }
int EncodedVideo::height() const { return state_->height; }

namespace {

bool is_cancelled(const std::atomic<bool>* cancel) { return cancel && cancel->load(); }

// The reference shows the language model at most the first five frames.
constexpr int kDefaultKeyFrames = 5;

}  // namespace

std::shared_ptr<const EncodedVideo> GroundedModel::encode_video(const std::vector<RgbImage>& frames,
                                                                const std::atomic<bool>* cancel) const try {
  if (frames.empty()) throw InferenceError("video: no frames given");
  impl_->use_cpu_threads();
  c10::InferenceMode guard;
  const int n = static_cast<int>(frames.size());
  for (int i = 0; i < n; ++i) {
    const std::string what = "frame " + std::to_string(i + 1) + " of " + std::to_string(n);
    check_image_within_limit(frames[static_cast<size_t>(i)], impl_->tiling.max_pixels, what);
    if (frames[static_cast<size_t>(i)].width != frames[0].width || frames[static_cast<size_t>(i)].height != frames[0].height)
      throw InferenceError("video: " + what + " is " + std::to_string(frames[static_cast<size_t>(i)].width) + "x" +
                           std::to_string(frames[static_cast<size_t>(i)].height) + " but frame 1 is " +
                           std::to_string(frames[0].width) + "x" + std::to_string(frames[0].height) +
                           " (all frames of a video must have the same size)");
  }
  auto s = std::make_unique<EncodedVideo::State>();
  s->owner = impl_.get();
  s->frames = n;
  s->width = frames[0].width;
  s->height = frames[0].height;
  s->images = frames;
  // A few frames per SAM2 pass (about 0.6 GB of activations per 1024 px frame), written into
  // tensors allocated once for the whole video.
  constexpr int kBatch = 4;
  const int side = impl_->sam_encoder->image_size();
  for (int begin = 0; begin < n; begin += kBatch) {
    if (is_cancelled(cancel)) throw InferenceError("video encoding cancelled");
    const int end = std::min(n, begin + kBatch);
    std::vector<torch::Tensor> pixels;
    for (int i = begin; i < end; ++i)
      pixels.push_back(sam2_pixel_values(frames[static_cast<size_t>(i)], side, impl_->tiling.max_pixels,
                                         "frame " + std::to_string(i + 1)));
    const Sam2ImageFeatures f = impl_->sam_encoder->encode(torch::stack(pixels), cancel, nullptr, false);
    auto place = [&](torch::Tensor& all, const torch::Tensor& part) {
      if (!all.defined()) {
        std::vector<int64_t> shape = part.sizes().vec();
        shape[0] = n;
        all = torch::empty(shape, part.options());
      }
      all.narrow(0, begin, end - begin).copy_(part);
    };
    place(s->features.image_embedding, f.image_embedding);
    place(s->features.high_res_s0, f.high_res_s0);
    place(s->features.high_res_s1, f.high_res_s1);
  }
  return std::make_shared<const EncodedVideo>(std::move(s));
} catch (const c10::Error& e) {
  impl_->torch_error("encoding a video", e);
}

VideoAnswer GroundedModel::answer_video(const EncodedVideo& video, const std::string& question,
                                        const VideoOptions& options) const try {
  impl_->use_cpu_threads();
  c10::InferenceMode guard;
  const Impl& m = *impl_;
  EncodedVideo::State& s = video.state();
  if (s.owner != impl_.get())
    throw InferenceError("an EncodedVideo was made by another GroundedModel (encode it with this one)");
  if (!m.sam_memory)
    throw InferenceError("the checkpoint in " + m.dir.string() +
                         " has no SAM2 memory tensors (memory_encoder, memory_attention, obj_ptr_proj): video mode needs them");
  const int n = s.frames;
  std::vector<int> keys = options.key_frames;
  if (keys.empty())
    for (int i = 0; i < std::min(n, kDefaultKeyFrames); ++i) keys.push_back(i);
  for (size_t i = 0; i < keys.size(); ++i)
    if (keys[i] < 0 || keys[i] >= n || (i > 0 && keys[i] <= keys[i - 1]))
      throw InferenceError("video: key frames must be ascending, unique frame indices below " + std::to_string(n) +
                           " (frame " + std::to_string(keys[i]) + " is not)");

  if (options.prompt_every < 0)
    throw InferenceError("video: prompt_every must be 0 (key frames only) or a frame interval, not " +
                         std::to_string(options.prompt_every));
  if (options.max_prompted_in_attention >= 0 && options.max_prompted_in_attention < 2)
    throw InferenceError("video: a tracked frame attends to at least 2 prompted frames (or all: -1), not " +
                         std::to_string(options.max_prompted_in_attention));
  // SAM2's prompted (conditioning) frames: the key frames, and every prompt_every-th frame.
  std::vector<int> prompted = keys;
  if (options.prompt_every > 0) {
    for (int t = options.prompt_every / 2; t < n; t += options.prompt_every) prompted.push_back(t);
    std::sort(prompted.begin(), prompted.end());
    prompted.erase(std::unique(prompted.begin(), prompted.end()), prompted.end());
  }

  VideoAnswer a;
  a.key_frames = keys;
  a.prompted_frames = prompted;

  // InternViT tokens of the key frames: each frame resized whole to one tile (no dynamic tiling,
  // no thumbnail), cached per key-frame set.
  torch::Tensor tokens;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    auto it = s.key_tokens.find(keys);
    if (it != s.key_tokens.end()) tokens = it->second;
  }
  if (!tokens.defined()) {
    std::vector<torch::Tensor> pixels;
    for (int k : keys) {
      TiledImage tile;
      tile.grid = TileGrid{1, 1};
      tile.tile_size = m.tiling.tile_size;
      tile.resized = resize_bicubic(s.images[static_cast<size_t>(k)], m.tiling.tile_size, m.tiling.tile_size);
      pixels.push_back(internvl_pixel_values(tile));
    }
    tokens = m.vision->encode(torch::cat(pixels, 0));
    std::lock_guard<std::mutex> lock(s.mutex);
    s.key_tokens.emplace(keys, tokens);
  }

  const std::string text = build_prompt(question_with_image(question), std::vector<int>(keys.size(), 1),
                                        static_cast<int>(m.vision->tokens_per_tile()), m.config.template_name);
  const std::vector<int64_t> ids = m.tokenizer->encode(text);
  const torch::Tensor text_embeds =
      m.llm->embed(torch::tensor(ids, torch::TensorOptions().dtype(torch::kLong)).view({1, -1})).squeeze(0);
  const torch::Tensor embeds = splice_image_embeddings(text_embeds, ids, m.image_context_id, tokens).unsqueeze(0);
  const GenerationResult r =
      generate_greedy(*m.llm, *m.tokenizer, embeds, m.generation_options(options.max_new_tokens, options.cancel, ids.size()))
          .front();
  a.ids = r.ids;
  a.text = r.prediction();
  a.stop_reason = stop_reason_name(r.stop_reason);
  a.parsed = parse_answer(a.text, question);
  if (r.stop_reason == StopReason::kCancelled || r.seg_hidden_states.size(0) == 0) return a;

  const torch::Tensor language = (*m.seg_head)(r.seg_hidden_states);
  const int64_t segs = language.size(0);
  const int forward_frames = n - prompted.front();
  const int per_seg = forward_frames + (options.both_directions ? prompted.front() : 0);
  const int total = static_cast<int>(segs) * per_seg;
  int done = 0;
  const Sam2ImageFeatures& all = s.features;
  auto features = [&](int t) { return all.select(t); };
  const size_t pixels = static_cast<size_t>(s.width) * static_cast<size_t>(s.height);

  for (int64_t k = 0; k < segs; ++k) {
    TrackOptions o;
    o.conditioning_frames = prompted;
    o.max_conditioning_in_attention = options.max_prompted_in_attention;
    o.both_directions = options.both_directions;
    o.cancel = options.cancel;
    o.after_frame = [&] {
      ++done;
      if (options.on_frame) options.on_frame(done, total);
    };
    const TrackResult tr = track_object(*m.sam_decoder, *m.sam_memory, m.sam_encoder->no_mem_embed(), n, features,
                                        language.narrow(0, k, 1), o);
    if (tr.cancelled || is_cancelled(options.cancel)) {
      a.stop_reason = stop_reason_name(StopReason::kCancelled);
      a.segments.clear();
      return a;
    }
    VideoSegment seg;
    seg.seg_index = static_cast<int>(k);
    for (const auto& f : a.parsed.findings)
      if (f.seg_index == k) seg.phrase = f.phrase;
    seg.width = s.width;
    seg.height = s.height;
    seg.masks.resize(static_cast<size_t>(n));
    if (options.probability_maps) seg.probability.resize(static_cast<size_t>(n));
    seg.iou.assign(static_cast<size_t>(n), 0.0f);
    seg.object_score.assign(static_cast<size_t>(n), 0.0f);
    seg.tracked.assign(static_cast<size_t>(n), 0);
    for (int t = 0; t < n; ++t) {
      const TrackedFrame& f = tr.frames[static_cast<size_t>(t)];
      auto& mask = seg.masks[static_cast<size_t>(t)];
      if (!f.tracked) {
        mask.assign(pixels, 0);
        if (options.probability_maps) seg.probability[static_cast<size_t>(t)].assign(pixels, 0.0f);
        continue;
      }
      seg.tracked[static_cast<size_t>(t)] = 1;
      seg.iou[static_cast<size_t>(t)] = f.iou;
      seg.object_score[static_cast<size_t>(t)] = f.object_score;
      // Two bilinear steps as the reference: low-res -> S x S -> H x W, then sigmoid > 0.5.
      const torch::Tensor logits = m.sam_decoder->upsample(f.low_res, s.height, s.width).to(torch::kCPU);
      const torch::Tensor prob = torch::sigmoid(logits).contiguous();
      const torch::Tensor bin = (prob > 0.5).to(torch::kUInt8).contiguous();
      const uint8_t* b = bin.data_ptr<uint8_t>();
      mask.assign(b, b + pixels);
      if (options.probability_maps) {
        const float* p = prob.data_ptr<float>();
        seg.probability[static_cast<size_t>(t)].assign(p, p + pixels);
      }
    }
    a.segments.push_back(std::move(seg));
  }
  return a;
} catch (const c10::Error& e) {
  impl_->torch_error("answering about a video", e);
}

}  // namespace unibiomed::inference
