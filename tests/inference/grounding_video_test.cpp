// Video / volume mode against tests/reference/video.* (the original video branch on the tiny
// checkpoint): the memory encoder, memory attention, object pointer and position encodings block
// by block from the recorded inputs; the whole propagation from the frames' pixels (memory bank
// contents, per-frame masks, IoUs, object scores, pointers, stored bfloat16 memories); answer_video
// end to end (ids, text, stop reason, masks of every [SEG]); then the behaviour the reference does
// not cover: a bounded memory bank, backward tracking, errors, progress and cancellation.
// Every fact of the reference (frame count and size, which frames are conditioning, propagated or
// recorded in detail, the answer and how it stopped, the number of [SEG]s, the sign of each object
// score) is read from video.json and video.safetensors, so the tests hold for any set made by the
// same generator (UNIBIOMED_REFERENCE_DIR; test_inference_video_variant_7 runs them on the first
// seven frames, scripts/reference-variant.py).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "inference/checkpoint_layout.h"
#include "inference/error.h"
#include "inference/grounded_model.h"
#include "inference/image_preprocess.h"
#include "inference/model_config.h"
#include "inference/random_checkpoint.h"
#include "inference/sam2_image_encoder.h"
#include "inference/sam2_mask_decoder.h"
#include "inference/sam2_memory.h"
#include "inference/tokenizer.h"
#include "tests/inference/grounding_test_support.h"
#include "tests/inference/reference_answer_support.h"
#include "tests/support/test_support.h"

