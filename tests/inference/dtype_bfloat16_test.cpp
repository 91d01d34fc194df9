// bfloat16 against float32, block by block, on the same device (UNIBIOMED_TEST_DEVICE; the CPU
// by default): the tiny reference checkpoint runs each golden block twice, once in float32 (which
// the golden tests hold to the reference within 1e-4) and once in bfloat16, and the two must
// agree within bounds derived below from the number of roundings along the block, not tuned.
//
// The error model.
//   - One rounding to bfloat16 (8 significant bits: 7 stored plus the implicit one) moves a value
//     by at most half a spacing, u = 2^-8 of the power of two below it (typically about 2^-9 of
//     the value itself). Products and sums inside a kernel accumulate in float32 (libtorch's CPU
//     kernels and cuBLAS both do), so a matrix product, a normalisation or a softmax costs one
//     rounding of its output (and of its inputs when they come from float32), not one per term.
//   - A block is a chain of S such roundings along its longest path (counted per block below
//     from the configuration). Each rounding perturbs its stage's output by a relative error of
//     at most u; the stages are normalised (LayerNorm/RMSNorm), their weights scaled by
//     1/sqrt(fan-in), so an error travels on with a gain of about one.
//   - Relative L2 error of the block's output, ||bf16 - f32|| / ||f32||: the roundings are
//     independent, zero-mean perturbations, so they add like a random walk. Higham and Mary's
//     probabilistic bound (SIAM J. Sci. Comput. 41(5), 2019) gives lambda * sqrt(S) * u, exceeded
//     with probability at most 2 exp(-lambda^2 / 2): lambda = 4, 7e-4.
//   - Largest error of one element: a matrix product mixes many inputs, so the error it leaves
//     in one output element is u times the typical (root-mean-square) magnitude of the stage, not
//     of that element; over S stages the same probabilistic bound, lambda_N * sqrt(S) * u * rms,
//     taken for all N elements at once (union bound: lambda_N = sqrt(2 ln(2 N / 1e-3))), and
//     never more than the deterministic first-order bound S * u * max |f32|. (This is also the
//     model behind the relative L2 bound: N elements of error sqrt(S) u rms each.)
//   - Masks (sigmoid > 0.5, i.e. logit > 0): a pixel may change side only where the float32 logit
//     lies within that largest error E of zero. With F foreground pixels in float32 and D pixels in
//     that band, the masks differ in at most D pixels and IoU >= (F - D) / (F + D).
//   - Greedy tokens: a step's token may change only where the float32 top-2 logit margin is at
//     most 2 E (each of the two logits moves by at most E); from the first changed token on the
//     sequences go their own ways and are not compared.
// A bound that comes out at 1 or more would check nothing; every block asserts it does not.
//
// What the original keeps in float32 or rounds on purpose, and our bfloat16 path with it:
// Qwen2's RMSNorm statistics and attention softmax in float32 (qwen2.cpp), LayerNorm statistics
// in float32 inside libtorch's bfloat16 kernels, SAM2's pixel normalisation constants rounded to
// bfloat16 (vision_preprocess_test), and the video memories stored in bfloat16 in both runs (the
// golden video test checks them to one bfloat16 step).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "inference/checkpoint_layout.h"
#include "inference/generation.h"
#include "inference/image_preprocess.h"
#include "inference/model_config.h"
#include "inference/qwen2.h"
#include "inference/runtime.h"
#include "inference/sam2_image_encoder.h"
#include "inference/sam2_mask_decoder.h"
#include "inference/sam2_memory.h"
#include "inference/splice.h"
#include "inference/tokenizer.h"
#include "inference/vision_encoder.h"
#include "inference/weights.h"
#include "tests/inference/device_test_support.h"
#include "tests/inference/grounding_test_support.h"
#include "tests/inference/llm_test_support.h"
#include "tests/inference/reference_answer_support.h"

