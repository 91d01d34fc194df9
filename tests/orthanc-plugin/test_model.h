// What the plugin tests analyse with, and how they make an analysis last long enough to be
// interrupted: the shipped demo checkpoint (samples/demo-checkpoint, the real architecture
// trained on the sample phantoms), so that the CT rule's questions get grounded answers and SEG
// objects through the whole pipeline, SAM2 included.
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

// The sample generator's CT study (`unibiomed samples write --only ct`, small); fills the UIDs
// into `spec`.
std::vector<std::filesystem::path> sample_ct_study(const std::filesystem::path& folder, StudySpec& spec);

// Environment for Orthanc and a slice count such that the analysis of one study lasts a few
// seconds (for the crash and cancel tests).
std::map<std::string, std::string> slow_analysis_environment();
int slow_study_slices();

}  // namespace unibiomed::test
