// Helpers shared by the test suites: where the reference data is, temporary folders, and
// running real programs (dciodvfy, storescu, Orthanc, /usr/bin/python3...) with their output.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace unibiomed::test {

// ../shared/golden next to the checkout, or $UNIBIOMED_GOLDEN_DIR. Empty when absent.
std::filesystem::path golden_dir();
// The reason to skip when golden_dir() is empty, naming the variable and the default.
std::string golden_missing_reason();

std::filesystem::path source_dir();  // the project's source root
std::filesystem::path binary_dir();  // the build folder
std::filesystem::path cli_path();    // the built `unibiomed` program

// A fresh folder under the system temp dir, removed (with its content) on destruction unless
// UNIBIOMED_KEEP_TEST_FILES is set.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "unibiomed-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;   // the process's exit status, or 128+signal
  std::string output;   // stdout and stderr together
};

// Runs argv (no shell), waits, returns exit code and combined output.
CommandResult run_command(const std::vector<std::string>& argv, const std::optional<std::string>& stdin_text = {});
// Whether a program is on PATH (or an absolute path that is executable).
bool have_program(const std::string& name);

std::string read_file(const std::filesystem::path& path);
void write_file(const std::filesystem::path& path, const std::string& content);

}  // namespace unibiomed::test
