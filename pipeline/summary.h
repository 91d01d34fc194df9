// The JSON summary of a study's analysis, for people and scripts: series outcomes, findings
// with measurements and confidence, report-level answers, the result objects' file names, the
// model's identity (weights hash) and the time spent per stage.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "pipeline/analyzer.h"
#include "pipeline/study_analyzer.h"

namespace unibiomed::pipeline {

// One entry of summary.json's "objects": kind, file, UIDs, size (and a SEG's form).
nlohmann::json summary_object(const ResultObject& object);

std::string summary_json(const StudyResult& result, const std::string& model_description,
                         const std::string& rules_source, const StageTimings& timings);

}  // namespace unibiomed::pipeline
