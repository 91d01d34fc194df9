// SPDX-License-Identifier: GPL-3.0-or-later
#include "tests/orthanc-plugin/test_model.h"

#include "tests/support/test_support.h"

namespace unibiomed::test {

namespace fs = std::filesystem;

namespace {

#ifdef UNIBIOMED_PLUGIN_FAKE_ANALYZER
constexpr bool kFake = true;
#else
constexpr bool kFake = false;
#endif

struct ModelFolder {
  TempDir dir{"unibiomed-plugin-model"};
  fs::path path;
  std::string why_missing;
  ModelFolder() {
    if (kFake) {
      write_file(dir / "config.json", "{}");
      path = dir.path();
      return;
    }
    const CommandResult made =
        run_command({cli_path().string(), "model", "make-random", "--config", "tiny", (dir / "tiny").string()});
    if (made.exit_code == 0 && fs::exists(dir / "tiny" / "config.json")) {
      path = dir / "tiny";
      return;
    }
    path = golden_dir();
    if (path.empty())
      why_missing = "no test checkpoint: `unibiomed model make-random --config tiny` failed (" + made.output +
                    ") and " + golden_missing_reason();
  }
};

ModelFolder& model_folder() {
  static ModelFolder folder;
  return folder;
}

}  // namespace

fs::path test_model_dir() { return model_folder().path; }
std::string test_model_missing_reason() { return model_folder().why_missing; }

std::vector<fs::path> sample_ct_study(const fs::path& folder, StudySpec& spec) {
  spec.slices = 4;
  return write_ct_series(folder, spec);
}

std::map<std::string, std::string> slow_analysis_environment() {
  // Read by the fake analyzer only; the real model is slow enough on its own with more slices.
  return {{"UNIBIOMED_FAKE_ANALYZER_DELAY_MS", "400"}};
}

int slow_study_slices() { return kFake ? 8 : 24; }

}  // namespace unibiomed::test
