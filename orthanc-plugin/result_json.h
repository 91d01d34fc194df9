// The pipeline's results as the JSON the plugin shows (job content, study summary, ask answers)
// and explicit requests read from JSON (POST /unibiomed/studies/{id}/analyze and /unibiomed/ask).
// Field names follow Orthanc's REST style (PascalCase).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <nlohmann/json.hpp>
#include <string>

#include "pipeline/analyzer.h"

namespace unibiomed::orthanc {

nlohmann::json to_json(const pipeline::Finding& finding);
nlohmann::json to_json(const pipeline::SeriesOutcome& outcome);
std::string to_string(pipeline::SeriesOutcome::State state);

// {"Text": "...", "SeriesInstanceUID": "...", "Box": [x0, y0, x1, y1]}. Throws PluginError (400)
// naming the field.
pipeline::Question question_from_json(const nlohmann::json& j, const std::string& where);

// [x0, y0, x1, y1]: four non-negative integers with x1 > x0 and y1 > y0 (request_checks.h checks
// it against the image). Throws PluginError (400) naming `where`.
std::array<int, 4> box_from_json(const nlohmann::json& j, const std::string& where);

// {"Tasks": [...], "Questions": [...], "Rules": bool}; null -> the rules alone. Throws PluginError
// (400) naming the field.
// Limits of a request, each refused with a 400 naming the field: a question's text in bytes (the
// model's context holds the image's tokens too), the questions of one request.
inline constexpr size_t kMaxQuestionBytes = 2000;
inline constexpr size_t kMaxQuestions = 32;
pipeline::AnalysisRequest request_from_json(const nlohmann::json& j);

}  // namespace unibiomed::orthanc
