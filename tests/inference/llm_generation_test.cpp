// Greedy generation against the reference: text-only decoding (llm.safetensors) and the
// end-to-end decoding with image tokens, eos and the [SEG] hidden state (e2e.safetensors,
// e2e.json); batches of prompts decoded together must equal each prompt decoded alone.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "inference/error.h"
#include "inference/generation.h"
#include "tests/inference/llm_test_support.h"

namespace unibiomed::inference {
namespace {

using test::close_to;
using test::golden_tensor;
using test::to_ids;

class Generation : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
    ASSERT_TRUE(test::test_device_usable());
    tiny_ = std::make_unique<test::TinyLlm>();
  }
  std::vector<GenerationResult> run(const torch::Tensor& embeds, GenerationOptions o) {
    o.keep_step_outputs = true;
    return generate_greedy(*tiny_->model, *tiny_->tokenizer, embeds, o);
  }
  std::unique_ptr<test::TinyLlm> tiny_;
};

TEST_F(Generation, TextGreedyDecodingIsTheReference) {
  const torch::Tensor ids = golden_tensor("llm.safetensors", "text_input_ids").view({1, -1});
  GenerationOptions o;
  o.max_new_tokens = 10;  // the reference ran exactly 10 steps without an eos
  const auto r = run(tiny_->model->embed(ids), o);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].ids, to_ids(golden_tensor("llm.safetensors", "text_greedy_ids")));
  EXPECT_EQ(r[0].stop_reason, StopReason::kMaxNewTokens);
  EXPECT_TRUE(close_to("text_greedy_step_logits", r[0].step_logits, golden_tensor("llm.safetensors", "text_greedy_step_logits")));
  EXPECT_TRUE(close_to("text_greedy_step_hidden_post_norm", r[0].step_hidden,
                       golden_tensor("llm.safetensors", "text_greedy_step_hidden_post_norm")));
  EXPECT_EQ(r[0].text, tiny_->tokenizer->decode(r[0].ids));
  EXPECT_EQ(r[0].seg_hidden_states.size(0), 0);
}

TEST_F(Generation, EndToEndDecodingWithSegIsTheReference) {
  const nlohmann::json e2e = nlohmann::json::parse(test::read_file(test::reference_dir() / "e2e.json"));
  const torch::Tensor embeds = golden_tensor("e2e.safetensors", "prefill_inputs_embeds").unsqueeze(0);
  GenerationOptions o;
  o.max_new_tokens = e2e["max_new_tokens"];
  o.stop_words = e2e["stop_words"].get<std::vector<std::string>>();
  const auto r = run(embeds, o);  // eos and [SEG] come from the tokenizer
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].ids, to_ids(golden_tensor("e2e.safetensors", "generated_ids")));
  EXPECT_EQ(r[0].stop_reason, StopReason::kEos);
  EXPECT_EQ(r[0].text, e2e["prediction_text"].get<std::string>());
  EXPECT_TRUE(close_to("step_last_logits", r[0].step_logits, golden_tensor("e2e.safetensors", "step_last_logits")));
  EXPECT_TRUE(close_to("step_last_hidden_post_norm", r[0].step_hidden,
                       golden_tensor("e2e.safetensors", "step_last_hidden_post_norm")));
  // The decode rows of cat(generate_output.hidden_states): rows N.. are the decoding steps.
  const torch::Tensor all = golden_tensor("e2e.safetensors", "all_last_hidden_states_concat");
  EXPECT_TRUE(close_to("all_last_hidden_states_concat[N:]", r[0].step_hidden.narrow(0, 1, r[0].step_hidden.size(0) - 1),
                       all.narrow(0, embeds.size(1), all.size(0) - embeds.size(1))));
  ASSERT_EQ(r[0].seg_hidden_states.size(0), e2e["n_seg"].get<int64_t>());
  EXPECT_TRUE(close_to("seg_hidden_states", r[0].seg_hidden_states, golden_tensor("e2e.safetensors", "seg_hidden_states")));
}

