// SAM2 grounding blocks against the reference run (tests/reference sam2.safetensors: a standalone
// SAM2 pass on a 110x90 image; e2e.safetensors seg0.*: the SAM2 part of predict_forward driven
// by the language model's [SEG] state; seg_head.safetensors: text_hidden_fcs). Tolerances are
// the manifest's (fp32 CPU): features and logits abs 1e-4 + rel 1e-4, IoU abs 1e-5.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>

#include "inference/error.h"
#include "inference/model_config.h"
#include "inference/sam2_image_encoder.h"
#include "inference/sam2_mask_decoder.h"
#include "inference/weights.h"
#include "tests/inference/grounding_test_support.h"
#include "tests/inference/reference_answer_support.h"
#include "tests/support/test_support.h"

namespace unibiomed::inference {
namespace {

using test::close;
using test::GoldenTensors;
using test::masks_agree;

class Sam2Golden : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
    ASSERT_TRUE(test::test_device_usable());
    config_ = ModelConfig::load(test::reference_dir() / "config.json");
    weights_ = std::make_unique<Weights>(Checkpoint::open(test::reference_dir()), test::test_compute());
  }
  ModelConfig config_;
  std::unique_ptr<Weights> weights_;
};

TEST_F(Sam2Golden, ImageEncoderMatchesEveryHieraBlockAndNeckLevel) {
  GoldenTensors g("sam2.safetensors");
  Sam2ImageEncoder encoder(*weights_, config_.grounding);
  Sam2EncoderTrace trace;
  auto f = encoder.encode(g["sam_input_normalized"], nullptr, &trace);
  EXPECT_EQ(f.image_embedding.device(), test::test_device());  // UNIBIOMED_TEST_DEVICE

  EXPECT_TRUE(close("patch_embed", trace.patch_embed, g["patch_embed_out_nhwc"], 1e-4, 1e-4));
  EXPECT_TRUE(close("pos_embed", trace.pos_embed, g["trunk_pos_embed_nhwc"], 1e-5));
  // One output per Hiera block, one trunk and neck level per stage (config.json's hiera.stages).
  const auto& stages = config_.grounding.hiera.stages;
  size_t blocks = 0;
  for (int n : stages) blocks += static_cast<size_t>(n);
  ASSERT_EQ(trace.block_outputs.size(), blocks);
  for (size_t i = 0; i < trace.block_outputs.size(); ++i)
    EXPECT_TRUE(close("trunk block " + std::to_string(i), trace.block_outputs[i],
                      g["trunk_block_out_nhwc." + std::to_string(i)], 1e-4, 1e-4));
  ASSERT_EQ(trace.trunk_outputs.size(), stages.size());
  ASSERT_EQ(trace.neck_outputs.size(), stages.size());
  for (size_t i = 0; i < stages.size(); ++i) {
    EXPECT_TRUE(close("trunk out " + std::to_string(i), trace.trunk_outputs[i], g["trunk_out." + std::to_string(i)],
                      1e-4, 1e-4));
    EXPECT_TRUE(close("neck level " + std::to_string(i), trace.neck_outputs[i],
                      g["neck_out_before_scalp." + std::to_string(i)], 1e-4, 1e-4));
  }
  EXPECT_TRUE(close("conv_s0 features", f.high_res_s0, g["backbone_fpn_after_conv_s.0"], 1e-4, 1e-4));
  EXPECT_TRUE(close("conv_s1 features", f.high_res_s1, g["backbone_fpn_after_conv_s.1"], 1e-4, 1e-4));
  EXPECT_TRUE(close("image embedding + no_mem_embed", f.image_embedding, g["pix_feat_with_no_mem_embed"], 1e-4, 1e-4));
}

