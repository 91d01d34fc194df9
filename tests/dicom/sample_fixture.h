// Sample studies written on first use, once per test process (samples/ generator), into a
// temporary folder that lives until the process ends.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "samples/sample_studies.h"
#include "tests/support/test_support.h"

namespace unibiomed::test {

// The folder of one sample ("ct", "mr", "xray", "us", "fundus", "dermoscopy", "endoscopy",
// "wsi"), written with the default options.
inline std::filesystem::path sample_folder(const std::string& name) {
  static std::unique_ptr<TempDir> root;
  static std::map<std::string, samples::SampleSeries> written;
  if (!root) root = std::make_unique<TempDir>("dicom-samples");
  auto it = written.find(name);
  if (it == written.end()) {
    samples::SampleOptions options;
    options.only = {name};
    it = written.emplace(name, samples::write_samples(root->path() / "all", options).front()).first;
  }
  return it->second.folder;
}

inline std::filesystem::path sample_file(const std::string& name, int number = 1) {
  char file[32];
  std::snprintf(file, sizeof file, "IM%04d.dcm", number);
  return sample_folder(name) / file;
}

}  // namespace unibiomed::test
