// The words of the results: the sentence a reader reads for a finding (the model's answer
// without its [SEG] placeholders and the filler around them), the SR's text for it, and which
// answer of a series becomes report-level text.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace unibiomed::pipeline {

// The model's answer as a reader reads it: end tokens, <p>/</p> and [SEG] removed, and a
// sentence that only carried a [SEG] with filler ("It is [SEG].", "Sure, [SEG].", "Sure, it is
// [SEG].", "Sure, the segmentation result is [SEG].") dropped; a sentence with content keeps it
// ("[SEG] Liver." -> "Liver."). Sentences without [SEG] stay as they are. When nothing is left,
// `fallback` followed by a full stop ("Liver."), or "" when `fallback` is empty too.
std::string finding_sentence(const std::string& answer, const std::string& fallback = "");

// The model's answer as it gave it, without the end-of-turn tokens ("<|im_end|>"), trimmed.
std::string model_answer(const std::string& answer);

// The SR's text of a finding: "Label: sentence", or the label alone when the sentence only
// repeats it ("Liver" for "Liver.").
std::string reported_text(const std::string& label, const std::string& sentence);

// Report-level text of one question on one unit: with findings, the answer on the key frame of
// the largest (`key_frame`); without, the most frequent non-empty answer over the frames (and the
// first frame as its place when they differ). `texts` are (frame, sentence) in frame order.
struct ChosenAnswer {
  std::string text;
  size_t frame = 0;
};
std::optional<ChosenAnswer> choose_answer(const std::vector<std::pair<size_t, std::string>>& texts,
                                          std::optional<size_t> key_frame);

}  // namespace unibiomed::pipeline
