// SPDX-License-Identifier: GPL-3.0-or-later
#include "tests/orthanc-plugin/test_model.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "tests/support/test_support.h"

namespace unibiomed::test {

namespace fs = std::filesystem;

namespace {

fs::path demo_checkpoint() { return source_dir() / "samples" / "demo-checkpoint"; }

}  // namespace

fs::path test_model_dir() { return fs::exists(demo_checkpoint() / "config.json") ? demo_checkpoint() : fs::path(); }
std::string test_model_missing_reason() {
  return "the demo checkpoint is missing: " + (demo_checkpoint() / "config.json").string();
}

std::vector<fs::path> sample_ct_study(const fs::path& folder, StudySpec& spec) {
  // The project's sample generator (the demo sends the same study), kept small for the tests.
  const CommandResult r = run_command({cli_path().string(), "samples", "write", folder.string(), "--only", "ct",
                                       "--ct-slices", "4", "--ct-size", "64"});
  if (r.exit_code != 0) throw std::runtime_error("unibiomed samples write failed:\n" + r.output);
  const auto manifest = nlohmann::json::parse(read_file(folder / "manifest.json"));
  const auto& ct = manifest.at(0);
  spec.study_uid = ct.at("study_instance_uid");
  spec.series_uid = ct.at("series_instance_uid");
  spec.patient_id = ct.at("patient_id");
  spec.slices = static_cast<int>(ct.at("files").size());
  std::vector<fs::path> files;
  for (const auto& f : ct.at("files")) files.push_back(folder / f.get<std::string>());
  return files;
}

std::map<std::string, std::string> slow_analysis_environment() {
  // The model itself is slow enough with more slices (slow_study_slices); nothing to add.
  return {};
}

int slow_study_slices() { return 24; }

}  // namespace unibiomed::test