namespace unibiomed::inference {
namespace {

using test::GoldenTensors;

constexpr double kUnitRoundoff = 1.0 / 256;  // 2^-8
constexpr double kLambda = 4.0;              // P(exceeded) <= 2 exp(-8) = 7e-4 per quantity

// The bounds of one block of `stages` roundings whose float32 output is `ref`.
struct Bounds {
  int stages = 0;
  double rel_l2 = 0;   // of ||bf16 - f32|| / ||f32||
  double max_err = 0;  // of the largest |bf16 - f32| of one element
  Bounds(int s, const torch::Tensor& ref) : stages(s) {
    const auto e = ref.detach().to(torch::kCPU, torch::kFloat64);
    const double root_s = std::sqrt(static_cast<double>(s));
    rel_l2 = kLambda * root_s * kUnitRoundoff;
    const double n = static_cast<double>(std::max<int64_t>(e.numel(), 1));
    const double lambda_n = std::sqrt(2.0 * std::log(2.0 * n / 1e-3));
    const double rms = e.numel() ? e.square().mean().sqrt().item<double>() : 0.0;
    const double max_abs = e.numel() ? e.abs().max().item<double>() : 0.0;
    max_err = std::min(lambda_n * root_s * kUnitRoundoff * rms, s * kUnitRoundoff * max_abs);
  }
};

// Stages along the longest path of each block of the tiny configuration (or any other).
//
// InternViT: pixels rounded, patch convolution, position embedding added (3); per layer: norm,
// qkv, scores, softmax, weighted sum, projection, layer scale, residual add, norm, fc1, GELU,
// fc2, layer scale, residual add (14); mlp1: norm, fc1, GELU, fc2 (4).
int vision_stages(const ModelConfig& c) { return 3 + 14 * static_cast<int>(c.vision.num_hidden_layers) + 4; }
// Qwen2 post-norm hidden state: embeddings rounded (1); per layer: RMSNorm, q/k/v, RoPE, scores,
// softmax, weighted sum, o_proj, residual add, RMSNorm, gate/up, SiLU * up, down, residual add
// (13); the final RMSNorm (1). The logits add lm_head (1).
int llm_hidden_stages(const ModelConfig& c) { return 1 + 13 * static_cast<int>(c.llm.num_hidden_layers) + 1; }
// SAM2 image encoder, image embedding: pixels rounded, patch convolution, position embedding (3);
// per Hiera block: norm, qkv, scores, softmax, weighted sum, projection, residual add, norm, fc1,
// GELU, fc2, residual add (12), plus pooling and the shortcut projection at each of the stage
// changes (2 each); the neck: lateral convolution, top-down add, conv_s0/s1 or no_mem_embed (3).
int sam2_encoder_stages(const ModelConfig& c) {
  int blocks = 0;
  for (int n : c.grounding.hiera.stages) blocks += n;
  const int changes = static_cast<int>(c.grounding.hiera.stages.size()) - 1;
  return 3 + 12 * blocks + 2 * changes + 3;
}
// Mask decoder from given features: features and prompt rounded (1); per two-way layer:
// self-attention (q, k, v, scores, softmax, sum, out: 7), norm, token-to-image attention (7),
// norm, MLP (3), norm, image-to-token attention (7), norm (26); the final attention and norm (8);
// upscaling: transposed convolution, add, norm, GELU, transposed convolution, add, GELU (7);
// hypernetwork MLP (3) and the mask product (1).
constexpr int kDecoderDepth = 2;  // config.json hardcoded_in_official_code.mask_decoder_transformer_depth
int sam2_decoder_stages() { return 1 + 26 * kDecoderDepth + 8 + 7 + 3 + 1; }
// Memory encoder: mask sigmoid scaled (1), mask downsampler (convolution, norm, GELU per level:
// 4 levels, 12) and its last projection (1), pixel projection and add (2), fuser (two blocks of
// depthwise convolution, norm, pw1, GELU, pw2, scale, residual: 14), output projection (1), the
// bfloat16 store (1).
constexpr int kMemoryEncoderStages = 1 + 12 + 1 + 2 + 14 + 1 + 1;
// Memory attention: per layer self-attention with RoPE (q, k, v, RoPE, scores, softmax, sum,
// out: 8), residual add, norm, cross-attention (8), residual add, norm, MLP (3), residual add,
// norm (24); the final norm (1).
int memory_attention_stages(const Sam2MemoryConfig& m) { return 24 * m.num_layers + 1; }

// Relative L2 and largest error of `low` (bfloat16 run) against `ref` (float32 run).
::testing::AssertionResult agree(const std::string& what, const torch::Tensor& low, const torch::Tensor& ref,
                                 int stages) {
  const auto a = low.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  const auto e = ref.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  if (a.sizes() != e.sizes())
    return ::testing::AssertionFailure() << what << ": shape " << a.sizes() << ", float32 " << e.sizes();
  const Bounds b(stages, e);
  const auto diff = a - e;
  const double norm = e.norm().item<double>(), scale = e.abs().max().item<double>();
  const double rel = diff.norm().item<double>() / norm, max_err = diff.abs().max().item<double>();
  std::printf("[ compare  ] %s: relative L2 %.3g (bound %.3g), max error %.3g (bound %.3g; max |f32| %.3g); "
              "%d roundings\n",
              what.c_str(), rel, b.rel_l2, max_err, b.max_err, scale, stages);
  if (!(b.rel_l2 < 1 && b.max_err < scale))
    return ::testing::AssertionFailure() << what << ": the derived bound is as large as the values, it would check nothing";
  if (!std::isfinite(rel) || !std::isfinite(max_err) || norm == 0)
    return ::testing::AssertionFailure() << what << ": not finite, or float32 output all zero";
  if (rel == 0)
    return ::testing::AssertionFailure() << what << ": bfloat16 gave exactly the float32 numbers: it did not run in bfloat16";
  if (rel > b.rel_l2) return ::testing::AssertionFailure() << what << ": relative L2 " << rel << " > " << b.rel_l2;
  if (max_err > b.max_err) return ::testing::AssertionFailure() << what << ": max error " << max_err << " > " << b.max_err;
  return ::testing::AssertionSuccess();
}

// The masks (logit > 0) of two runs' logits at the same size, against the band of float32
// logits within the largest error of zero.
::testing::AssertionResult masks_within_band(const std::string& what, const torch::Tensor& low_logits,
                                             const torch::Tensor& ref_logits, int stages) {
  const auto a = low_logits.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  const auto e = ref_logits.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  if (a.sizes() != e.sizes())
    return ::testing::AssertionFailure() << what << ": shape " << a.sizes() << ", float32 " << e.sizes();
  const double band = Bounds(stages, e).max_err;
  const auto ma = a > 0, me = e > 0, in_band = e.abs() <= band;
  const auto differ = ma.ne(me);
  const int64_t n = e.numel(), n_differ = differ.sum().item<int64_t>();
  const int64_t out_of_band = (differ & in_band.logical_not()).sum().item<int64_t>();
  const int64_t fg = me.sum().item<int64_t>(), d = in_band.sum().item<int64_t>();
  const int64_t inter = (ma & me).sum().item<int64_t>(), uni = (ma | me).sum().item<int64_t>();
  const double iou = uni ? static_cast<double>(inter) / static_cast<double>(uni) : 1.0;
  const double iou_bound = fg + d ? std::max(0.0, static_cast<double>(fg - d) / static_cast<double>(fg + d)) : 1.0;
  std::printf("[ compare  ] %s: IoU %.4f (bound %.4f), %lld of %lld pixels differ (%.3g; bound %.3g: the %lld with "
              "|f32 logit| <= %.3g), float32 foreground %lld\n",
              what.c_str(), iou, iou_bound, static_cast<long long>(n_differ), static_cast<long long>(n),
              static_cast<double>(n_differ) / static_cast<double>(n), static_cast<double>(d) / static_cast<double>(n),
              static_cast<long long>(d), band, static_cast<long long>(fg));
  if (out_of_band)
    return ::testing::AssertionFailure() << what << ": " << out_of_band << " pixels changed side with |f32 logit| > " << band;
  if (iou < iou_bound) return ::testing::AssertionFailure() << what << ": IoU " << iou << " < " << iou_bound;
  return ::testing::AssertionSuccess();
}

class BFloat16Blocks : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::have_reference() || !test::test_device_usable()) return;  // SetUp fails each test
    configure_cpu_threads();
    config_ = new ModelConfig(ModelConfig::load(test::reference_dir() / "config.json"));
    f32_ = new Weights(Checkpoint::open(test::reference_dir()), test::test_compute(torch::kFloat32));
    bf16_ = new Weights(Checkpoint::open(test::reference_dir()), test::test_compute(torch::kBFloat16));
  }
  static void TearDownTestSuite() {
    delete bf16_;
    delete f32_;
    delete config_;
    bf16_ = f32_ = nullptr;
    config_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
    ASSERT_TRUE(test::test_device_usable());
  }
  // The tensors of each run are built once per test (a Weights hands out converted copies).
  static ModelConfig* config_;
  static Weights* f32_;
  static Weights* bf16_;
};
ModelConfig* BFloat16Blocks::config_ = nullptr;
Weights* BFloat16Blocks::f32_ = nullptr;
Weights* BFloat16Blocks::bf16_ = nullptr;

