// Greedy generation against the reference: text-only decoding (llm.safetensors) and the
// end-to-end decoding with image tokens, eos and the [SEG] hidden state (e2e.safetensors,
// e2e.json); batches of prompts decoded together must equal each prompt decoded alone.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "inference/error.h"
#include "inference/generation.h"
#include "tests/inference/llm_test_support.h"
#include "tests/inference/reference_answer_support.h"

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
  const auto expected = to_ids(golden_tensor("llm.safetensors", "text_greedy_ids"));
  GenerationOptions o;
  // The reference ran exactly as many steps as it recorded, stopping on neither eos nor a stop
  // word: no eos (no token id is negative), no stop words.
  o.max_new_tokens = static_cast<int>(expected.size());
  o.eos_token_id = -1;
  o.stop_words.clear();
  const auto r = run(tiny_->model->embed(ids), o);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].ids, expected);
  EXPECT_EQ(r[0].stop_reason, StopReason::kMaxNewTokens);
  EXPECT_TRUE(close_to("text_greedy_step_logits", r[0].step_logits, golden_tensor("llm.safetensors", "text_greedy_step_logits")));
  EXPECT_TRUE(close_to("text_greedy_step_hidden_post_norm", r[0].step_hidden,
                       golden_tensor("llm.safetensors", "text_greedy_step_hidden_post_norm")));
  EXPECT_EQ(r[0].text, tiny_->tokenizer->decode(r[0].ids));
  EXPECT_EQ(r[0].seg_hidden_states.size(0),
            test::seg_states_of(expected, expected.size(), test::tiny_token_id("[SEG]")));
}

TEST_F(Generation, EndToEndDecodingWithSegIsTheReference) {
  const auto ref = test::E2eAnswer::load();
  const torch::Tensor embeds = golden_tensor("e2e.safetensors", "prefill_inputs_embeds").unsqueeze(0);
  GenerationOptions o;
  o.max_new_tokens = ref.max_new_tokens;
  o.stop_words = ref.stop_words;
  const auto r = run(embeds, o);  // eos and [SEG] come from the tokenizer
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].ids, to_ids(golden_tensor("e2e.safetensors", "generated_ids")));
  EXPECT_EQ(stop_reason_name(r[0].stop_reason), ref.stop_reason(*tiny_->tokenizer));
  EXPECT_EQ(r[0].text, tiny_->tokenizer->decode(ref.ids));
  // predict_forward's prediction is the decoded text, stripped.
  EXPECT_EQ(r[0].prediction(), ref.prediction_text);
  EXPECT_TRUE(close_to("step_last_logits", r[0].step_logits, golden_tensor("e2e.safetensors", "step_last_logits")));
  EXPECT_TRUE(close_to("step_last_hidden_post_norm", r[0].step_hidden,
                       golden_tensor("e2e.safetensors", "step_last_hidden_post_norm")));
  // The decode rows of cat(generate_output.hidden_states): rows N.. are the decoding steps.
  const torch::Tensor all = golden_tensor("e2e.safetensors", "all_last_hidden_states_concat");
  EXPECT_TRUE(close_to("all_last_hidden_states_concat[N:]", r[0].step_hidden.narrow(0, 1, r[0].step_hidden.size(0) - 1),
                       all.narrow(0, embeds.size(1), all.size(0) - embeds.size(1))));
  ASSERT_EQ(r[0].seg_hidden_states.size(0), ref.masks());
  if (ref.masks() > 0) {
    EXPECT_TRUE(
        close_to("seg_hidden_states", r[0].seg_hidden_states, golden_tensor("e2e.safetensors", "seg_hidden_states")));
  }
}

