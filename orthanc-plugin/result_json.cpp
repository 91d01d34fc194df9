// SPDX-License-Identifier: GPL-3.0-or-later
#include "orthanc-plugin/result_json.h"

#include <algorithm>

#include "orthanc-plugin/plugin_error.h"

namespace unibiomed::orthanc {

using nlohmann::json;

std::string to_string(pipeline::SeriesOutcome::State state) {
  switch (state) {
    case pipeline::SeriesOutcome::State::Analysed: return "Analysed";
    case pipeline::SeriesOutcome::State::Skipped: return "Skipped";
    default: return "Failed";
  }
}

json to_json(const pipeline::Finding& f) {
  json measurements = json::array();
  for (const auto& m : f.measurements) measurements.push_back({{"Name", m.name}, {"Value", m.value}, {"Unit", m.unit}});
  json out = {{"Label", f.label},
              {"Text", f.text},
              {"Task", f.task},
              {"SeriesInstanceUID", f.series_instance_uid},
              {"TrackingUID", f.tracking_uid},
              {"SegmentNumber", f.segment_number},
              {"SegSOPInstanceUID", f.seg_sop_instance_uid},
              {"Confidence", f.confidence},
              {"Measurements", measurements},
              {"KeyInstanceUID", f.key_instance_uid},
              {"KeyFrame", f.key_frame}};
  // The patient's side of a paired organ ("right", "left"), as summary.json gives it.
  if (!f.side.empty()) out["Side"] = f.side;
  return out;
}

json to_json(const pipeline::SeriesOutcome& o) {
  return {{"SeriesInstanceUID", o.series_instance_uid},
          {"Modality", o.modality},
          {"Description", o.description},
          {"State", to_string(o.state)},
          {"Reason", o.reason},
          {"Views", o.views},
          {"Mode", o.mode},
          {"FramesOneByOne", o.frames_one_by_one},
          {"KeyFrames", o.key_frames},
          {"Notes", o.notes}};
}

namespace {

[[noreturn]] void bad(const std::string& where, const std::string& what) { throw PluginError(where + " " + what, 400); }

void check_keys(const json& j, const std::string& where, std::initializer_list<const char*> allowed) {
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    for (const char* a : allowed) known = known || key == a;
    if (!known) {
      std::string list;
      for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
      bad(where, "has an unknown field \"" + key + "\" (known: " + list + ")");
    }
  }
}

}  // namespace

pipeline::Question question_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) bad(where, "must be an object with a \"Text\"");
  check_keys(j, where, {"Text", "SeriesInstanceUID", "Box"});
  pipeline::Question q;
  if (!j.contains("Text") || !j["Text"].is_string() || j["Text"].get<std::string>().empty())
    bad(where, "needs a non-empty string \"Text\"");
  q.text = j["Text"].get<std::string>();
  if (q.text.size() > kMaxQuestionBytes)
    bad(where + ".Text", "has " + std::to_string(q.text.size()) + " bytes; a question is at most " +
                             std::to_string(kMaxQuestionBytes) + " (the model's context holds the image too)");
  if (j.contains("SeriesInstanceUID")) {
    if (!j["SeriesInstanceUID"].is_string()) bad(where + ".SeriesInstanceUID", "must be a string");
    q.series_instance_uid = j["SeriesInstanceUID"].get<std::string>();
  }
  if (j.contains("Box") && !j["Box"].is_null()) q.box = box_from_json(j["Box"], where + ".Box");
  return q;
}

std::array<int, 4> box_from_json(const json& b, const std::string& where) {
  if (!b.is_array() || b.size() != 4) bad(where, "must be [x0, y0, x1, y1] in pixels");
  std::array<int, 4> box{};
  for (size_t i = 0; i < 4; ++i) {
    if (!b[i].is_number_integer() || b[i].get<long>() < 0) bad(where, "must hold 4 non-negative integers");
    if (b[i].get<long>() > 1000000) bad(where, "holds " + b[i].dump() + ", more pixels than any image has");
    box[i] = b[i].get<int>();
  }
  if (box[2] <= box[0] || box[3] <= box[1]) bad(where, "must have x1 > x0 and y1 > y0");
  return box;
}

pipeline::AnalysisRequest request_from_json(const json& j) {
  pipeline::AnalysisRequest r;
  if (j.is_null()) return r;
  if (!j.is_object()) bad("the request body", "must be a JSON object");
  check_keys(j, "the request", {"Tasks", "Questions", "Rules"});
  if (j.contains("Tasks")) {
    if (!j["Tasks"].is_array()) bad("Tasks", "must be an array of task names");
    for (const auto& t : j["Tasks"]) {
      if (!t.is_string() || t.get<std::string>().empty()) bad("Tasks", "must hold non-empty strings");
      // A set: a name given twice is asked once.
      if (std::find(r.tasks.begin(), r.tasks.end(), t.get<std::string>()) == r.tasks.end())
        r.tasks.push_back(t.get<std::string>());
    }
  }
  if (j.contains("Questions")) {
    if (!j["Questions"].is_array()) bad("Questions", "must be an array");
    if (j["Questions"].size() > kMaxQuestions)
      bad("Questions", "holds " + std::to_string(j["Questions"].size()) + " questions; a request asks at most " +
                           std::to_string(kMaxQuestions) + " (each is asked of every view of every series)");
    for (size_t i = 0; i < j["Questions"].size(); ++i)
      r.questions.push_back(question_from_json(j["Questions"][i], "Questions[" + std::to_string(i) + "]"));
  }
  if (j.contains("Rules")) {
    if (!j["Rules"].is_boolean()) bad("Rules", "must be true or false");
    r.rules = j["Rules"].get<bool>();
  }
  if (!r.rules && r.tasks.empty() && r.questions.empty())
    bad("the request", "asks for nothing: \"Rules\" is false and there are no Tasks or Questions");
  return r;
}

}  // namespace unibiomed::orthanc
