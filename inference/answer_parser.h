// Splitting a UniBiomed answer into findings: which phrase each [SEG] grounds. The answer
// formats are those of the training data (MODEL.md "Task families and prompts"):
//   segmentation                  "It is [SEG]." / "Sure, [SEG]." / "Sure, the segmentation result is [SEG]."
//                                 (the phrase is the target named in the question)
//   grounded disease recognition  "It is [SEG]. {disease}."
//   grounded VQA / report         "<p> {abnormality}. {report} </p> [SEG]"
//   region-aware diagnosis        "{target} in {site} {modality}" (no [SEG]: a finding without mask)
// Torch-free.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace unibiomed::inference {

struct AnswerFinding {
  std::string phrase;  // what the finding is about, without markup ("liver", "pneumonia")
  std::string text;    // the sentence(s) of the answer that belong to it, without markup
  int seg_index = -1;  // which [SEG] (0-based, in answer order) grounds it; -1: none
};

struct ParsedAnswer {
  std::string text;  // the answer without [SEG], <p>, </p>, end tokens; whitespace collapsed
  std::vector<AnswerFinding> findings;  // one per [SEG], in order; or one ungrounded finding
  int seg_count = 0;                    // number of [SEG] tokens in the answer
};

// `answer`: the decoded answer as the model produced it (special tokens kept, e.g. a trailing
// "<|im_end|>" or "<|end|>"); `question`: the user's text, used for the segmentation target
// when the answer itself names nothing ("Sure, [SEG].").
ParsedAnswer parse_answer(const std::string& answer, const std::string& question = "");

// The target of a segmentation request ("Please segment liver in CT." -> "liver in CT"), or
// nothing when the question is not one.
std::optional<std::string> segmentation_target(const std::string& question);

}  // namespace unibiomed::inference