namespace unibiomed::inference {
namespace {

namespace fs = std::filesystem;
using test::close;
using test::GoldenTensors;

// Tolerances of tests/reference/README.md (video): block tests from recorded inputs, conditioning
// frames, propagated frames (the bf16 memory re-rounding lets 1e-6 noise grow along the video).
constexpr double kBlock = 1e-5;
constexpr double kConditioning = 1e-4;
constexpr double kPropagated = 1e-3;

RgbImage frame_of(const torch::Tensor& frames_u8, int64_t t) {
  const auto f = frames_u8[t].contiguous();
  RgbImage im(static_cast<int>(f.size(1)), static_cast<int>(f.size(0)));
  std::memcpy(im.rgb.data(), f.data_ptr<uint8_t>(), im.rgb.size());
  return im;
}

// Stored bfloat16 memories (README fact 20): the reference rounds its float32 value r to
// bfloat16, we round ours, a. With |a - r| <= fp32_tol (the float32 tolerance of the stage that
// made them), the two roundings differ by at most fp32_tol plus one bfloat16 ulp of e; near zero,
// where an ulp is tiny, float32 noise alone may move the rounded value by several ulps, so one
// ulp without fp32_tol would fail a correct implementation on another reference set. Prints how
// many values differ at all and how many by more than one ulp.
::testing::AssertionResult within_bf16_ulp(const std::string& what, const torch::Tensor& actual,
                                           const torch::Tensor& expected, double fp32_tol) {
  auto a = actual.to(torch::kCPU, torch::kFloat64).contiguous();
  auto e = expected.to(torch::kCPU, torch::kFloat64).contiguous();
  if (a.sizes() != e.sizes()) return ::testing::AssertionFailure() << what << ": shape " << a.sizes() << " vs " << e.sizes();
  auto mag = e.abs().clamp_min(1e-30);
  auto ulp = torch::pow(2.0, torch::floor(torch::log2(mag)) - 7);
  auto diff = (a - e).abs();
  const int64_t differ = (diff > 0).sum().item<int64_t>();
  const int64_t beyond_ulp = (diff > ulp * 1.0000001).sum().item<int64_t>();
  const auto excess = diff - (ulp * 1.0000001 + fp32_tol);
  const int64_t bad = (excess > 0).sum().item<int64_t>();
  std::cout << "[ compare  ] " << what << ": " << differ << " of " << a.numel() << " bf16 values differ, " << beyond_ulp
            << " by more than one ulp; max abs " << diff.max().item<double>() << " (tolerance one ulp + " << fp32_tol
            << ")\n";
  if (bad) {
    const auto worst = excess.argmax().item<int64_t>();
    return ::testing::AssertionFailure() << what << ": " << bad << " values more than one bf16 ulp + " << fp32_tol
                                         << " away (worst: " << a.view(-1)[worst].item<double>() << " vs "
                                         << e.view(-1)[worst].item<double>() << " at flat index " << worst << ")";
  }
  return ::testing::AssertionSuccess();
}

// ---- What video.json says about the reference run ----------------------------------------------
// The frames whose inputs and intermediate tensors the reference recorded (seg<k>.frame<t>.*).
constexpr const char* kDetailFrames =
    "detail_frames_(vision_feat, pix_feat_with_mem, memattn inputs, video_res_mask_logits)";

std::vector<int> ints(const nlohmann::json& rec, const std::string& key) {
  return rec.at(key).get<std::vector<int>>();
}
bool contains(const std::vector<int>& v, int x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}
std::string seg_prefix(int seg) {
  return "seg" + std::to_string(seg) + ".";
}
std::string frame_prefix(int seg, int t) {
  return seg_prefix(seg) + "frame" + std::to_string(t) + ".";
}

// How the reference's generation stopped: the stopping rule of reference_answer_support.h over
// its ids, with the chat template's stop words (video.json does not repeat them; e2e.json, from
// the same template, lists them). The recorded ids must stop exactly at their end.
std::string expected_stop_reason(const nlohmann::json& rec, const std::vector<int64_t>& ids,
                                 const Tokenizer& tokenizer) {
  const auto stop_words = test::reference_json("e2e.json").at("stop_words").get<std::vector<std::string>>();
  const test::GreedyStop s = test::first_stop(ids, tokenizer, rec.at("eos_token_id").get<int64_t>(), stop_words,
                                              rec.at("max_new_tokens").get<int>());
  EXPECT_EQ(s.length, ids.size()) << "video.json: the generated ids stop before their end";
  EXPECT_FALSE(s.reason.empty()) << "video.json: the generated ids end before any stopping criterion";
  return s.reason;
}

// The SAM2 parts of the reference checkpoint, and the SAM2 features of the reference's frames.
class VideoBlocks : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::have_reference() || !test::test_device_usable()) return;  // SetUp fails each test
    const fs::path dir = test::reference_dir();
    config_ = new ModelConfig(ModelConfig::load(dir / "config.json"));
    Weights w(Checkpoint::open(dir / "model.safetensors"), test::test_compute());
    encoder_ = new Sam2ImageEncoder(w, config_->grounding);
    decoder_ = new Sam2MaskDecoder(w, config_->grounding);
    memory_ = new Sam2Memory(w, config_->grounding,
                             memory_config_from_json(test::read_file(dir / "config.json"), "config.json"));
    golden_ = new GoldenTensors("video.safetensors");
    record_ = new nlohmann::json(nlohmann::json::parse(test::read_file(dir / "video.json")));
    const auto frames = (*golden_)["frames_rgb_u8"];
    frames_ = static_cast<int>(frames.size(0));
    height_ = frames.size(1);
    width_ = frames.size(2);
    pixels_ = new std::vector<torch::Tensor>();
    for (int64_t t = 0; t < frames.size(0); ++t)
      pixels_->push_back(sam2_pixel_values(frame_of(frames, t), encoder_->image_size()));
    // One frame per pass, as SAM2's video predictor encodes them: a frame's features do not depend
    // on how many frames the video has (a batched pass may round differently).
    std::vector<Sam2ImageFeatures> each;
    for (const auto& p : *pixels_) each.push_back(encoder_->encode(p.unsqueeze(0), nullptr, nullptr, false));
    features_ = new Sam2ImageFeatures(Sam2ImageFeatures::cat(each));
  }
  static void TearDownTestSuite() {
    delete features_;
    delete pixels_;
    delete record_;
    delete golden_;
    delete memory_;
    delete decoder_;
    delete encoder_;
    delete config_;
  }
  void SetUp() override {
    ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
    ASSERT_TRUE(test::test_device_usable());
    const auto& f = record_->at("frames");
    ASSERT_EQ(f.at("N").get<int>(), frames_) << "video.json frames.N vs frames_rgb_u8";
    ASSERT_EQ(f.at("H").get<int64_t>(), height_) << "video.json frames.H vs frames_rgb_u8";
    ASSERT_EQ(f.at("W").get<int64_t>(), width_) << "video.json frames.W vs frames_rgb_u8";
  }

  // Tracks `frames` frames (frame t has the features of reference frame t mod N, so any length
  // can be asked for) with the language embedding of the reference's first [SEG] unless given.
  static TrackResult track(int frames, const std::vector<int>& keys, bool both, bool internals = true,
                           int max_conditioning = -1, const torch::Tensor& language = {}) {
    TrackOptions o;
    o.conditioning_frames = keys;
    o.max_conditioning_in_attention = max_conditioning;
    o.both_directions = both;
    o.keep_internals = internals;
    return track_object(
        *decoder_, *memory_, encoder_->no_mem_embed(), frames,
        [](int t) { return features_->select(t % features_->batch()); },
        language.defined() ? language : (*golden_)["seg0.language_embd"], o);
  }

  static std::vector<int> detail_frames() { return ints(*record_, kDetailFrames); }
  static std::vector<int> conditioning_frames() { return ints(*record_, "conditioning_frames"); }
  static std::vector<int> propagated_frames() { return ints(*record_, "propagated_frames"); }
  // The detail frames whose memory-attention inputs the reference recorded (the propagated ones;
  // a conditioning frame has no memory attention). Checks that none is missing.
  static std::vector<int> memory_attention_frames() {
    std::vector<int> recorded, propagated_detail;
    for (int t : detail_frames()) {
      if (golden_->has(frame_prefix(0, t) + "memattn_memory")) recorded.push_back(t);
      if (contains(propagated_frames(), t)) propagated_detail.push_back(t);
    }
    EXPECT_EQ(recorded, propagated_detail) << "memory-attention inputs recorded for the propagated detail frames";
    return recorded;
  }

  static ModelConfig* config_;
  static Sam2ImageEncoder* encoder_;
  static Sam2MaskDecoder* decoder_;
  static Sam2Memory* memory_;
  static GoldenTensors* golden_;
  static nlohmann::json* record_;
  static std::vector<torch::Tensor>* pixels_;
  static Sam2ImageFeatures* features_;
  static int frames_;
  static int64_t height_, width_;
};
ModelConfig* VideoBlocks::config_ = nullptr;
Sam2ImageEncoder* VideoBlocks::encoder_ = nullptr;
Sam2MaskDecoder* VideoBlocks::decoder_ = nullptr;
Sam2Memory* VideoBlocks::memory_ = nullptr;
GoldenTensors* VideoBlocks::golden_ = nullptr;
nlohmann::json* VideoBlocks::record_ = nullptr;
std::vector<torch::Tensor>* VideoBlocks::pixels_ = nullptr;
Sam2ImageFeatures* VideoBlocks::features_ = nullptr;
int VideoBlocks::frames_ = 0;
int64_t VideoBlocks::height_ = 0;
int64_t VideoBlocks::width_ = 0;

