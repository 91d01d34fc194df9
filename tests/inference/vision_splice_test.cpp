// Image embeddings spliced into the prompt embeddings at the <IMG_CONTEXT> positions, against
// the reference's prefill input (tests/reference e2e.safetensors: prefill_inputs_embeds).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "inference/error.h"
#include "inference/splice.h"
#include "tests/inference/reference_answer_support.h"
#include "tests/inference/vision_test_support.h"

namespace unibiomed::inference {
namespace {

std::vector<int64_t> to_ids(const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kInt64).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

TEST(Splice, E2ePrefillEmbeddingsAreTheReference) {
  ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  ASSERT_TRUE(test::test_device_usable());
  test::TinyModel model;
  test::GoldenTorch e2e("e2e.safetensors");
  const std::vector<int64_t> ids = to_ids(e2e["prompt_input_ids"]);
  const int64_t img_context = model.config.special_token_ids.at("<IMG_CONTEXT>");
  // Tiles x image tokens per tile of the reference run (e2e.json).
  const auto record = test::reference_json("e2e.json");
  EXPECT_EQ(image_context_positions(ids, img_context).size(),
            record["n_tiles_incl_thumbnail"].get<size_t>() * record["image_tokens_per_tile"].get<size_t>());
  torch::Tensor table = model.weights->get("language_model.model.embed_tokens.weight",
                                           {model.config.llm.vocab_size, model.config.llm.hidden_size});
  torch::Tensor prompt = table.index_select(0, torch::tensor(ids, torch::kInt64).to(table.device()));
  torch::Tensor spliced = splice_image_embeddings(prompt, ids, img_context, e2e["image_token_embeds"]);
  EXPECT_TRUE(test::within_tolerance("prefill_inputs_embeds", spliced, e2e["prefill_inputs_embeds"], 0.0));
  // The text rows are untouched, the input is not modified.
  EXPECT_TRUE(torch::equal(spliced[0], prompt[0]));
  EXPECT_FALSE(torch::equal(spliced, prompt));
}

TEST(Splice, ImageTokensGoInOrderAcrossTilesAndImages) {
  // ids: text, 2 context, text, 2 context: tile 0 rows fill the first two, tile 1 the others.
  const std::vector<int64_t> ids = {5, 9, 9, 6, 9, 9};
  torch::Tensor prompt = torch::zeros({6, 3});
  torch::Tensor images = torch::arange(12, torch::kFloat32).reshape({2, 2, 3});
  torch::Tensor out = splice_image_embeddings(prompt, ids, 9, images);
  EXPECT_TRUE(torch::equal(out[1], images[0][0]));
  EXPECT_TRUE(torch::equal(out[2], images[0][1]));
  EXPECT_TRUE(torch::equal(out[4], images[1][0]));
  EXPECT_TRUE(torch::equal(out[5], images[1][1]));
  EXPECT_TRUE(torch::equal(out[3], torch::zeros({3})));
  // No images in the prompt and none given: the embeddings come back unchanged.
  EXPECT_TRUE(torch::equal(splice_image_embeddings(prompt, {1, 2, 3, 4, 5, 6}, 9, torch::zeros({0, 2, 3})), prompt));
}

TEST(Splice, CountMismatchNamesBothCountsAndTheTiles) {
  const std::vector<int64_t> ids = {5, 9, 9, 6, 9, 9};
  torch::Tensor prompt = torch::zeros({6, 3});
  try {
    splice_image_embeddings(prompt, ids, 9, torch::zeros({3, 2, 3}));
    FAIL() << "count mismatch accepted";
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("the prompt has 4 <IMG_CONTEXT> tokens (id 9) but the images give 6 embeddings "
                                         "(3 tiles x 2 tokens per tile)"),
              std::string::npos)
        << e.what();
  }
  try {
    splice_image_embeddings(prompt, ids, 9, torch::zeros({2, 2, 4}));
    FAIL() << "hidden size mismatch accepted";
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("hidden size 4"), std::string::npos) << e.what();
  }
  EXPECT_THROW(splice_image_embeddings(torch::zeros({5, 3}), ids, 9, torch::zeros({2, 2, 3})), InferenceError);
  EXPECT_THROW(splice_image_embeddings(prompt, ids, 9, torch::zeros({4, 3})), InferenceError);
}

}  // namespace
}  // namespace unibiomed::inference