TEST_F(BFloat16Blocks, VisionEncoderImageTokens) {
  GoldenTensors e2e("e2e.safetensors");
  const auto pixels = e2e["pixel_values"];
  const VisionEncoder f32(*f32_, *config_), bf16(*bf16_, *config_);
  const auto ref = f32.encode(pixels), low = bf16.encode(pixels);
  EXPECT_EQ(low.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(low.device(), test::test_device());
  EXPECT_TRUE(agree("image token embeddings", low, ref, vision_stages(*config_)));
  // The ViT's last hidden state alone (without mlp1).
  EXPECT_TRUE(agree("InternViT last hidden state", bf16.vit_forward(pixels), f32.vit_forward(pixels),
                    vision_stages(*config_) - 4));
}

TEST_F(BFloat16Blocks, LanguageModelHiddenStatesLogitsAndGreedyTokens) {
  test::TinyLlm f32(test::test_compute(torch::kFloat32)), bf16(test::test_compute(torch::kBFloat16));
  // The e2e prefill with its image tokens (float32 golden inputs, rounded by the bfloat16 run).
  const auto embeds = test::golden_tensor("e2e.safetensors", "prefill_inputs_embeds").unsqueeze(0);
  const int64_t T = embeds.size(1);
  KvCache cf = f32.model->make_cache(1, T), cb = bf16.model->make_cache(1, T);
  const auto hf = f32.model->forward(embeds, cf), hb = bf16.model->forward(embeds, cb);
  EXPECT_EQ(hb.scalar_type(), torch::kBFloat16);
  const int hidden_stages = llm_hidden_stages(*config_);
  EXPECT_TRUE(agree("prefill post-norm hidden states", hb, hf, hidden_stages));
  const auto lf = f32.model->logits(hf), lb = bf16.model->logits(hb);
  EXPECT_TRUE(agree("prefill logits", lb, lf, hidden_stages + 1));

  // Greedy decoding of the e2e prompt: a token is held to the float32 one only where the float32
  // top-2 margin exceeds twice the largest logit error.
  const auto record = nlohmann::json::parse(test::read_file(test::reference_dir() / "e2e.json"));
  GenerationOptions o;
  o.max_new_tokens = record.at("max_new_tokens").get<int>();
  o.stop_words = record.at("stop_words").get<std::vector<std::string>>();
  o.keep_step_outputs = true;
  const auto rf = generate_greedy(*f32.model, *f32.tokenizer, embeds, o)[0];
  const auto rb = generate_greedy(*bf16.model, *bf16.tokenizer, embeds, o)[0];
  const int64_t seg_id = f32.tokenizer->token_id("[SEG]");
  size_t same = 0, held = 0;
  bool seg_compared = false;
  for (size_t i = 0; i < rf.ids.size() && i < rb.ids.size(); ++i) {
    const auto step = rf.step_logits[static_cast<int64_t>(i)].to(torch::kFloat64);
    const auto top2 = std::get<0>(step.topk(2));
    const double margin = (top2[0] - top2[1]).item<double>();
    const double err = Bounds(hidden_stages + 1, step).max_err;
    const bool must_hold = margin > 2 * err;
    std::printf("[ compare  ] step %zu: float32 id %lld, bfloat16 id %lld, float32 top-2 margin %.4g, 2 x max logit "
                "error %.4g -> %s\n",
                i, static_cast<long long>(rf.ids[i]), static_cast<long long>(rb.ids[i]), margin, 2 * err,
                must_hold ? "must agree" : "may differ");
    if (must_hold) {
      ++held;
      EXPECT_EQ(rb.ids[i], rf.ids[i]) << "step " << i << ": top-2 margin " << margin << " > " << 2 * err;
    }
    if (rb.ids[i] != rf.ids[i]) break;
    ++same;
    // Each step's logits carry the prefix's error plus their own: the bound of the prefill.
    EXPECT_TRUE(agree("step " + std::to_string(i) + " logits", rb.step_logits[static_cast<int64_t>(i)],
                      rf.step_logits[static_cast<int64_t>(i)], hidden_stages + 1));
    if (rf.ids[i] == seg_id && !seg_compared && rf.seg_hidden_states.size(0) > 0 && rb.seg_hidden_states.size(0) > 0) {
      // The [SEG] state is the post-norm hidden state of the step that fed [SEG] back.
      EXPECT_TRUE(agree("[SEG] hidden state", rb.seg_hidden_states[0], rf.seg_hidden_states[0], hidden_stages));
      seg_compared = true;
    }
  }
  std::printf("[ compare  ] greedy ids: %zu of %zu steps identical, %zu of them required to be\n", same, rf.ids.size(),
              held);
  // The reference answer's own top-2 margins decide whether a token can be held at all.
  if (held == 0)
    GTEST_SKIP() << "no step the two runs reached had a float32 top-2 margin above twice the largest logit error "
                    "(e2e.json greedy_top2_margins: "
                 << record.at("greedy_top2_margins").dump() << "): no token could be checked";
}

TEST_F(BFloat16Blocks, Sam2ImageEncoderFeatures) {
  GoldenTensors g("sam2.safetensors");
  const Sam2ImageEncoder f32(*f32_, config_->grounding), bf16(*bf16_, config_->grounding);
  const auto pixels = g["sam_input_normalized"];
  const auto ff = f32.encode(pixels), fb = bf16.encode(pixels);
  EXPECT_EQ(fb.image_embedding.scalar_type(), torch::kBFloat16);
  const int s = sam2_encoder_stages(*config_);
  EXPECT_TRUE(agree("image embedding (+ no_mem_embed)", fb.image_embedding, ff.image_embedding, s));
  EXPECT_TRUE(agree("conv_s0 features", fb.high_res_s0, ff.high_res_s0, s));
  EXPECT_TRUE(agree("conv_s1 features", fb.high_res_s1, ff.high_res_s1, s));
}

// The decoder alone, both runs given the float32 run's features (the bfloat16 decoder rounds
// them), then encoder and decoder chained each in its own dtype; masks at the image's size.
TEST_F(BFloat16Blocks, MaskDecoderLogitsAndMasks) {
  GoldenTensors g("sam2.safetensors");
  const Sam2ImageEncoder ef(*f32_, config_->grounding), eb(*bf16_, config_->grounding);
  const Sam2MaskDecoder df(*f32_, config_->grounding), db(*bf16_, config_->grounding);
  const auto pixels = g["sam_input_normalized"];
  const auto lang = g["language_embd"];
  const auto img = g["image_rgb_u8"];
  const int64_t h = img.size(0), w = img.size(1);
  const auto ff = ef.encode(pixels);
  auto to_bf16 = [](const Sam2ImageFeatures& f) {
    return Sam2ImageFeatures{f.image_embedding.to(torch::kBFloat16), f.high_res_s0.to(torch::kBFloat16),
                             f.high_res_s1.to(torch::kBFloat16)};
  };
  const auto of = df.decode(ff, lang);
  const auto ob = db.decode(to_bf16(ff), lang);
  const int sd = sam2_decoder_stages();
  EXPECT_TRUE(agree("decoder: all 4 mask logits", ob.all_mask_logits, of.all_mask_logits, sd));
  EXPECT_TRUE(agree("decoder: all 4 IoU", ob.all_iou, of.all_iou, sd));
  // The chosen output: compared only where float32's best IoU leads the second by more than
  // twice the largest IoU error (else the two runs may pick different masks).
  auto best_is_decided = [&](const Sam2DecoderOutput& o, int stages) {
    const auto iou = o.all_iou.narrow(1, 1, 3).to(torch::kCPU, torch::kFloat64)[0];
    const auto top2 = std::get<0>(iou.topk(2));
    const double margin = (top2[0] - top2[1]).item<double>();
    const double err = Bounds(stages, iou).max_err;
    std::printf("[ compare  ] best of 3 masks: float32 IoU margin %.4g, 2 x max IoU error %.4g\n", margin, 2 * err);
    return margin > 2 * err;
  };
  if (best_is_decided(of, sd)) {
    EXPECT_EQ(ob.best.item<int64_t>(), of.best.item<int64_t>());
    EXPECT_TRUE(masks_within_band("decoder: mask at the image size", db.upsample(ob.best_low_res, h, w),
                                  df.upsample(of.best_low_res, h, w), sd));
  } else {
    // Still compare the same output of both runs (bilinear upsampling is a convex combination:
    // it cannot enlarge the largest error).
    const auto idx = of.best.item<int64_t>() + 1;
    EXPECT_TRUE(masks_within_band("decoder: float32's chosen mask, both runs",
                                  db.upsample(ob.all_mask_logits.narrow(1, idx, 1).to(torch::kFloat32), h, w),
                                  df.upsample(of.all_mask_logits.narrow(1, idx, 1), h, w), sd));
  }

  const auto fb = eb.encode(pixels);
  const auto cb = db.decode(fb, lang);
  const int sc = sam2_encoder_stages(*config_) + sd;
  EXPECT_TRUE(agree("encoder + decoder: all 4 mask logits", cb.all_mask_logits, of.all_mask_logits, sc));
  const auto idx = of.best.item<int64_t>() + 1;
  EXPECT_TRUE(masks_within_band("encoder + decoder: float32's chosen mask, both runs",
                                db.upsample(cb.all_mask_logits.narrow(1, idx, 1).to(torch::kFloat32), h, w),
                                df.upsample(of.all_mask_logits.narrow(1, idx, 1), h, w), sc));
}

RgbImage frame_of(const torch::Tensor& frames_u8, int64_t t) {
  const auto f = frames_u8[t].contiguous();
  RgbImage im(static_cast<int>(f.size(1)), static_cast<int>(f.size(0)));
  std::memcpy(im.rgb.data(), f.data_ptr<uint8_t>(), im.rgb.size());
  return im;
}

// The video branch over the reference's frames, every part in its dtype: the conditioning frames
// of video.json (language prompt), then the later frames tracked through the memory. A tracked
// frame's error chain runs through the previous frame's mask, memory encoder and the memory
// attention, so its roundings are those of the frame before plus one memory encoder, attention
// and decoder.
TEST_F(BFloat16Blocks, VideoPropagation) {
  const auto dir = test::reference_dir();
  const auto mc = memory_config_from_json(test::read_file(dir / "config.json"), "config.json");
  GoldenTensors g("video.safetensors");
  // The reference's video answer: its [SEG] prompts SAM2 on the conditioning frames and the
  // memory tracks the others (video.json).
  const auto video = test::reference_json("video.json");
  const auto ids = video.at("generated_ids").get<std::vector<int64_t>>();
  if (test::seg_states_of(ids, ids.size(), test::tiny_token_id("[SEG]")) == 0)
    GTEST_SKIP() << "the reference video answer has no [SEG] with a hidden state: nothing was tracked";
  const auto conditioning = video.at("conditioning_frames").get<std::vector<int>>();
  ASSERT_FALSE(conditioning.empty());
  const auto frames = g["frames_rgb_u8"];
  const int n = static_cast<int>(frames.size(0));
  std::vector<torch::Tensor> pixels;
  for (int t = 0; t < n; ++t) pixels.push_back(sam2_pixel_values(frame_of(frames, t), config_->grounding.image_size));
  const auto batch = torch::stack(pixels);
  struct Run {
    std::unique_ptr<Sam2ImageEncoder> enc;
    std::unique_ptr<Sam2MaskDecoder> dec;
    std::unique_ptr<Sam2Memory> mem;
    Sam2ImageFeatures features;
    TrackResult result;
  };
  auto run = [&](Weights& w) {
    Run r;
    r.enc = std::make_unique<Sam2ImageEncoder>(w, config_->grounding);
    r.dec = std::make_unique<Sam2MaskDecoder>(w, config_->grounding);
    r.mem = std::make_unique<Sam2Memory>(w, config_->grounding, mc);
    r.features = r.enc->encode(batch, nullptr, nullptr, false);
    TrackOptions o;
    o.conditioning_frames = conditioning;
    const auto& f = r.features;
    r.result = track_object(*r.dec, *r.mem, r.enc->no_mem_embed(), n, [&f](int t) { return f.select(t); },
                            g["seg0.language_embd"], o);
    return r;
  };
  const Run f32 = run(*f32_);
  const Run bf16 = run(*bf16_);
  const int per_frame = kMemoryEncoderStages + memory_attention_stages(mc) + sam2_decoder_stages();
  const int key = sam2_encoder_stages(*config_) + sam2_decoder_stages();
  const int64_t h = frames.size(1), w = frames.size(2);
  for (int t = 0; t < n; ++t) {
    const auto& a = bf16.result.frames[static_cast<size_t>(t)];
    const auto& e = f32.result.frames[static_cast<size_t>(t)];
    // The conditioning frame at or before t (forward propagation: none before the first).
    int last = -1;
    for (int c : conditioning)
      if (c <= t) last = c;
    if (last < 0) {
      EXPECT_FALSE(a.tracked || e.tracked) << t;
      continue;
    }
    ASSERT_TRUE(a.tracked && e.tracked) << t;
    const bool prompted = last == t;
    const int stages = prompted ? key : key + (t - last) * per_frame;
    const std::string what = "frame " + std::to_string(t) + (prompted ? " (key)" : " (tracked)");
    if (a.best != e.best) {
      // A different choice among the three masks: allowed only where float32's IoUs lie within
      // twice the largest error; the later frames then follow another memory and are not compared.
      const auto iou = e.all_iou.to(torch::kCPU, torch::kFloat64)[0];
      const auto top2 = std::get<0>(iou.topk(2));
      const double margin = (top2[0] - top2[1]).item<double>();
      const double err = Bounds(stages, iou).max_err;
      std::printf("[ compare  ] %s: bfloat16 chose mask %d, float32 %d (IoU margin %.4g, 2 x max error %.4g)\n",
                  what.c_str(), a.best, e.best, margin, 2 * err);
      EXPECT_LE(margin, 2 * err) << what;
      break;
    }
    EXPECT_TRUE(agree(what + " low-res logits", a.low_res, e.low_res, stages));
    EXPECT_TRUE(masks_within_band(what + " mask", bf16.dec->upsample(a.low_res, h, w), f32.dec->upsample(e.low_res, h, w),
                                  stages));
  }
}

}  // namespace
}  // namespace unibiomed::inference
