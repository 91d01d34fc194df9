// Checks of explicit requests that need more than their JSON (result_json.h reads the JSON):
// task names against the task rules in effect, a question's series against the study, a box
// against the image it is drawn on. Every check runs before a request is accepted, so a rejected
// request changes nothing; each throws PluginError (400) naming the field.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "config/task_rules.h"
#include "orthanc-plugin/orthanc_client.h"
#include "orthanc-plugin/study_record.h"
#include "pipeline/analyzer.h"

namespace unibiomed::orthanc {

struct ImageSize {
  int columns = 0;
  int rows = 0;
};

// The task names of the rules' tasks, sorted, each once.
std::vector<std::string> task_names(const config::TaskRules& rules);

// Every requested task is one of `known`: `Tasks[1]: unknown task "foo" (known: a, b, c)`.
void check_task_names(const std::vector<std::string>& tasks, const std::vector<std::string>& known);

// A box [x0, y0, x1, y1] is in pixels of the view the model sees, the frame centred in a square
// of its longer side (dicom/view.h), corners included: it must lie inside that square. `where`
// names the field ("Box", "Questions[0].Box"), `image` the image ("instance <id>"); `hint`
// ends the message when not empty.
void check_box(const std::array<int, 4>& box, const ImageSize& size, const std::string& where, const std::string& image,
               const std::string& hint = {});

// Columns and Rows of an instance stored in Orthanc; nullopt when it has none (not an image).
std::optional<ImageSize> image_size(const OrthancClient& client, const std::string& instance_id);

// An analysis request for `study`: known tasks, each question's SeriesInstanceUID one of the
// study's source series, each box inside the images of every series it applies to.
void check_analysis_request(const pipeline::AnalysisRequest& request, const StudyInventory& study,
                            const std::vector<std::string>& known_tasks, const OrthancClient& client);

}  // namespace unibiomed::orthanc