// The stopping criteria on the reference answer, each placed where the reference ids make it
// fire (first_stop in reference_answer_support.h gives where and why the decoding must stop).
TEST_F(Generation, StopsOnTheStopWordOrTheLimitAndSegAtTheEndHasNoHiddenState) {
  const auto ref = test::E2eAnswer::load();
  const Tokenizer& tok = *tiny_->tokenizer;
  const torch::Tensor embeds = golden_tensor("e2e.safetensors", "prefill_inputs_embeds").unsqueeze(0);
  const std::vector<int64_t>& reference = ref.ids;
  auto expect_stop = [&](const GenerationOptions& o, const std::string& what) {
    const test::GreedyStop want = test::first_stop(reference, tok, tok.eos_token_id(), o.stop_words, o.max_new_tokens);
    ASSERT_FALSE(want.reason.empty()) << what << ": the reference ids end before this decoding would stop";
    const auto r = run(embeds, o);
    EXPECT_EQ(r[0].ids, std::vector<int64_t>(reference.begin(), reference.begin() + static_cast<long>(want.length)))
        << what;
    EXPECT_EQ(stop_reason_name(r[0].stop_reason), want.reason) << what;
    EXPECT_EQ(r[0].seg_hidden_states.size(0), test::seg_states_of(reference, want.length, ref.seg_id)) << what;
    EXPECT_EQ(r[0].text, tok.decode(r[0].ids)) << what;
  };
  GenerationOptions o;
  o.stop_words = ref.stop_words;
  // Every limit up to the reference's length: the decoding is the reference's prefix, and a
  // [SEG] that is the last token is never fed back, so it has no hidden state (the limit that
  // ends on the first [SEG] has none, one more token has one).
  for (size_t k = 1; k <= reference.size(); ++k) {
    o.max_new_tokens = static_cast<int>(k);
    expect_stop(o, "max_new_tokens " + std::to_string(k));
  }
  o.max_new_tokens = ref.max_new_tokens;
  if (test::first_index_of(reference, ref.seg_id)) {
    // A stop word that the decoded text reaches with the [SEG] (the text then ends with "[SEG]").
    o.stop_words = {"[SEG]"};
    expect_stop(o, "stop word [SEG]");
  }
  // A stop word made of the last two characters of the text one token before the reference's
  // end ("\r" and "\n" removed, as the criterion removes them); other whitespace is kept.
  if (reference.size() >= 2) {
    std::string text = tok.decode(std::vector<int64_t>(reference.begin(), reference.end() - 1));
    text.erase(std::remove_if(text.begin(), text.end(), [](char c) { return c == '\r' || c == '\n'; }), text.end());
    const std::string word = test::last_characters(text, 2);
    if (!word.empty()) {
      o.stop_words = {word};
      const test::GreedyStop want =
          test::first_stop(reference, tok, tok.eos_token_id(), o.stop_words, o.max_new_tokens);
      EXPECT_EQ(want.reason, "stop_word");
      EXPECT_LE(want.length, reference.size() - 1);
      expect_stop(o, "stop word " + nlohmann::json(word).dump());
    }
  }
}

TEST_F(Generation, BatchedSequencesStopOnTheirOwnAndEqualSingleRuns) {
  // Three prompts of the same length: the e2e prompt (the reference answer, stopping as it did),
  // the text prompt repeated to the same length, and the e2e prompt again.
  const auto ref = test::E2eAnswer::load();
  const torch::Tensor e2e = test::on_test_device(golden_tensor("e2e.safetensors", "prefill_inputs_embeds"));
  const int64_t T = e2e.size(0);
  const torch::Tensor text_ids = golden_tensor("llm.safetensors", "text_input_ids");
  const torch::Tensor long_ids = text_ids.repeat({T / text_ids.size(0) + 1}).narrow(0, 0, T).view({1, -1});
  const torch::Tensor other = tiny_->model->embed(long_ids)[0];
  GenerationOptions o;
  o.max_new_tokens = ref.max_new_tokens;
  o.stop_words = ref.stop_words;
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
    // Each sequence stopped where and why the stopping rule says for its own ids.
    const auto& ids = batch[static_cast<size_t>(i)].ids;
    const test::GreedyStop want =
        test::first_stop(ids, *tiny_->tokenizer, tiny_->tokenizer->eos_token_id(), o.stop_words, o.max_new_tokens);
    EXPECT_EQ(want.length, ids.size()) << "sequence " << i;
    EXPECT_EQ(stop_reason_name(batch[static_cast<size_t>(i)].stop_reason), want.reason) << "sequence " << i;
  }
  EXPECT_EQ(batch[0].ids, ref.ids);
  EXPECT_EQ(stop_reason_name(batch[0].stop_reason), ref.stop_reason(*tiny_->tokenizer));
  EXPECT_EQ(batch[2].ids, ref.ids);
  std::printf("[ compare  ] batched sequences stopped after %zu, %zu and %zu tokens\n", batch[0].ids.size(),
              batch[1].ids.size(), batch[2].ids.size());
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