TEST_F(Generation, StopsOnTheStopWordOrTheLimitAndSegAtTheEndHasNoHiddenState) {
  const torch::Tensor embeds = golden_tensor("e2e.safetensors", "prefill_inputs_embeds").unsqueeze(0);
  const auto reference = to_ids(golden_tensor("e2e.safetensors", "generated_ids"));  // 3 176 [SEG] 199 ...
  GenerationOptions o;
  o.max_new_tokens = 3;  // ends on the [SEG] itself: never fed back, so no hidden state
  auto r = run(embeds, o);
  EXPECT_EQ(r[0].ids, std::vector<int64_t>(reference.begin(), reference.begin() + 3));
  EXPECT_EQ(r[0].stop_reason, StopReason::kMaxNewTokens);
  EXPECT_EQ(r[0].seg_hidden_states.size(0), 0);
  o.max_new_tokens = 4;
  r = run(embeds, o);
  EXPECT_EQ(r[0].seg_hidden_states.size(0), 1);
  // A stop word that the decoded text reaches at step 3 ("\x03\xef\xbf\xbd[SEG]" ends with "[SEG]").
  o.max_new_tokens = 12;
  o.stop_words = {"[SEG]"};
  r = run(embeds, o);
  EXPECT_EQ(r[0].ids.size(), 3u);
  EXPECT_EQ(r[0].stop_reason, StopReason::kStopWord);
  // Newlines are removed before the comparison: "\f" (id 12) is kept, so "d" alone ends the text
  // "...<unused_442>\fd" at step 8.
  o.stop_words = {"\fd"};
  r = run(embeds, o);
  EXPECT_EQ(r[0].ids.size(), 8u);
  EXPECT_EQ(r[0].stop_reason, StopReason::kStopWord);
  EXPECT_EQ(r[0].prediction(), r[0].text);  // starts with \x03, nothing Python would strip
}

TEST_F(Generation, BatchedSequencesStopOnTheirOwnAndEqualSingleRuns) {
  // Three prompts of the same length: the e2e prompt (stops on eos after 9 tokens), the text
  // prompt repeated to the same length (no eos: runs to the limit), and the e2e prompt again.
  const torch::Tensor e2e = test::on_test_device(golden_tensor("e2e.safetensors", "prefill_inputs_embeds"));
  const int64_t T = e2e.size(0);
  const torch::Tensor text_ids = golden_tensor("llm.safetensors", "text_input_ids");
  const torch::Tensor long_ids = text_ids.repeat({T / text_ids.size(0) + 1}).narrow(0, 0, T).view({1, -1});
  const torch::Tensor other = tiny_->model->embed(long_ids)[0];
  GenerationOptions o;
  o.max_new_tokens = 12;
  const auto batch = run(torch::stack({e2e, other, e2e}), o);
  ASSERT_EQ(batch.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const auto single = run((i == 1 ? other : e2e).unsqueeze(0), o);
    EXPECT_EQ(batch[static_cast<size_t>(i)].ids, single[0].ids) << "sequence " << i;
    EXPECT_EQ(batch[static_cast<size_t>(i)].stop_reason, single[0].stop_reason) << "sequence " << i;
    EXPECT_TRUE(close_to("batched step logits, sequence " + std::to_string(i), batch[static_cast<size_t>(i)].step_logits,
                         single[0].step_logits, 1e-5));
    EXPECT_TRUE(close_to("batched [SEG] hidden states, sequence " + std::to_string(i),
                         batch[static_cast<size_t>(i)].seg_hidden_states, single[0].seg_hidden_states, 1e-5));
  }
  EXPECT_EQ(batch[0].ids.size(), 9u);
  EXPECT_EQ(batch[1].ids.size(), 12u);
  EXPECT_EQ(batch[1].stop_reason, StopReason::kMaxNewTokens);
}

TEST_F(Generation, CancelAndBadOptions) {
  const torch::Tensor embeds = golden_tensor("e2e.safetensors", "prefill_inputs_embeds").unsqueeze(0);
  std::atomic<bool> cancel{true};
  GenerationOptions o;
  o.cancel = &cancel;
  const auto r = run(embeds, o);
  EXPECT_EQ(r[0].stop_reason, StopReason::kCancelled);
  EXPECT_TRUE(r[0].ids.empty());
  EXPECT_STREQ(stop_reason_name(StopReason::kCancelled), "cancelled");
  o.cancel = nullptr;
  o.max_new_tokens = 0;
  EXPECT_THROW(run(embeds, o), InferenceError);
  o.max_new_tokens = 2;
  EXPECT_THROW(run(embeds.squeeze(0), o), InferenceError);
  EXPECT_THROW(run(torch::zeros({1, 3, 32}), o), InferenceError);
}

TEST(GenerationResultText, PredictionStripsLikePython) {
  GenerationResult r;
  r.text = " \n\x1c It is [SEG].\xE3\x80\x80\t";  // U+001C and U+3000 are str.isspace()
  EXPECT_EQ(r.prediction(), "It is [SEG].");
}

}  // namespace
}  // namespace unibiomed::inference
