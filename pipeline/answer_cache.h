// The model's answers about a series kept for a later analysis of the same images: per series,
// a key made of the SHA-256 of every instance's bytes and of everything the analysis asks and
// decides before the model runs (the rule, the questions with their prompts, windows and boxes,
// the mode), and the answers (masks as run-length codes, sentences). Inside one analyzer the
// model, its settings, the task rules and the checkpoint's targets never change, so equal keys
// mean equal answers. Bounded in bytes, least recently used first out; thread-safe.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstddef>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pipeline/model_pass.h"

namespace unibiomed::pipeline {

struct CachedAnswers {
  std::vector<QuestionResult> results;
  int views = 0;  // the views the model looked at
};

class AnswerCache {
 public:
  explicit AnswerCache(size_t max_bytes) : max_bytes_(max_bytes) {}

  std::optional<CachedAnswers> find(const std::string& key);
  // Kept unless it alone exceeds the bound; older entries leave to make room.
  void put(const std::string& key, const CachedAnswers& answers);

  size_t bytes() const;
  size_t entries() const;

  // The encoding (exposed for the tests): decode(encode(a)) == a.
  static std::string encode(const CachedAnswers& answers);
  static CachedAnswers decode(const std::string& blob);

 private:
  const size_t max_bytes_;
  mutable std::mutex mutex_;
  std::list<std::pair<std::string, std::string>> order_;  // most recently used first
  std::unordered_map<std::string, std::list<std::pair<std::string, std::string>>::iterator> index_;
  size_t bytes_ = 0;
};

}  // namespace unibiomed::pipeline
