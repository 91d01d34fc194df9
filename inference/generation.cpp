// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/generation.h"

#include <torch/torch.h>

#include <algorithm>

#include "inference/error.h"
#include "inference/unicode_tables.h"

namespace unibiomed::inference {

namespace {

// Python's str.isspace(): White_Space plus the information separators U+001C..U+001F.
bool python_space(char32_t c) { return unicode::is_white_space(c) || (c >= 0x1C && c <= 0x1F); }

bool ends_with_stop_word(std::string text, const std::vector<std::string>& stop_words) {
  text.erase(std::remove_if(text.begin(), text.end(), [](char c) { return c == '\r' || c == '\n'; }), text.end());
  for (const auto& w : stop_words)
    if (!w.empty() && text.size() >= w.size() && text.compare(text.size() - w.size(), w.size(), w) == 0) return true;
  return false;
}

}  // namespace

const char* stop_reason_name(StopReason reason) {
  switch (reason) {
    case StopReason::kEos: return "eos";
    case StopReason::kStopWord: return "stop_word";
    case StopReason::kMaxNewTokens: return "max_new_tokens";
    case StopReason::kCancelled: return "cancelled";
  }
  return "?";
}

std::string GenerationResult::prediction() const {
  const std::u32string s = unicode::decode_utf8(text, "generated text");
  size_t begin = 0, end = s.size();
  while (begin < end && python_space(s[begin])) ++begin;
  while (end > begin && python_space(s[end - 1])) --end;
  return unicode::encode_utf8(s.substr(begin, end - begin));
}

std::vector<GenerationResult> generate_greedy(const Qwen2Model& model, const Tokenizer& tokenizer,
                                              const torch::Tensor& prompt_embeds, const GenerationOptions& options) {
  const int64_t H = model.config().hidden_size;
  if (prompt_embeds.dim() != 3 || prompt_embeds.size(0) < 1 || prompt_embeds.size(1) < 1 || prompt_embeds.size(2) != H)
    throw InferenceError("generate: prompt embeddings must be [batch >= 1, length >= 1, " + std::to_string(H) + "]");
  if (options.max_new_tokens < 1)
    throw InferenceError("generate: max_new_tokens must be at least 1, got " + std::to_string(options.max_new_tokens));
  const int64_t B = prompt_embeds.size(0), T = prompt_embeds.size(1);
  const std::optional<int64_t> eos = options.eos_token_id ? options.eos_token_id : tokenizer.eos_token_id();
  const std::optional<int64_t> seg = options.seg_token_id ? options.seg_token_id : tokenizer.find_token_id("[SEG]");
  auto cancelled = [&] { return options.cancel && options.cancel->load(); };

  c10::InferenceMode inference;
  std::vector<GenerationResult> results(static_cast<size_t>(B));
  std::vector<std::vector<torch::Tensor>> seg_rows(static_cast<size_t>(B)), step_logits(static_cast<size_t>(B)),
      step_hidden(static_cast<size_t>(B));
  auto finish = [&] {
    for (int64_t s = 0; s < B; ++s) {
      auto& r = results[static_cast<size_t>(s)];
      r.text = tokenizer.decode(r.ids);
      const auto& rows = seg_rows[static_cast<size_t>(s)];
      r.seg_hidden_states = rows.empty() ? torch::empty({0, H}, model.options()) : torch::stack(rows);
      if (options.keep_step_outputs && !step_logits[static_cast<size_t>(s)].empty()) {
        r.step_logits = torch::stack(step_logits[static_cast<size_t>(s)]);
        r.step_hidden = torch::stack(step_hidden[static_cast<size_t>(s)]);
      }
    }
    return results;
  };
  if (cancelled()) {
    for (auto& r : results) r.stop_reason = StopReason::kCancelled;
    return finish();
  }

  // The last generated token is never fed back, so T + max_new_tokens - 1 positions suffice.
  KvCache cache = model.make_cache(B, T + options.max_new_tokens - 1);
  torch::Tensor last = model.forward(prompt_embeds, cache).select(1, T - 1);  // [rows, H]
  std::vector<int64_t> active(static_cast<size_t>(B));  // cache row -> sequence
  for (int64_t s = 0; s < B; ++s) active[static_cast<size_t>(s)] = s;

  while (true) {
    const torch::Tensor logits = model.logits(last);  // [rows, V]
    const torch::Tensor next = logits.argmax(-1).to(torch::kCPU);
    std::vector<int64_t> keep, fed;
    for (size_t r = 0; r < active.size(); ++r) {
      const auto s = static_cast<size_t>(active[r]);
      GenerationResult& result = results[s];
      if (options.keep_step_outputs) {
        step_logits[s].push_back(logits[static_cast<int64_t>(r)].to(torch::kCPU));
        step_hidden[s].push_back(last[static_cast<int64_t>(r)].to(torch::kCPU));
      }
      const int64_t token = next[static_cast<int64_t>(r)].item<int64_t>();
      result.ids.push_back(token);
      // The stopping criteria of the reference, checked after each token is appended.
      if (eos && token == *eos) {
        result.stop_reason = StopReason::kEos;
      } else if (!options.stop_words.empty() && ends_with_stop_word(tokenizer.decode(result.ids), options.stop_words)) {
        result.stop_reason = StopReason::kStopWord;
      } else if (static_cast<int>(result.ids.size()) >= options.max_new_tokens) {
        result.stop_reason = StopReason::kMaxNewTokens;
      } else {
        keep.push_back(static_cast<int64_t>(r));
        fed.push_back(token);
      }
    }
    if (keep.empty()) break;
    if (cancelled()) {
      for (int64_t r : keep) results[static_cast<size_t>(active[static_cast<size_t>(r)])].stop_reason = StopReason::kCancelled;
      break;
    }
    if (keep.size() != active.size()) {
      cache.keep_rows(keep);
      std::vector<int64_t> still;
      for (int64_t r : keep) still.push_back(active[static_cast<size_t>(r)]);
      active.swap(still);
    }
    const torch::Tensor ids = torch::tensor(fed, torch::TensorOptions().dtype(torch::kLong)).view({-1, 1});
    last = model.forward(model.embed(ids), cache).select(1, 0);
    for (size_t r = 0; r < active.size(); ++r)
      if (seg && fed[r] == *seg) seg_rows[static_cast<size_t>(active[r])].push_back(last[static_cast<int64_t>(r)].clone());
  }
  return finish();
}

}  // namespace unibiomed::inference