TEST_F(VideoBlocks, FramePixelsAndFeatures) {
  auto& g = *golden_;
  ASSERT_TRUE(g.has("sam_input_normalized.frame0"));
  for (int t = 0; t < frames_; ++t) {
    const std::string name = "sam_input_normalized.frame" + std::to_string(t);
    if (g.has(name)) {
      EXPECT_TRUE(close("SAM2 input frame " + std::to_string(t), (*pixels_)[size_t(t)], g[name], 0.0));
    }
  }
  ASSERT_FALSE(detail_frames().empty());
  for (int t : detail_frames()) {
    ASSERT_LT(t, frames_);
    const std::string p = frame_prefix(0, t);
    EXPECT_TRUE(close(p + "vision_feat_s16 (raw)", features_->image_embedding[t].unsqueeze(0), g[p + "vision_feat_s16"],
                      1e-4, 1e-4));
  }
}

TEST_F(VideoBlocks, PositionEncodings) {
  auto& g = *golden_;
  const int64_t d = memory_->dim(), grid = memory_->grid();
  ASSERT_FALSE(detail_frames().empty());
  for (int t : detail_frames()) {
    const std::string p = frame_prefix(0, t);
    EXPECT_TRUE(close("neck sine PE (curr_pos) vs " + p + "vision_pos_s16", sine_position_encoding(d, grid, grid),
                      g[p + "vision_pos_s16"], kBlock));
    EXPECT_TRUE(close("image_pos vs " + p + "vision_pos_s16", memory_->image_pos(), g[p + "vision_pos_s16"], kBlock));
  }
  EXPECT_TRUE(close("maskmem_pos_enc", memory_->memory_pos(), g["seg0.maskmem_pos_enc"], kBlock));
  for (int t : ints(*record_, "memory_encoder_detail_frames")) {
    const std::string p = frame_prefix(0, t);
    EXPECT_TRUE(close(p + "maskmem_pos_enc", memory_->memory_pos(), g[p + "maskmem_pos_enc"], kBlock));
  }
}

TEST_F(VideoBlocks, MemoryEncoderFromRecordedInputs) {
  auto& g = *golden_;
  const auto frames = ints(*record_, "memory_encoder_detail_frames");
  ASSERT_FALSE(frames.empty()) << "the reference records the memory encoder of at least one frame";
  for (int t : frames) {
    const std::string p = frame_prefix(0, t);
    const auto mem = memory_->encode(g[p + "vision_feat_s16"], g[p + "memenc_mask_logits_high_res"]);
    EXPECT_TRUE(close(p + "maskmem_features_fp32", mem, g[p + "maskmem_features_fp32"], kBlock));
    EXPECT_TRUE(within_bf16_ulp(p + "maskmem_features (bf16)", mem.to(torch::kBFloat16),
                                g[p + "maskmem_features_bf16_as_f32"], kBlock));
    // The same stored memory as the per-frame bank of the reference.
    EXPECT_TRUE(
        torch::equal(g[p + "maskmem_features_bf16_as_f32"], g["seg0.maskmem_features_bf16_as_f32"][t].unsqueeze(0)))
        << p;
  }
}

TEST_F(VideoBlocks, MemoryAttentionFromRecordedInputs) {
  auto& g = *golden_;
  const auto frames = memory_attention_frames();
  if (frames.empty())
    GTEST_SKIP() << "the reference's " << frames_
                 << " frames are all conditioning frames: no frame went through memory attention";
  for (int t : frames) {
    const std::string p = frame_prefix(0, t);
    const int64_t ptr = g[p + "memattn_num_obj_ptr_tokens"].item<int64_t>();
    const auto out = memory_->attend(g[p + "vision_feat_s16"], g[p + "memattn_memory"].unsqueeze(0),
                                     g[p + "memattn_memory_pos"].unsqueeze(0), ptr);
    EXPECT_TRUE(close(p + "pix_feat_with_mem", out, g[p + "pix_feat_with_mem"], kBlock));
    // The same with the query axis cut into chunks of 7 rows (a budget below one row of scores
    // gives one row per chunk), one scratch buffer reused by every chunk and call.
    for (int64_t budget : {int64_t{7} * g[p + "memattn_memory"].size(0), int64_t{1}}) {
      Sam2Memory::Scratch scratch;
      scratch.max_scores = budget;
      for (int call = 0; call < 2; ++call) {
        const auto chunked = memory_->attend(g[p + "vision_feat_s16"], g[p + "memattn_memory"].unsqueeze(0),
                                             g[p + "memattn_memory_pos"].unsqueeze(0), ptr, &scratch);
        EXPECT_TRUE(close(p + "pix_feat_with_mem, chunks of " + std::to_string(budget) + " scores, call " +
                              std::to_string(call + 1),
                          chunked, g[p + "pix_feat_with_mem"], kBlock));
      }
      EXPECT_LE(scratch.scores.numel(), std::max(budget, g[p + "memattn_memory"].size(0)));
    }
  }
}

