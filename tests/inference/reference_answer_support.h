// What the reference's end-to-end run says about its answer (tests/reference e2e.json and the
// generated ids), and the stopping rule of its greedy search, so that the model tests take every
// fact of the answer from the reference set: another set made by the original code with other
// seeds, sizes and prompts (UNIBIOMED_REFERENCE_DIR) may stop on eos, on a stop word or at
// max_new_tokens, and have no [SEG] or several.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "inference/tokenizer.h"
#include "tests/support/test_support.h"

namespace unibiomed::test {

inline nlohmann::json reference_json(const std::string& name) {
  return nlohmann::json::parse(read_file(reference_dir() / name));
}

// A special token's id in the toy vocabulary of the reference checkpoint (tiny_vocab.json).
inline int64_t tiny_token_id(const std::string& token) {
  return reference_json("tiny_vocab.json").at("special_tokens").at(token).get<int64_t>();
}

// The toy vocabulary of the reference checkpoint (tiny_vocab.json) written into `dir` as a
// standard byte-level tokenizer folder, as a model folder brings it.
inline void write_reference_tokenizer(const std::filesystem::path& dir) {
  inference::write_byte_level_tokenizer(
      dir, reference_json("tiny_vocab.json").at("special_tokens").get<std::map<std::string, int64_t>>());
}

// Where greedy decoding of a known id sequence stops under the given criteria.
struct GreedyStop {
  size_t length = 0;   // tokens generated, the one that stopped it included
  std::string reason;  // "eos", "stop_word", "max_new_tokens" (stop_reason_name); empty when the
                       // sequence ends before any criterion fires (decoding would go on past it)
};

// predict_forward's stopping criteria (transformers' greedy search with eos and max_new_tokens,
// xtuner's StopWordStoppingCriteria), checked after each token in the order our generation
// reports them: the token is eos; the decoded text with "\r" and "\n" removed ends with a stop
// word; max_new_tokens tokens are out.
inline GreedyStop first_stop(const std::vector<int64_t>& ids, const inference::Tokenizer& tokenizer,
                             std::optional<int64_t> eos, const std::vector<std::string>& stop_words,
                             int max_new_tokens) {
  for (size_t k = 1; k <= ids.size(); ++k) {
    if (eos && ids[k - 1] == *eos) return {k, "eos"};
    std::string text = tokenizer.decode(std::vector<int64_t>(ids.begin(), ids.begin() + static_cast<long>(k)));
    text.erase(std::remove_if(text.begin(), text.end(), [](char c) { return c == '\r' || c == '\n'; }), text.end());
    for (const auto& w : stop_words)
      if (!w.empty() && text.size() >= w.size() && text.compare(text.size() - w.size(), w.size(), w) == 0)
        return {k, "stop_word"};
    if (static_cast<int64_t>(k) >= max_new_tokens) return {k, "max_new_tokens"};
  }
  return {ids.size(), ""};
}

// The [SEG] hidden states (masks) of the first `length` generated ids: each [SEG] that was fed
// back, i.e. all but the last token (get_seg_hidden_states over output_ids[:-1]).
inline int64_t seg_states_of(const std::vector<int64_t>& ids, size_t length, int64_t seg_id) {
  if (length < 2) return 0;
  return std::count(ids.begin(), ids.begin() + static_cast<long>(std::min(length, ids.size()) - 1), seg_id);
}

// Position of the first `id` in `ids`, or nullopt.
inline std::optional<size_t> first_index_of(const std::vector<int64_t>& ids, int64_t id) {
  const auto it = std::find(ids.begin(), ids.end(), id);
  if (it == ids.end()) return std::nullopt;
  return static_cast<size_t>(it - ids.begin());
}

// Occurrences of `what` in `text`.
inline int count_of(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

// The last `n` UTF-8 characters of `text` (all of it when shorter).
inline std::string last_characters(const std::string& text, size_t n) {
  size_t at = text.size();
  for (size_t k = 0; k < n && at > 0; ++k) {
    --at;
    while (at > 0 && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80) --at;
  }
  return text.substr(at);
}

// e2e.json: one predict_forward of the original code.
struct E2eAnswer {
  nlohmann::json record;
  std::string prompt_text;      // the question as predict_forward took it
  std::string prediction_text;  // predict_forward's prediction: the decoded answer, stripped
  std::vector<int64_t> ids;     // generated_ids
  int max_new_tokens = 0;
  int64_t eos_token_id = 0;
  std::vector<std::string> stop_words;
  int width = 0, height = 0;  // the image
  int tiles = 0;              // n_tiles_incl_thumbnail
  int tokens_per_tile = 0;
  int64_t seg_id = 0;  // [SEG] in tiny_vocab.json

  static E2eAnswer load() {
    E2eAnswer a;
    a.record = reference_json("e2e.json");
    const auto& r = a.record;
    a.prompt_text = r.at("prompt_text").get<std::string>();
    a.prediction_text = r.at("prediction_text").get<std::string>();
    a.ids = r.at("generated_ids").get<std::vector<int64_t>>();
    a.max_new_tokens = r.at("max_new_tokens").get<int>();
    a.eos_token_id = r.at("eos_token_id").get<int64_t>();
    a.stop_words = r.at("stop_words").get<std::vector<std::string>>();
    a.width = r.at("image").at("W").get<int>();
    a.height = r.at("image").at("H").get<int>();
    a.tiles = r.at("n_tiles_incl_thumbnail").get<int>();
    a.tokens_per_tile = r.at("image_tokens_per_tile").get<int>();
    a.seg_id = tiny_token_id("[SEG]");
    return a;
  }

  // The masks of the answer: one per [SEG] that has a hidden state (seg0.*, seg1.*, ...).
  int64_t masks() const { return seg_states_of(ids, ids.size(), seg_id); }
  // [SEG] tokens in the prediction text (what parse_answer counts).
  int seg_tokens_in_text() const { return count_of(prediction_text, "[SEG]"); }

  // Why the reference's decoding stopped, by the rule of first_stop; throws when the recorded
  // ids do not stop exactly at their end under the recorded criteria (a set that contradicts itself).
  std::string stop_reason(const inference::Tokenizer& tokenizer) const {
    const GreedyStop s = first_stop(ids, tokenizer, eos_token_id, stop_words, max_new_tokens);
    if (s.reason.empty() || s.length != ids.size())
      throw std::runtime_error("e2e.json: the " + std::to_string(ids.size()) + " generated ids stop after " +
                               std::to_string(s.length) + " under eos " + std::to_string(eos_token_id) +
                               ", the stop words and max_new_tokens " + std::to_string(max_new_tokens));
    return s.reason;
  }
};

}  // namespace unibiomed::test
