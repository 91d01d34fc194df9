// Greedy generation as UniBiomed's predict_forward runs it (transformers 4.44 GenerationMixin
// greedy search with inputs_embeds, eos, the template's stop words, max_new_tokens), for a batch of
// prompts of the same length decoded together, each stopping on its own. It also collects the
// [SEG] hidden states: the final post-norm hidden state at each decoding step whose INPUT token is
// [SEG] (get_seg_hidden_states over generate's hidden_states); a [SEG] that is the very last
// generated token is never fed back and has none.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <torch/types.h>

#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "inference/qwen2.h"
#include "inference/tokenizer.h"

namespace unibiomed::inference {

struct GenerationOptions {
  int max_new_tokens = 2048;  // preparing_for_generation's default
  // Generation stops when the decoded new text, with "\r" and "\n" removed, ends with one of
  // these (StopWordStoppingCriteria; phi3_chat's STOP_WORDS).
  std::vector<std::string> stop_words = {"<|end|>"};
  std::optional<int64_t> eos_token_id;  // default: the tokenizer's eos_token
  std::optional<int64_t> seg_token_id;  // default: the tokenizer's "[SEG]", when it has one
  const std::atomic<bool>* cancel = nullptr;  // checked before every step
  bool keep_step_outputs = false;  // fill GenerationResult::step_logits / step_hidden (tests)
};

enum class StopReason { kEos, kStopWord, kMaxNewTokens, kCancelled };
const char* stop_reason_name(StopReason reason);  // "eos", "stop_word", "max_new_tokens", "cancelled"

struct GenerationResult {
  std::vector<int64_t> ids;  // the new tokens only, including the eos token when it stopped on it
  std::string text;          // tokenizer.decode(ids), special tokens kept
  torch::Tensor seg_hidden_states;  // [n_seg, H], compute dtype
  StopReason stop_reason = StopReason::kMaxNewTokens;
  // With keep_step_outputs: per step (0 = prefill), the last position's logits [steps, V]
  // (float32) and final post-norm hidden state [steps, H].
  torch::Tensor step_logits, step_hidden;

  // The text as predict_forward returns it: decode(...).strip() (Python's whitespace).
  std::string prediction() const;
};

// prompt_embeds [B,T,H]: B prompts of equal length (Qwen2Model::embed, or with image tokens spliced in: splice.h).
// Returns one result per prompt, in order. Throws InferenceError on bad shapes or options.
std::vector<GenerationResult> generate_greedy(const Qwen2Model& model, const Tokenizer& tokenizer,
                                              const torch::Tensor& prompt_embeds, const GenerationOptions& options);

}  // namespace unibiomed::inference