TEST_F(VideoBlocks, ObjectPointerOnConditioningFrames) {
  auto& g = *golden_;
  const auto lang = g["seg0.language_embd"];
  const auto proj_ref = g["seg0.obj_ptr_proj_out"];
  const auto ptr_ref = g["seg0.obj_ptr"];
  const auto score_ref = g["seg0.object_score_logits"];
  const auto no_obj_ptr = GoldenTensors("model.safetensors")[layout::no_obj_ptr()];
  const auto& per_frame = record_->at("per_seg_per_frame").at(0);
  ASSERT_FALSE(conditioning_frames().empty());
  for (int t : conditioning_frames()) {
    const std::string w = "frame " + std::to_string(t) + " ";
    Sam2ImageFeatures f = features_->select(t);
    f.image_embedding = f.image_embedding + encoder_->no_mem_embed().view({1, -1, 1, 1});
    const auto out = decoder_->decode(f, lang);
    const auto token = out.mask_tokens.select(1, 1 + out.best[0].item<int64_t>());
    const auto proj = memory_->project_pointer(token);
    EXPECT_TRUE(close("obj_ptr_proj " + w, proj, proj_ref[t].unsqueeze(0), kConditioning));
    const float score = out.object_score_logits[0][0].item<float>();
    const float reference_score = score_ref[t][0].item<float>();
    EXPECT_TRUE(close("object score " + w, torch::tensor({score}), score_ref[t], kConditioning));
    const bool present = reference_score > 0;
    EXPECT_EQ(per_frame.at(size_t(t)).at("obj_ptr_is_no_obj_ptr").get<bool>(), !present) << w << "video.json";
    // The branch the reference took on this frame: a positive score keeps the projection, any
    // other gives no_obj_ptr.
    ASSERT_EQ(score > 0, present) << w << "object score " << score << ", reference " << reference_score;
    const auto ptr = memory_->object_pointer(token, out.object_score_logits);
    if (present) {
      EXPECT_TRUE(torch::equal(ptr_ref[t], proj_ref[t])) << w << "reference pointer is its projection";
      EXPECT_TRUE(torch::equal(ptr.cpu(), proj.cpu())) << w << "pointer is the projection";
      EXPECT_TRUE(close("obj_ptr " + w, ptr, ptr_ref[t].unsqueeze(0), kConditioning));
    } else {
      EXPECT_TRUE(torch::equal(ptr_ref[t].unsqueeze(0), no_obj_ptr)) << w << "reference pointer is no_obj_ptr";
      EXPECT_TRUE(close("obj_ptr " + w, ptr, ptr_ref[t].unsqueeze(0), 0.0));
    }
  }
  // Both branches whatever the reference's scores: a positive score keeps the projected token, a
  // negative one gives the checkpoint's no_obj_ptr.
  const auto token = torch::randn({2, memory_->dim()});
  const auto score = torch::tensor({{0.5f}, {-0.5f}});
  const auto p = memory_->object_pointer(token, score);
  EXPECT_TRUE(torch::equal(p[0], memory_->project_pointer(token)[0]));
  EXPECT_TRUE(torch::equal(p[1].cpu(), no_obj_ptr[0]));
}

TEST_F(VideoBlocks, PropagationAgainstReference) {
  auto& g = *golden_;
  const auto& rec = *record_;
  const auto cond = conditioning_frames(), propagated = propagated_frames(), detail = detail_frames();
  const int segs = rec.at("n_seg").get<int>();
  ASSERT_GE(segs, 1) << "the reference answer has a [SEG]";
  ASSERT_EQ(rec.at("per_seg_per_frame").size(), size_t(segs));
  ASSERT_EQ(cond.size() + propagated.size(), size_t(frames_)) << "every frame is a conditioning or a propagated one";
  const int num_maskmem = rec.at("sam2").at("num_maskmem").get<int>();
  for (int k = 0; k < segs; ++k) {
    const std::string s = seg_prefix(k);
    const TrackResult r = track(frames_, cond, false, true, -1, g[s + "language_embd"]);
    ASSERT_FALSE(r.cancelled);
    const auto low = g[s + "pred_masks_lowres"], ious = g[s + "ious"], scores = g[s + "object_score_logits"];
    const auto ptrs = g[s + "obj_ptr"], mems = g[s + "maskmem_features_bf16_as_f32"], best = g[s + "best_iou_index"];
    for (const auto& per_frame : {low, ious, scores, ptrs, mems, best}) ASSERT_EQ(per_frame.size(0), frames_) << s;
    const auto& record = rec.at("per_seg_per_frame")[size_t(k)];
    ASSERT_EQ(record.size(), size_t(frames_)) << s;
    for (int t = 0; t < frames_; ++t) {
      const TrackedFrame& f = r.frames[static_cast<size_t>(t)];
      const std::string w = s + " frame " + std::to_string(t) + " ";
      const bool conditioning = contains(cond, t);
      EXPECT_NE(conditioning, contains(propagated, t)) << w;
      ASSERT_TRUE(f.tracked);
      EXPECT_EQ(f.conditioning, conditioning);
      const double tol = conditioning ? kConditioning : kPropagated;
      EXPECT_EQ(f.best, best[t].item<int64_t>()) << w;
      EXPECT_TRUE(close(w + "low-res mask", f.low_res, low[t].unsqueeze(0), tol));
      EXPECT_TRUE(close(w + "IoU", f.all_iou, ious[t].unsqueeze(0), tol));
      EXPECT_TRUE(close(w + "object score", torch::tensor({f.object_score}), scores[t], tol));
      EXPECT_TRUE(close(w + "obj_ptr", f.obj_ptr, ptrs[t].unsqueeze(0), tol));
      EXPECT_TRUE(within_bf16_ulp(w + "stored memory", f.memory, mems[t].unsqueeze(0), tol));
      const auto& pf = record[static_cast<size_t>(t)];
      EXPECT_EQ(pf.at("frame").get<int>(), t) << w;
      EXPECT_EQ(pf.at("kind").get<std::string>(), conditioning ? "conditioning" : "propagated") << w;
      EXPECT_EQ(f.best, pf.at("best_iou_index").get<int>()) << w;
      if (!conditioning) {
        std::vector<std::pair<int, int>> frames;
        for (const auto& e : pf.at("memory_frames_(frame,maskmem_tpos_enc_index)")) frames.emplace_back(e[0], e[1]);
        EXPECT_EQ(f.memory_frames, frames) << w;
        std::vector<int> pointer_frames;
        for (const auto& e : pf.at("obj_ptr_frames_(frame,t_diff)")) pointer_frames.push_back(e[0]);
        EXPECT_EQ(f.pointer_frames, pointer_frames) << w;
        EXPECT_EQ(f.memory_tokens.size(0), pf.at("num_memory_tokens").get<int64_t>()) << w;
        EXPECT_EQ(f.pointer_tokens, pf.at("num_obj_ptr_tokens").get<int64_t>()) << w;
      }
    }
    ASSERT_FALSE(detail.empty());
    for (int t : detail) {
      const std::string p = frame_prefix(k, t);
      // Every detail frame of the first [SEG] is recorded; of the others where the set has them.
      if (k > 0 && !g.has(p + "pix_feat_with_mem")) continue;
      const TrackedFrame& f = r.frames[static_cast<size_t>(t)];
      const bool conditioning = contains(cond, t);
      if (conditioning) {
        EXPECT_TRUE(close(p + "pix_feat_with_mem", f.pix_feat_with_mem, g[p + "pix_feat_with_mem"], kConditioning,
                          kConditioning));
      } else {
        // The spatial tokens are the stored bf16 memories (within one ulp), then the pointers.
        const auto ref = g[p + "memattn_memory"];
        const int64_t spatial = ref.size(0) - f.pointer_tokens;
        EXPECT_EQ(g[p + "memattn_num_obj_ptr_tokens"].item<int64_t>(), f.pointer_tokens) << p;
        EXPECT_TRUE(within_bf16_ulp(p + "memattn_memory (spatial)", f.memory_tokens.narrow(0, 0, spatial),
                                    ref.narrow(0, 0, spatial), kPropagated));
        EXPECT_TRUE(close(p + "memattn_memory (pointers)", f.memory_tokens.narrow(0, spatial, f.pointer_tokens),
                          ref.narrow(0, spatial, f.pointer_tokens), kPropagated));
        EXPECT_TRUE(close(p + "memattn_memory_pos", f.memory_tokens_pos, g[p + "memattn_memory_pos"], kBlock));
        EXPECT_TRUE(close(p + "pix_feat_with_mem", f.pix_feat_with_mem, g[p + "pix_feat_with_mem"], kPropagated));
        EXPECT_TRUE(close(p + "low_res_multimasks best", f.low_res, g[p + "low_res_multimasks"].narrow(1, f.best, 1),
                          kPropagated));
      }
      torch::Tensor at_s;
      decoder_->upsample(f.low_res, height_, width_, &at_s);
      EXPECT_TRUE(close(p + "video_res_mask_logits", at_s, g[p + "video_res_mask_logits"],
                        conditioning ? kConditioning : kPropagated));
    }
    // A tracked frame attends to the conditioning frames and the last num_maskmem - 1 frames.
    EXPECT_LE(r.max_memory_frames, static_cast<int>(cond.size()) + num_maskmem - 1);
  }
}

