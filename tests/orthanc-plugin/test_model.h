// What the plugin tests analyse with, and how they make an analysis last long enough to be
// interrupted: a tiny checkpoint of the real architecture whose language model answers
// "Sure, [SEG]." to everything (`unibiomed model make-random --config tiny --answer ...`), so
// that every task goes through the real pipeline, SAM2 included, and yields SEG objects.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "tests/orthanc-plugin/test_studies.h"

namespace unibiomed::test {

// The checkpoint folder for UniBiomed.ModelDirectory; empty when none can be had.
std::filesystem::path test_model_dir();
std::string test_model_missing_reason();

// The sample CT study the tests analyse (the sample generator's when `unibiomed samples write`
// is available, else a small synthetic CT series); fills the UIDs into `spec`.
std::vector<std::filesystem::path> sample_ct_study(const std::filesystem::path& folder, StudySpec& spec);

// Environment for Orthanc and a slice count such that the analysis of one study lasts a few
// seconds (for the crash and cancel tests).
std::map<std::string, std::string> slow_analysis_environment();
int slow_study_slices();

}  // namespace unibiomed::test
