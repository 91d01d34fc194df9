// From an RGB image to the answer's token ids with the tiny reference checkpoint: tiling and
// normalisation, InternViT + pixel shuffle + mlp1, the phi3 prompt with its <IMG_CONTEXT> block,
// the splice into the prompt embeddings and greedy decoding must reproduce the reference's
// predict_forward (tests/reference e2e.safetensors, e2e.json): the same generated ids, exactly.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "inference/generation.h"
#include "inference/image_preprocess.h"
#include "inference/prompt.h"
#include "inference/qwen2.h"
#include "inference/splice.h"
#include "inference/tokenizer.h"
#include "inference/vision_encoder.h"
#include "tests/inference/image_test_support.h"
#include "tests/inference/reference_answer_support.h"
#include "tests/inference/vision_test_support.h"

namespace unibiomed::inference {
namespace {

std::vector<int64_t> ids_of(const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kInt64).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

TEST(VisionEndToEnd, ImageToGreedyAnswerIdsAsTheReference) {
  ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  ASSERT_TRUE(test::test_device_usable());
  const nlohmann::json record = nlohmann::json::parse(test::read_file(test::reference_dir() / "e2e.json"));
  test::TinyModel model;
  test::GoldenTorch e2e("e2e.safetensors");
  test::GoldenFile raw("e2e.safetensors");

  // The byte-level vocabulary of the tiny checkpoint (tiny_vocab.json) as a tokenizer folder.
  test::TempDir tokenizer_dir("unibiomed-vision-e2e");
  test::write_reference_tokenizer(tokenizer_dir.path());
  const Tokenizer tokenizer = Tokenizer::load(tokenizer_dir.path());

  // Image -> tiles -> image token embeddings.
  const RgbImage image = raw.image("image_rgb_u8");
  const InternVlInput input = preprocess_internvl({image}, TilingOptions::from_config(model.config));
  ASSERT_EQ(input.tiles_per_image[0], record["n_tiles_incl_thumbnail"].get<int>());
  VisionEncoder encoder(*model.weights, model.config);
  ASSERT_EQ(encoder.tokens_per_tile(), record["image_tokens_per_tile"].get<int64_t>());
  const torch::Tensor image_embeds = encoder.encode(input.pixel_values);

  // Prompt text and ids.
  const std::string prompt = build_prompt(record["prompt_text"], input.tiles_per_image[0],
                                          static_cast<int>(encoder.tokens_per_tile()), model.config.template_name);
  EXPECT_EQ(prompt, record["full_input_text"].get<std::string>());
  const std::vector<int64_t> ids = tokenizer.encode(prompt);
  EXPECT_EQ(ids, ids_of(e2e["prompt_input_ids"]));

  // Splice and decode.
  Qwen2Model llm(*model.weights, model.config.llm);
  const torch::Tensor text_embeds = llm.embed(torch::tensor(ids, torch::kInt64).view({1, -1}))[0];
  const torch::Tensor embeds =
      splice_image_embeddings(text_embeds, ids, tokenizer.token_id(kImageContextToken), image_embeds);
  EXPECT_TRUE(test::within_tolerance("prefill_inputs_embeds", embeds, e2e["prefill_inputs_embeds"], 1e-4));
  GenerationOptions options;
  options.max_new_tokens = record["max_new_tokens"];
  options.stop_words = record["stop_words"].get<std::vector<std::string>>();
  const std::vector<GenerationResult> result = generate_greedy(llm, tokenizer, embeds.unsqueeze(0), options);
  ASSERT_EQ(result.size(), 1u);
  EXPECT_EQ(result[0].ids, ids_of(e2e["generated_ids"]));
  EXPECT_EQ(result[0].text, tokenizer.decode(ids_of(e2e["generated_ids"])));
  // predict_forward's prediction is the decoded text, stripped.
  EXPECT_EQ(result[0].prediction(), record["prediction_text"].get<std::string>());
  EXPECT_EQ(stop_reason_name(result[0].stop_reason), test::E2eAnswer::load().stop_reason(tokenizer));
}

}  // namespace
}  // namespace unibiomed::inference