TEST_F(VideoBlocks, MemoryBankStaysBounded) {
  // 20 frames (the reference frames' features cycled): every frame after the 11th attends to the
  // 5 key frames plus the last 6 frames, and the bank never holds more.
  const TrackResult r = track(20, {0, 1, 2, 3, 4}, false);
  EXPECT_EQ(r.max_memory_frames, 5 + 6);
  EXPECT_LE(r.max_bank_frames, 5 + 6);
  const TrackedFrame& last = r.frames[19];
  ASSERT_EQ(last.memory_frames.size(), 11u);
  EXPECT_EQ(last.memory_frames.back(), std::make_pair(18, 0));
  EXPECT_EQ(last.memory_frames[5], std::make_pair(13, 5));
  // Pointers: the 5 key frames, then frames 18 down to 5 (t_diff < 16; key frame 4 not repeated).
  ASSERT_EQ(last.pointer_frames.size(), 5u + 14u);
  EXPECT_EQ(last.pointer_frames[5], 18);
  EXPECT_EQ(last.pointer_frames.back(), 5);
}

TEST_F(VideoBlocks, BothDirectionsTracksFramesBeforeTheFirstKeyFrame) {
  // Nine frames whatever the reference's count (its features cycled).
  const TrackResult fwd = track(9, {3, 5, 7}, false);
  const TrackResult both = track(9, {3, 5, 7}, true);
  for (int t = 0; t < 3; ++t) {
    EXPECT_FALSE(fwd.frames[static_cast<size_t>(t)].tracked) << t;
    EXPECT_TRUE(both.frames[static_cast<size_t>(t)].tracked) << t;
  }
  for (int t = 3; t < 9; ++t)
    EXPECT_TRUE(torch::equal(fwd.frames[static_cast<size_t>(t)].low_res, both.frames[static_cast<size_t>(t)].low_res)) << t;
  // Backward: frame 2 sees the key frames only; frame 0 also frames 2 (t+2) and 1 (t+1).
  const TrackedFrame& f2 = both.frames[2];
  EXPECT_EQ(f2.memory_frames, (std::vector<std::pair<int, int>>{{3, 6}, {5, 6}, {7, 6}}));
  EXPECT_EQ(f2.pointer_frames, (std::vector<int>{3, 5, 7}));
  const TrackedFrame& f0 = both.frames[0];
  EXPECT_EQ(f0.memory_frames, (std::vector<std::pair<int, int>>{{3, 6}, {5, 6}, {7, 6}, {2, 1}, {1, 0}}));
  EXPECT_EQ(f0.pointer_frames, (std::vector<int>{3, 5, 7, 1, 2}));
  // Forward, a frame between key frames attends to every key frame but points only to past ones.
  const TrackedFrame& f4 = fwd.frames[4];
  EXPECT_EQ(f4.memory_frames, (std::vector<std::pair<int, int>>{{3, 6}, {5, 6}, {7, 6}}));
  EXPECT_EQ(f4.pointer_frames, (std::vector<int>{3}));
}

