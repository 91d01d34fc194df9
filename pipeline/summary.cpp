// JSON summary (nlohmann/json), two-space indented.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "pipeline/summary.h"

#include <cmath>
#include <nlohmann/json.hpp>

namespace unibiomed::pipeline {

namespace {

const char* state_name(SeriesOutcome::State s) {
  switch (s) {
    case SeriesOutcome::State::Analysed:
      return "analysed";
    case SeriesOutcome::State::Skipped:
      return "skipped";
    case SeriesOutcome::State::Failed:
      return "failed";
  }
  return "?";
}

double round_to(double v, double step) { return std::round(v / step) * step; }

}  // namespace

nlohmann::json summary_object(const ResultObject& o) {
  nlohmann::json object = {{"kind", o.kind},
                           {"file", o.file_name},
                           {"sop_class_uid", o.sop_class_uid},
                           {"sop_instance_uid", o.sop_instance_uid},
                           {"series_instance_uid", o.series_instance_uid},
                           {"bytes", o.bytes.size()}};
  if (!o.segmentation_type.empty()) object["segmentation_type"] = o.segmentation_type;
  return object;
}

std::string summary_json(const StudyResult& result, const std::string& model_description,
                         const std::string& rules_source, const StageTimings& timings) {
  using nlohmann::json;
  json j;
  j["study_instance_uid"] = result.study_instance_uid;
  j["model"] = {{"description", model_description}, {"weights_sha256", result.weights_hash}};
  j["task_rules"] = rules_source;
  json series = json::array();
  for (const auto& s : result.series) {
    json o = {{"series_instance_uid", s.series_instance_uid},
              {"modality", s.modality},
              {"description", s.description},
              {"state", state_name(s.state)},
              {"views", s.views},
              {"frames_total", s.frames_total},
              {"frames_analysed", s.frames_analysed}};
    if (!s.mode.empty()) o["mode"] = s.mode;
    if (s.frames_one_by_one > 0) o["frames_one_by_one"] = s.frames_one_by_one;
    if (!s.key_frames.empty()) o["key_frames"] = s.key_frames;
    if (!s.reason.empty()) o["reason"] = s.reason;
    if (!s.rule.empty()) o["rule"] = s.rule;
    if (!s.tasks.empty()) o["tasks"] = s.tasks;
    if (!s.notes.empty()) o["notes"] = s.notes;
    series.push_back(o);
  }
  j["series"] = series;
  json findings = json::array();
  for (const auto& f : result.findings) {
    json m = json::array();
    for (const auto& x : f.measurements) m.push_back({{"name", x.name}, {"value", round_to(x.value, 1e-3)}, {"unit", x.unit}});
    json o = {{"label", f.label},
              {"text", f.text},
              {"model_answer", f.model_answer},
              {"task", f.task},
              {"series_instance_uid", f.series_instance_uid},
              {"tracking_uid", f.tracking_uid},
              {"segment_number", f.segment_number},
              {"seg_sop_instance_uid", f.seg_sop_instance_uid},
              {"confidence", round_to(f.confidence, 1e-4)},
              {"mean_probability", round_to(f.mean_probability, 1e-4)},
              {"mean_iou", round_to(f.mean_iou, 1e-4)},
              {"label_agreement", round_to(f.label_agreement, 1e-4)},
              {"measurements", m},
              {"key_instance_uid", f.key_instance_uid},
              {"key_frame", f.key_frame}};
    if (!f.preview_file.empty()) o["preview"] = f.preview_file;
    if (!f.side.empty()) o["side"] = f.side;
    if (!f.frame_areas.empty()) {
      json areas = json::array();
      for (const auto& [frame, area] : f.frame_areas) areas.push_back({frame, round_to(area, 1e-3)});
      o["frame_areas"] = {{"unit", f.frame_area_unit}, {"frames", areas}};
    }
    findings.push_back(o);
  }
  j["findings"] = findings;
  j["answers"] = result.answers;
  json objects = json::array();
  for (const auto& o : result.objects) objects.push_back(summary_object(o));
  j["objects"] = objects;
  if (!result.problems.empty()) j["problems"] = result.problems;
  const double model = timings.model();
  const double non_model = timings.total - model;
  j["timings_seconds"] = {{"total", round_to(timings.total, 1e-4)},
                          {"reading", round_to(timings.reading, 1e-4)},
                          {"rendering", round_to(timings.rendering, 1e-4)},
                          {"model_vision", round_to(timings.vision, 1e-4)},
                          {"model_grounding", round_to(timings.grounding, 1e-4)},
                          {"model_language", round_to(timings.language, 1e-4)},
                          {"model_propagation", round_to(timings.propagation, 1e-4)},
                          {"mapping", round_to(timings.mapping, 1e-4)},
                          {"consolidation", round_to(timings.consolidation, 1e-4)},
                          {"writing", round_to(timings.writing, 1e-4)},
                          {"previews", round_to(timings.previews, 1e-4)},
                          {"views", timings.views},
                          {"non_model_share", timings.total > 0 ? round_to(non_model / timings.total, 1e-4) : 0.0}};
  // Text from the DICOM is UTF-8 already (dicom/text_encoding.h); the replacement is a last guard.
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace unibiomed::pipeline
