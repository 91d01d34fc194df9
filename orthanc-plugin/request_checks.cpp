// SPDX-License-Identifier: GPL-3.0-or-later
#include "orthanc-plugin/request_checks.h"

#include <algorithm>
#include <set>

#include "orthanc-plugin/plugin_error.h"

namespace unibiomed::orthanc {

namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

std::string box_text(const std::array<int, 4>& box) {
  return "[" + std::to_string(box[0]) + ", " + std::to_string(box[1]) + ", " + std::to_string(box[2]) + ", " +
         std::to_string(box[3]) + "]";
}

// Rows or Columns as /simplified-tags shows them ("256"); 0 when absent or unreadable.
int positive_int(const nlohmann::json& tags, const char* name) {
  const auto it = tags.find(name);
  if (it == tags.end() || !it->is_string()) return 0;
  try {
    const int v = std::stoi(it->get<std::string>());
    return v > 0 ? v : 0;
  } catch (const std::exception&) {
    return 0;
  }
}

// Whole slides (SM) are seen as regions of a pyramid level, not as their frames.
bool whole_slide(const SeriesInfo& series) {
  return series.modality == "SM";
}

}  // namespace

std::vector<std::string> task_names(const config::TaskRules& rules) {
  std::set<std::string> names;
  for (const auto& rule : rules.rules())
    for (const auto& task : rule.tasks) names.insert(task.name);
  return {names.begin(), names.end()};
}

void check_task_names(const std::vector<std::string>& tasks, const std::vector<std::string>& known) {
  for (size_t i = 0; i < tasks.size(); ++i)
    if (std::find(known.begin(), known.end(), tasks[i]) == known.end())
      throw PluginError(
          "Tasks[" + std::to_string(i) + "]: unknown task \"" + tasks[i] + "\" (known: " + join(known) + ")", 400);
}

void check_box(const std::array<int, 4>& box, const ImageSize& size, const std::string& where, const std::string& image,
               const std::string& hint) {
  const int side = std::max(size.columns, size.rows);
  if (std::max(box[2], box[3]) < side && std::min({box[0], box[1], box[2], box[3]}) >= 0) return;
  std::string message = where + " " + box_text(box) + " does not fit " + image + ", which is " +
                        std::to_string(size.columns) + " x " + std::to_string(size.rows) +
                        " pixels (Columns x Rows): corners are pixel indices 0.." + std::to_string(side - 1);
  if (size.columns != size.rows)
    message += " of the view the model sees, the image centred in a " + std::to_string(side) + " x " +
               std::to_string(side) + " square";
  if (!hint.empty()) message += "; " + hint;
  throw PluginError(message, 400);
}

std::optional<ImageSize> image_size(const OrthancClient& client, const std::string& instance_id) {
  // (/content answers the raw value, two binary bytes for US; the simplified tags hold text.)
  const auto tags = client.find_json("/instances/" + instance_id + "/simplified-tags");
  if (!tags || !tags->is_object()) return std::nullopt;
  ImageSize size;
  size.columns = positive_int(*tags, "Columns");
  size.rows = positive_int(*tags, "Rows");
  if (size.columns == 0 || size.rows == 0) return std::nullopt;
  return size;
}

void check_analysis_request(const pipeline::AnalysisRequest& request, const StudyInventory& study,
                            const std::vector<std::string>& known_tasks, const OrthancClient& client) {
  check_task_names(request.tasks, known_tasks);
  std::vector<const SeriesInfo*> sources;
  for (const auto& s : study.series)
    if (!s.result && !s.instances.empty()) sources.push_back(&s);
  for (size_t i = 0; i < request.questions.size(); ++i) {
    const pipeline::Question& q = request.questions[i];
    const std::string where = "Questions[" + std::to_string(i) + "]";
    std::vector<const SeriesInfo*> scope;
    if (q.series_instance_uid.empty()) {
      scope = sources;
    } else {
      for (const auto* s : sources)
        if (s->series_instance_uid == q.series_instance_uid) scope.push_back(s);
      if (scope.empty()) {
        std::vector<std::string> uids;
        for (const auto* s : sources) uids.push_back(s->series_instance_uid + " (" + s->modality + ")");
        throw PluginError(where + ".SeriesInstanceUID \"" + q.series_instance_uid + "\" is not a series of study " +
                              study.study_instance_uid + " (its series: " + join(uids) + ")",
                          400);
      }
    }
    if (!q.box) continue;
    for (const auto* s : scope) {
      if (whole_slide(*s)) continue;
      const auto size = image_size(client, s->instances.front());
      if (!size) continue;  // not an image: the analysis skips the series anyway
      check_box(*q.box, *size, where + ".Box", "series " + s->series_instance_uid + " (" + s->modality + ")",
                q.series_instance_uid.empty() ? "a box applies to every series unless the question names one "
                                                "(\"SeriesInstanceUID\")"
                                              : "");
    }
  }
}

}  // namespace unibiomed::orthanc