// With many prompted frames over a long series a tracked frame attends to the nearest ones only
// (SAM2's max_cond_frames_in_attn): the nearest before it, the nearest after it, then the
// nearest others; the object pointers of prompted frames come from the same selection.
TEST_F(VideoBlocks, TrackedFramesAttendToTheNearestPromptedFrames) {
  const std::vector<int> prompted{0, 4, 8, 12, 16};
  const auto conditioning_of = [](const TrackedFrame& f) {
    std::vector<int> out;
    for (const auto& [frame, index] : f.memory_frames)
      if (index == 6) out.push_back(frame);
    return out;
  };
  const TrackResult all = track(20, prompted, true);
  EXPECT_EQ(conditioning_of(all.frames[10]), prompted) << "the reference: every prompted frame";
  const TrackResult two = track(20, prompted, true, true, 2);
  EXPECT_EQ(conditioning_of(two.frames[10]), (std::vector<int>{8, 12}));
  EXPECT_EQ(two.frames[10].pointer_frames.front(), 8) << "prompted frames not in the future, of the selection";
  EXPECT_EQ(std::count(two.frames[10].pointer_frames.begin(), two.frames[10].pointer_frames.end(), 4), 0);
  EXPECT_EQ(conditioning_of(two.frames[19]), (std::vector<int>{12, 16})) << "none after it: the next nearest";
  EXPECT_EQ(conditioning_of(two.frames[2]), (std::vector<int>{0, 4}));
  const TrackResult three = track(20, prompted, true, true, 3);
  EXPECT_EQ(conditioning_of(three.frames[10]), (std::vector<int>{4, 8, 12})) << "ties: the earlier frame";
  EXPECT_EQ(conditioning_of(three.frames[13]), (std::vector<int>{8, 12, 16}));
  // The prompted frames themselves are answered as images, whatever the selection.
  for (int t : prompted) EXPECT_TRUE(torch::equal(all.frames[size_t(t)].low_res, two.frames[size_t(t)].low_res)) << t;
  EXPECT_THROW(track(20, prompted, true, false, 1), InferenceError);
}

TEST_F(VideoBlocks, BFloat16MemoryBlocksFollowTheFloat32Reference) {
  // The GPU default dtype, on the test device, for the memory blocks (the mask decoder is in
  // dtype_bfloat16_test.cpp): memory encoder and
  // memory attention from the recorded inputs stay within a few percent of the float32 numbers.
  const fs::path dir = test::reference_dir();
  Weights w(Checkpoint::open(dir / "model.safetensors"), test::test_compute(torch::kBFloat16));
  const Sam2Memory memory(w, config_->grounding, memory_config_from_json(test::read_file(dir / "config.json"), "config.json"));
  auto& g = *golden_;
  // Measured: mean error 1.3% of the mean magnitude for the memory features, 2-4% for the
  // attention output (one head of width 32 in the tiny model, softmax logits in bfloat16).
  auto near = [](const std::string& what, const torch::Tensor& a, const torch::Tensor& e) {
    EXPECT_EQ(a.scalar_type(), torch::kBFloat16) << what;
    const double mean_err = (a.to(torch::kCPU, torch::kFloat32) - e).abs().mean().item<double>();
    const double mean_mag = e.abs().mean().item<double>();
    std::cout << "[ compare  ] " << what << ": mean abs error " << mean_err << " (mean magnitude " << mean_mag << ")\n";
    EXPECT_LE(mean_err, 0.05 * mean_mag) << what;
    return close(what, a, e, 0.1 * e.abs().max().item<double>());
  };
  for (int t : ints(*record_, "memory_encoder_detail_frames")) {
    const std::string p = frame_prefix(0, t);
    EXPECT_TRUE(near("bf16 " + p + "maskmem_features",
                     memory.encode(g[p + "vision_feat_s16"], g[p + "memenc_mask_logits_high_res"]),
                     g[p + "maskmem_features_fp32"]));
  }
  for (int t : memory_attention_frames()) {
    const std::string p = frame_prefix(0, t);
    const int64_t ptr = g[p + "memattn_num_obj_ptr_tokens"].item<int64_t>();
    EXPECT_TRUE(near("bf16 " + p + "pix_feat_with_mem",
                     memory.attend(g[p + "vision_feat_s16"], g[p + "memattn_memory"].unsqueeze(0),
                                   g[p + "memattn_memory_pos"].unsqueeze(0), ptr),
                     g[p + "pix_feat_with_mem"]));
  }
}

class VideoModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::have_reference() || !test::test_device_usable()) return;  // SetUp fails each test
    tokenizer_dir_ = std::make_unique<test::TempDir>("unibiomed-video-tok");
    test::write_reference_tokenizer(tokenizer_dir_->path());
    LoadOptions o;
    o.tokenizer_dir = tokenizer_dir_->path();
    o.device = test::test_device_string();
    o.dtype = "float32";  // "auto" would be bfloat16 on a GPU; the goldens are float32
    model_ = GroundedModel::load(test::reference_dir(), o).release();
    record_ = new nlohmann::json(nlohmann::json::parse(test::read_file(test::reference_dir() / "video.json")));
    GoldenTensors g("video.safetensors");
    const auto frames = g["frames_rgb_u8"];
    frames_ = new std::vector<RgbImage>();
    for (int64_t t = 0; t < frames.size(0); ++t) frames_->push_back(frame_of(frames, t));
    video_ = new std::shared_ptr<const EncodedVideo>(model_->encode_video(*frames_));
  }
  static void TearDownTestSuite() {
    delete video_;
    delete frames_;
    delete record_;
    delete model_;
    model_ = nullptr;
    tokenizer_dir_.reset();
  }
  void SetUp() override {
    ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
    ASSERT_TRUE(test::test_device_usable());
    ASSERT_EQ(record_->at("frames").at("N").get<size_t>(), frames_->size()) << "video.json frames.N vs frames_rgb_u8";
  }
  static std::string prompt() { return record_->at("prompt_text").get<std::string>(); }
  static int frames() { return static_cast<int>(frames_->size()); }
  static int segs() { return record_->at("n_seg").get<int>(); }
  // The reference's setting: its answer, with its [SEG]s.
  static int max_new_tokens() { return record_->at("max_new_tokens").get<int>(); }
  static GroundedModel* model_;
  static std::unique_ptr<test::TempDir> tokenizer_dir_;
  static nlohmann::json* record_;
  static std::vector<RgbImage>* frames_;
  static std::shared_ptr<const EncodedVideo>* video_;
};
GroundedModel* VideoModel::model_ = nullptr;
std::unique_ptr<test::TempDir> VideoModel::tokenizer_dir_;
nlohmann::json* VideoModel::record_ = nullptr;
std::vector<RgbImage>* VideoModel::frames_ = nullptr;
std::shared_ptr<const EncodedVideo>* VideoModel::video_ = nullptr;

TEST_F(VideoModel, PredictForwardVideoIdsTextAndMasks) {
  GoldenTensors g("video.safetensors");
  const auto& rec = *record_;
  const auto shape = g["frames_rgb_u8"].sizes();
  const int n = frames();
  const int height = static_cast<int>(shape[1]), width = static_cast<int>(shape[2]);
  EXPECT_EQ(rec.at("frames").at("H").get<int>(), height);
  EXPECT_EQ(rec.at("frames").at("W").get<int>(), width);
  const EncodedVideo& v = **video_;
  EXPECT_EQ(v.frames(), n);
  EXPECT_EQ(v.width(), width);
  EXPECT_EQ(v.height(), height);
  VideoOptions o;
  o.max_new_tokens = max_new_tokens();
  o.probability_maps = true;
  std::vector<std::pair<int, int>> progress;
  o.on_frame = [&](int done, int total) { progress.emplace_back(done, total); };
  const VideoAnswer a = model_->answer_video(v, prompt(), o);
  const auto expected = g["generated_ids"];
  ASSERT_EQ(rec.at("generated_ids").size(), static_cast<size_t>(expected.numel()));
  std::vector<int64_t> expected_ids;
  for (int64_t i = 0; i < expected.numel(); ++i) {
    expected_ids.push_back(expected[i].item<int64_t>());
    EXPECT_EQ(rec.at("generated_ids")[size_t(i)].get<int64_t>(), expected_ids.back()) << "video.json, id " << i;
  }
  ASSERT_EQ(a.ids.size(), expected_ids.size());
  for (size_t i = 0; i < a.ids.size(); ++i) EXPECT_EQ(a.ids[i], expected_ids[i]) << i;
  EXPECT_EQ(a.text, rec.at("prediction_text").get<std::string>());
  EXPECT_EQ(a.stop_reason, expected_stop_reason(rec, expected_ids, Tokenizer::load(tokenizer_dir_->path())));
  const auto cond = ints(rec, "conditioning_frames");
  EXPECT_EQ(a.key_frames, cond);
  const int segs = VideoModel::segs();
  ASSERT_EQ(a.segments.size(), size_t(segs));
  for (int k = 0; k < segs; ++k) {
    const VideoSegment& s = a.segments[size_t(k)];
    const std::string sp = seg_prefix(k);
    EXPECT_EQ(s.seg_index, k);
    EXPECT_EQ(s.width, width);
    EXPECT_EQ(s.height, height);
    ASSERT_EQ(s.masks.size(), size_t(n));
    ASSERT_EQ(s.probability.size(), size_t(n));
    const auto bools = g[sp + "final_mask_bool"], logits = g[sp + "final_mask_logits_orig_res"];
    const auto ious = g[sp + "ious"], best = g[sp + "best_iou_index"], scores = g[sp + "object_score_logits"];
    ASSERT_EQ(bools.size(0), n);
    for (int t = 0; t < n; ++t) {
      const std::string w = sp + " frame " + std::to_string(t);
      const double tol = contains(cond, t) ? kConditioning : kPropagated;
      EXPECT_EQ(s.tracked[static_cast<size_t>(t)], 1);
      const auto mask = torch::from_blob(const_cast<uint8_t*>(s.masks[static_cast<size_t>(t)].data()), {height, width},
                                         torch::kUInt8);
      EXPECT_TRUE(test::masks_agree(w + " mask", mask, bools[t], logits[t], tol));
      const auto prob =
          torch::from_blob(const_cast<float*>(s.probability[static_cast<size_t>(t)].data()), {height, width});
      EXPECT_TRUE(close(w + " probability", prob, torch::sigmoid(logits[t]), tol));
      EXPECT_NEAR(s.iou[static_cast<size_t>(t)], ious[t][best[t].item<int64_t>()].item<float>(), kPropagated) << w;
      EXPECT_NEAR(s.object_score[static_cast<size_t>(t)], scores[t][0].item<float>(), kPropagated) << w;
    }
  }
  // One progress call per frame and [SEG] (forward from frame 0: every frame).
  ASSERT_EQ(progress.size(), size_t(segs * n));
  if (!progress.empty()) {
    EXPECT_EQ(progress.back(), std::make_pair(segs * n, segs * n));
  }

  // The same question again reuses the features and the key frames' tokens: identical answer.
  const VideoAnswer b = model_->answer_video(v, prompt(), o);
  EXPECT_EQ(b.ids, a.ids);
  ASSERT_EQ(b.segments.size(), a.segments.size());
  for (size_t k = 0; k < a.segments.size(); ++k) EXPECT_EQ(b.segments[k].masks, a.segments[k].masks) << k;
}