TEST_F(Sam2Golden, MaskDecoderFromReferenceFeatures) {
  GoldenTensors g("sam2.safetensors");
  Sam2MaskDecoder decoder(*weights_, config_.grounding);
  // The reference's own features in, so that the decoder is checked on its own.
  Sam2ImageFeatures f{test::on_test_device(g["pix_feat_with_no_mem_embed"]),
                      test::on_test_device(g["backbone_fpn_after_conv_s.0"]),
                      test::on_test_device(g["backbone_fpn_after_conv_s.1"])};
  Sam2DecoderTrace trace;
  auto out = decoder.decode(f, g["language_embd"], &trace);

  EXPECT_TRUE(close("sparse prompt (not-a-point x2)", trace.sparse_prompt.narrow(1, 0, 2), g["prompt_sparse_before_lang"], 1e-6));
  EXPECT_TRUE(close("sparse prompt", trace.sparse_prompt, g["decoder_sparse_prompt_embeddings"], 1e-4, 1e-4));
  EXPECT_TRUE(close("dense prompt", trace.dense_prompt, g["prompt_dense"], 0.0));
  EXPECT_TRUE(close("image_pe", trace.image_pe, g["image_pe"], 1e-5));
  EXPECT_TRUE(close("two-way queries", trace.queries_out, g["two_way_queries_out"], 1e-4, 1e-4));
  EXPECT_TRUE(close("two-way keys", trace.keys_out, g["two_way_keys_out"], 1e-4, 1e-4));
  EXPECT_TRUE(close("mask tokens", out.mask_tokens, g["mask_tokens_out"], 1e-4, 1e-4));
  EXPECT_TRUE(close("all 4 mask logits", out.all_mask_logits, g["all4_mask_logits"], 1e-4, 1e-4));
  EXPECT_TRUE(close("all 4 IoU", out.all_iou, g["all4_iou_pred"], 1e-5));
  EXPECT_TRUE(close("multimask IoU", out.all_iou.narrow(1, 1, 3), g["ious"], 1e-5));
  EXPECT_TRUE(close("multimask logits", out.all_mask_logits.narrow(1, 1, 3), g["low_res_multimasks"], 1e-4, 1e-4));
  EXPECT_TRUE(close("object score", out.object_score_logits, g["object_score_logits"], 1e-4));
  EXPECT_EQ(out.best.item<int64_t>(), g["ious"].argmax(1).item<int64_t>());
  EXPECT_TRUE(close("best low-res mask", out.best_low_res, g["low_res_best_mask"], 1e-4, 1e-4));
  EXPECT_TRUE(close("best IoU", out.best_iou, g["ious"].max().view({1}), 1e-5));

  torch::Tensor at_input;
  auto img = g["image_rgb_u8"];
  auto logits = decoder.upsample(out.best_low_res, img.size(0), img.size(1), &at_input);
  EXPECT_TRUE(close("mask at SAM2 input size", at_input, g["video_res_mask_logits"], 1e-4, 1e-4));
  EXPECT_TRUE(close("high-res multimask (best)", at_input.select(1, 0),
                    g["high_res_multimasks"].select(1, out.best.item<int64_t>()), 1e-4, 1e-4));
  EXPECT_TRUE(close("mask logits at the image size", logits, g["final_mask_logits_orig_res"], 1e-4, 1e-4));
  EXPECT_TRUE(masks_agree("final mask", logits.sigmoid() > 0.5, g["final_mask_bool"], g["final_mask_logits_orig_res"]));
}

TEST_F(Sam2Golden, EncoderAndDecoderChainedGiveTheReferenceMask) {
  GoldenTensors g("sam2.safetensors");
  Sam2ImageEncoder encoder(*weights_, config_.grounding);
  Sam2MaskDecoder decoder(*weights_, config_.grounding);
  auto f = encoder.encode(g["sam_input_normalized"]);
  auto out = decoder.decode(f, g["language_embd"]);
  EXPECT_TRUE(close("chained multimask IoU", out.all_iou.narrow(1, 1, 3), g["ious"], 1e-5));
  auto img = g["image_rgb_u8"];
  auto logits = decoder.upsample(out.best_low_res, img.size(0), img.size(1));
  EXPECT_TRUE(close("chained final logits", logits, g["final_mask_logits_orig_res"], 1e-4, 1e-4));
  EXPECT_TRUE(masks_agree("chained final mask", logits.sigmoid() > 0.5, g["final_mask_bool"],
                          g["final_mask_logits_orig_res"]));
}

TEST_F(Sam2Golden, TextHiddenFcs) {
  GoldenTensors g("seg_head.safetensors");
  LanguagePromptProjector fcs(*weights_, config_.llm.hidden_size, config_.grounding.neck.d_model);
  EXPECT_TRUE(close("text_hidden_fcs", fcs(g["hidden_in"]), g["text_hidden_fcs_out"], 2e-4, 1e-4));
}

