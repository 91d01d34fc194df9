// The plan for one series: which questions the model is asked (the matching task rule's tasks,
// filtered by the request, plus explicit questions), with the prompt, the CT window and the
// codes of the masks each produces; and which of its views are analysed.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "config/task_rules.h"
#include "dicom/series.h"
#include "dicom/view.h"
#include "pipeline/analyzer.h"
#include "pipeline/checkpoint_targets.h"

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

// `modality` is the model's modality class of the series ("CT"...). With `trained` (the
// checkpoint's targets.json), the rule targets it was not trained on are left out (drop_untrained).
SeriesPlan plan_series(const config::TaskRules& rules, const config::SeriesFacts& series,
                       const std::string& series_instance_uid, const AnalysisRequest& request,
                       const CheckpointTargets* trained = nullptr);

// Takes the rule questions about targets the checkpoint was not trained on out of the plan
// (explicit questions stay): the plan's skip_reason when nothing is left, else one of its notes.
void drop_untrained(SeriesPlan& plan, const std::string& modality, const CheckpointTargets& trained);

// Why the analysis skips a series of a modality it does not read (a document, a localizer, a
// screenshot: dicom/modality.h's reason); "" when the model reads its modality.
std::string modality_skip_reason(const dicom::Series& series);

// Why an analysis with `request` would ask the model nothing about `series`, as the series'
// outcome would say it (its modality, no task rule for it, only targets the checkpoint was not
// trained on); "" when it would ask something, or when only reading every image can tell (a
// series without a decodable image fails in the analysis, which names the problem).
std::string unasked_reason(const config::TaskRules& rules, const CheckpointTargets* trained,
                           const dicom::Series& series, const AnalysisRequest& request);

// unasked_reason for the automatic analysis (the task rules alone), with the task rules and the
// checkpoint's targets.json of `settings` read once, for a host that decides whether a series
// that arrived is worth a run before reading the whole study. An empty function when those
// files cannot be read (the model's loading then says which and why).
using SeriesScreen = std::function<std::string(const dicom::Series& series)>;
SeriesScreen automatic_analysis_screen(const AnalyzerSettings& settings);

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
