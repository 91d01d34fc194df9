// What the dicom/ and samples/ suites share: the reference Python (Debian's /usr/bin/python3
// with pydicom and numpy, an independent reader), pydicom's bundled test files and the
// helper scripts next to these tests.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <filesystem>
#include <string>

#include "tests/support/test_support.h"

namespace unibiomed::test {

inline constexpr const char* kReferencePython = "/usr/bin/python3";

// Whether /usr/bin/python3 can import pydicom and numpy (checked once).
inline bool have_reference_python() {
  static const bool ok = std::filesystem::exists(kReferencePython) &&
                         run_command({kReferencePython, "-c", "import pydicom, numpy"}).exit_code == 0;
  return ok;
}

inline std::string reference_python_missing() {
  return install_hint(std::string(kReferencePython) + " with pydicom and numpy",
                      "Debian's python3-pydicom and python3-numpy");
}

inline std::filesystem::path pydicom_test_files_dir() {
  return "/usr/lib/python3/dist-packages/pydicom/data/test_files";
}

// A file of pydicom's test set, or an empty path when it is not installed.
inline std::filesystem::path pydicom_test_file(const std::string& name) {
  auto p = pydicom_test_files_dir() / name;
  return std::filesystem::exists(p) ? p : std::filesystem::path();
}

inline std::string pydicom_files_missing() {
  return install_hint("pydicom's test files (" + pydicom_test_files_dir().string() + ")", "Debian's python3-pydicom");
}

inline std::string dicom_test_script(const std::string& name) {
  return (source_dir() / "tests" / "dicom" / name).string();
}

}  // namespace unibiomed::test