// The SAM2 part of the end-to-end reference (predict_forward): each [SEG] hidden state of the
// language model through text_hidden_fcs, the image of the e2e run through the encoder.
TEST_F(Sam2Golden, PredictForwardSegmentFromSegHiddenState) {
  GoldenTensors g("e2e.safetensors");
  const auto ref = test::E2eAnswer::load();
  const int64_t masks = ref.masks();
  if (masks == 0) {
    // predict_forward runs SAM2 only for the [SEG] hidden states of its answer.
    if (g.has("seg_hidden_states")) {
      EXPECT_EQ(g["seg_hidden_states"].size(0), 0);
    }
    GTEST_SKIP() << "the reference answer has no [SEG] with a hidden state: predict_forward made no mask";
  }
  Sam2ImageEncoder encoder(*weights_, config_.grounding);
  Sam2MaskDecoder decoder(*weights_, config_.grounding);
  LanguagePromptProjector fcs(*weights_, config_.llm.hidden_size, config_.grounding.neck.d_model);

  auto f = encoder.encode(g["sam_input_normalized"].unsqueeze(0));
  EXPECT_TRUE(close("e2e conv_s0", f.high_res_s0, g["backbone_fpn_after_conv_s.0"], 1e-4, 1e-4));
  EXPECT_TRUE(close("e2e conv_s1", f.high_res_s1, g["backbone_fpn_after_conv_s.1"], 1e-4, 1e-4));

  const auto hidden = g["seg_hidden_states"];
  ASSERT_EQ(hidden.size(0), masks);
  EXPECT_TRUE(close("e2e text_hidden_fcs", fcs(hidden), g["seg_embeddings_text_hidden_fcs"], 2e-4, 1e-4));
  auto img = g["image_rgb_u8"];
  for (int64_t k = 0; k < masks; ++k) {
    const std::string seg = "seg" + std::to_string(k) + ".";
    EXPECT_TRUE(
        close("e2e image embedding, " + seg, f.image_embedding, g[seg + "pix_feat_with_no_mem_embed"], 1e-4, 1e-4));
    auto lang = fcs(hidden.narrow(0, k, 1));
    EXPECT_TRUE(close("e2e language embedding, " + seg, lang, g[seg + "language_embd"], 2e-4, 1e-4));
    Sam2DecoderTrace trace;
    auto out = decoder.decode(f, lang, &trace);
    EXPECT_TRUE(close("e2e two-way queries, " + seg, trace.queries_out, g[seg + "two_way_queries_out"], 1e-4, 1e-4));
    EXPECT_TRUE(close("e2e all 4 IoU, " + seg, out.all_iou, g[seg + "all4_iou_pred"], 1e-5));
    EXPECT_TRUE(close("e2e all 4 logits, " + seg, out.all_mask_logits, g[seg + "all4_mask_logits"], 1e-4, 1e-4));
    EXPECT_TRUE(close("e2e object score, " + seg, out.object_score_logits, g[seg + "object_score_logits"], 1e-4));
    torch::Tensor at_input;
    auto logits = decoder.upsample(out.best_low_res, img.size(0), img.size(1), &at_input);
    EXPECT_TRUE(close("e2e mask at input size, " + seg, at_input, g[seg + "video_res_mask_logits"], 1e-4, 1e-4));
    EXPECT_TRUE(close("e2e final logits, " + seg, logits, g[seg + "final_mask_logits_orig_res"], 1e-4, 1e-4));
    EXPECT_TRUE(masks_agree("e2e final mask, " + seg, logits.sigmoid() > 0.5, g[seg + "final_mask_bool"],
                            g[seg + "final_mask_logits_orig_res"]));
  }
}

TEST_F(Sam2Golden, SeveralPromptsAndImagesInOneBatchEqualSingleRuns) {
  GoldenTensors g("sam2.safetensors");
  GoldenTensors e("e2e.safetensors");
  Sam2ImageEncoder encoder(*weights_, config_.grounding);
  Sam2MaskDecoder decoder(*weights_, config_.grounding);
  auto pixels = torch::cat({g["sam_input_normalized"], e["sam_input_normalized"].unsqueeze(0)}, 0);
  auto both = encoder.encode(pixels);
  auto one = encoder.encode(pixels.narrow(0, 1, 1));
  EXPECT_TRUE(close("batched image 1 vs alone", both.select(1).image_embedding, one.image_embedding, 1e-5, 1e-5));
  // Two prompts on one image, and prompt i on image i. The second prompt is the e2e answer's
  // first [SEG]; without one, the first [SEG] row of seg_head.safetensors (no reference IoU then).
  const bool e2e_seg = test::E2eAnswer::load().masks() > 0;
  const auto second =
      e2e_seg ? e["seg0.language_embd"] : GoldenTensors("seg_head.safetensors")["text_hidden_fcs_out"].narrow(0, 0, 1);
  auto lang = torch::cat({g["language_embd"], second}, 0);
  auto shared = decoder.decode(both.select(0), lang);
  auto single = decoder.decode(both.select(0), lang.narrow(0, 1, 1));
  EXPECT_TRUE(close("prompt 2 of 2 vs alone", shared.all_mask_logits.narrow(0, 1, 1), single.all_mask_logits, 1e-5, 1e-5));
  auto paired = decoder.decode(both, lang);
  if (e2e_seg) {
    EXPECT_TRUE(close("paired image 2", paired.all_iou.narrow(0, 1, 1), e["seg0.all4_iou_pred"], 1e-5));
  } else {
    auto alone = decoder.decode(one, lang.narrow(0, 1, 1));
    EXPECT_TRUE(
        close("paired image 2 vs alone", paired.all_mask_logits.narrow(0, 1, 1), alone.all_mask_logits, 1e-5, 1e-5));
  }
  EXPECT_TRUE(close("paired image 1", paired.all_iou.narrow(0, 0, 1), g["all4_iou_pred"], 1e-5));
}