TEST_F(VideoModel, CancelledBetweenFrames) {
  ASSERT_GE(segs(), 1) << "the reference answer has a [SEG]";
  // Cancelled after frame N - 3 of the first [SEG]'s pass (6 of 9): no further frame is computed.
  const int stop_after = std::max(1, frames() - 3);
  std::atomic<bool> cancel{false};
  VideoOptions o;
  o.max_new_tokens = max_new_tokens();
  o.cancel = &cancel;
  int calls = 0;
  o.on_frame = [&](int done, int) {
    ++calls;
    if (done == stop_after) cancel = true;
  };
  const VideoAnswer a = model_->answer_video(**video_, prompt(), o);
  EXPECT_EQ(a.stop_reason, "cancelled");
  EXPECT_TRUE(a.cancelled());
  EXPECT_TRUE(a.segments.empty());
  EXPECT_EQ(calls, stop_after);
}

TEST_F(VideoModel, RejectsBadInput) {
  EXPECT_THROW(model_->encode_video({}), InferenceError);
  std::vector<RgbImage> mixed = {(*frames_)[0], RgbImage((*frames_)[0].width / 2, (*frames_)[0].height / 2)};
  try {
    model_->encode_video(mixed);
    ADD_FAILURE() << "frames of different sizes accepted";
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("same size"), std::string::npos) << e.what();
  }
  VideoOptions o;
  o.max_new_tokens = 2;
  o.key_frames = {2, 1};
  EXPECT_THROW(model_->answer_video(**video_, prompt(), o), InferenceError);
  o.key_frames = {0, frames()};  // one past the last frame
  EXPECT_THROW(model_->answer_video(**video_, prompt(), o), InferenceError);
  o.key_frames = {0, frames() - 1};
  EXPECT_NO_THROW(model_->answer_video(**video_, prompt(), o));
}

// prompt_every: SAM2 also gets the [SEG] prompt on every Nth frame (from N/2), the key frames
// stay what the language model sees; every frame is still computed once.
TEST_F(VideoModel, PromptEveryAddsPromptedFrames) {
  VideoOptions o;
  o.max_new_tokens = max_new_tokens();  // the reference's answer, with its [SEG]
  const VideoAnswer plain = model_->answer_video(**video_, prompt(), o);
  EXPECT_EQ(plain.prompted_frames, plain.key_frames);
  const auto keys = ints(*record_, "conditioning_frames");
  EXPECT_EQ(plain.key_frames, keys);
  o.prompt_every = -1;
  EXPECT_THROW(model_->answer_video(**video_, prompt(), o), InferenceError);
  o.prompt_every = 4;
  o.max_prompted_in_attention = 1;
  EXPECT_THROW(model_->answer_video(**video_, prompt(), o), InferenceError);

  // Every 3rd frame (1, 4, 7, ...), or every 2nd where that adds no frame to the key frames.
  const int n = frames();
  const auto prompted_by = [&](int every) {
    std::vector<int> out = keys;
    for (int t = every / 2; t < n; t += every)
      if (!contains(out, t)) out.push_back(t);
    std::sort(out.begin(), out.end());
    return out;
  };
  int every = 3;
  if (prompted_by(every) == keys) every = 2;
  const std::vector<int> expected = prompted_by(every);
  if (expected == keys) GTEST_SKIP() << "all " << n << " frames are key frames: prompt_every has no frame to add";
  o.prompt_every = every;
  o.max_prompted_in_attention = 2;
  int last_done = 0, last_total = 0;
  o.on_frame = [&](int done, int total) { last_done = done, last_total = total; };
  const VideoAnswer a = model_->answer_video(**video_, prompt(), o);
  EXPECT_EQ(a.key_frames, keys);
  EXPECT_EQ(a.prompted_frames, expected) << "every " << every << " of " << n << " frames";
  EXPECT_EQ(a.ids, plain.ids) << "the language model's input is the same";
  ASSERT_FALSE(a.segments.empty());
  EXPECT_EQ(last_total, n * static_cast<int>(a.segments.size()));
  EXPECT_EQ(last_done, last_total);
  for (int t : plain.key_frames)
    EXPECT_EQ(a.segments[0].masks[size_t(t)], plain.segments[0].masks[size_t(t)]) << "key frame " << t;
}

TEST_F(VideoModel, ShortVideoIsAllKeyFrames) {
  // Fewer than five frames: the language model sees them all, nothing is tracked.
  ASSERT_GE(frames(), 3);
  const std::vector<RgbImage> three(frames_->begin(), frames_->begin() + 3);
  const auto v = model_->encode_video(three);
  VideoOptions o;
  o.max_new_tokens = max_new_tokens();
  const VideoAnswer a = model_->answer_video(*v, prompt(), o);
  EXPECT_EQ(a.key_frames, (std::vector<int>{0, 1, 2}));
  for (const auto& s : a.segments) {
    ASSERT_EQ(s.masks.size(), 3u);
    for (uint8_t t : s.tracked) EXPECT_EQ(t, 1);
  }
}

}  // namespace
}  // namespace unibiomed::inference
