// The plan for one series: which questions the model is asked (the matching task rule's tasks,
// filtered by the request, plus explicit questions), with the prompt, the CT window and the
// codes of the masks each produces; and which of its views are analysed.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "config/task_rules.h"
#include "dicom/view.h"
#include "pipeline/analyzer.h"

namespace unibiomed::pipeline {

struct PlannedQuestion {
  std::string task;  // the rule's task name, or "question" for an explicit one
  config::TaskFamily family = config::TaskFamily::Segmentation;
  const config::Target* target = nullptr;  // codes, colour, kind of its masks (into the rules)
  std::string prompt;                      // the user text
  std::string window;                      // CT window preset ("" = the modality's rendering)
  std::optional<std::array<int, 4>> box;   // region-aware diagnosis: drawn on the view
};

struct SeriesPlan {
  const config::Rule* rule = nullptr;  // null: no rule matched (explicit questions only)
  std::vector<PlannedQuestion> questions;
  std::string skip_reason;         // set when there is nothing to ask
  std::vector<std::string> notes;  // what the plan left out and why (a question asked twice)
};

// Throws PipelineError when the request names a task no rule has (listing the known ones), or
// has a question with neither text nor a box.
void check_requested_tasks(const config::TaskRules& rules, const AnalysisRequest& request);

// `modality` is the model's modality class of the series ("CT"...).
SeriesPlan plan_series(const config::TaskRules& rules, const config::SeriesFacts& series,
                       const std::string& series_instance_uid, const AnalysisRequest& request);

// The window preset a question on this series uses when nothing says otherwise: the first
// windowed task of the rule, else "abdomen" for CT; "" for other modalities.
std::string default_window(const config::Rule* rule, const std::string& modality);

// What an explicit question asks for, when it is one the rules know: the prompt of one of the
// rule's tasks word for word, or "Please segment {target}..." naming one of the rules'
// targets (by key, phrase or label). `target` is null when it is neither.
struct AskMatch {
  const config::Target* target = nullptr;
  std::string window;         // that task's CT window ("" = none)
  bool segmentation = false;  // the target names the masks (not the model's phrase)
};
AskMatch match_question(const config::TaskRules& rules, const config::Rule* rule, const std::string& question);

struct ViewSelection {
  std::vector<size_t> selected;  // indices into the planned views, in order
  std::string note;              // what was left out and why ("" = nothing)
};

// Slices of stacks: the rule's slice selection (fractions of each stack, then a stride); then,
// when more views than `max_views` remain, an even stride (first and last kept) within each part
// of the series (a stack, a multi-frame instance, a single image, a slide's regions). Each part
// keeps a share by its size and at least one view, two for a sequence when they fit, so that a
// still image among cines is not strided away and a cine stays a cine. With more parts than
// `max_views`, one even stride over all views. The rule's slice selection applies to stack
// slices only.
ViewSelection select_views(const std::vector<dicom::ViewRequest>& views,
                           const std::optional<config::SliceSelection>& slices, int max_views);

}  // namespace unibiomed::pipeline