TEST_F(Sam2Golden, BadInputsNameTheCulprit) {
  Sam2ImageEncoder encoder(*weights_, config_.grounding);
  Sam2MaskDecoder decoder(*weights_, config_.grounding);
  auto expect_error = [](auto&& fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const InferenceError& err) {
      EXPECT_NE(std::string(err.what()).find(needle), std::string::npos) << err.what();
    }
  };
  // The sizes of the reference checkpoint (config.json grounding_encoder_config).
  const int64_t S = config_.grounding.image_size, D = config_.grounding.neck.d_model;
  const std::string sides = std::to_string(S) + ", " + std::to_string(S);
  expect_error([&] { encoder.encode(torch::zeros({1, 3, S / 2, S / 2})); }, "expected [B, 3, " + sides + "]");
  expect_error([&] { encoder.encode(torch::zeros({3, S, S})); }, "input has shape [3, " + sides + "]");
  auto f = encoder.encode(torch::zeros({2, 3, S, S}));
  expect_error([&] { decoder.decode(f, torch::zeros({1, D - 1})); }, "expected [N, " + std::to_string(D) + "]");
  expect_error([&] { decoder.decode(f, torch::zeros({3, D})); }, "2 images for 3 prompts");
  expect_error([&] { decoder.upsample(torch::zeros({1, 1, S / 4, S / 4}), 0, 5); }, "has no pixels");

  std::atomic<bool> cancel{true};
  expect_error([&] { encoder.encode(torch::zeros({1, 3, S, S}), &cancel); }, "cancelled");

  // Configuration that disagrees with the checkpoint.
  auto list = [](const std::vector<int>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
  };
  GroundingConfig wrong = config_.grounding;
  const std::vector<int> widths = wrong.neck.backbone_channel_list;  // the trunk's, widest first
  ASSERT_FALSE(widths.empty());
  wrong.neck.backbone_channel_list.back() /= 2;
  expect_error([&] { Sam2ImageEncoder bad(*weights_, wrong); },
               "does not match the trunk's stage widths " + list(widths));
  wrong = config_.grounding;
  const int embed = wrong.hiera.embed_dim, wider = embed + 8;
  wrong.hiera.embed_dim = wider;
  for (auto& c : wrong.neck.backbone_channel_list) c = c / embed * wider;
  const auto& kernel = wrong.hiera.patch_kernel_size;
  const std::string k = std::to_string(kernel.at(0)) + ", " + std::to_string(kernel.at(1));
  expect_error([&] { Sam2ImageEncoder bad(*weights_, wrong); },
               "'grounding_encoder.sam2_model.image_encoder.trunk.patch_embed.proj.weight' has shape [" +
                   std::to_string(embed) + ", 3, " + k + "], expected [" + std::to_string(wider) + ", 3, " + k + "]");
  wrong = config_.grounding;
  wrong.image_size = static_cast<int>(S) - 8;
  expect_error([&] { Sam2ImageEncoder bad(*weights_, wrong); },
               "not a multiple of the first window " + std::to_string(wrong.hiera.window_spec.at(0)));
  expect_error([&] { Sam2MaskDecoder bad(*weights_, wrong); },
               "not a multiple of the backbone stride " + std::to_string(wrong.backbone_stride));
}

TEST(Sam2Checkpoint, MissingTensorIsNamed) {
  ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  // A copy of the golden checkpoint without one decoder tensor.
  auto ckpt = Checkpoint::open(test::reference_dir());
  std::vector<TensorBlob> blobs;
  for (const auto& name : ckpt->names()) {
    if (name == "grounding_encoder.sam2_model.sam_mask_decoder.iou_token.weight") continue;
    const TensorView* v = ckpt->find(name);
    TensorBlob b{name, v->dtype, v->shape, std::vector<std::byte>(v->data, v->data + v->nbytes)};
    blobs.push_back(std::move(b));
  }
  test::TempDir dir;
  write_safetensors(dir / "model.safetensors", blobs);
  Weights w(Checkpoint::open(dir.path()), ComputeOptions{});
  auto config = ModelConfig::load(test::reference_dir() / "config.json");
  try {
    Sam2MaskDecoder decoder(w, config.grounding);
    FAIL() << "missing tensor not reported";
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor 'grounding_encoder.sam2_model.sam_mask_decoder.iou_token.weight'"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace unibiomed::inference
