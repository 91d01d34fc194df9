// Helpers shared by the test suites: where the reference data is, temporary folders, and
// running real programs (dciodvfy, storescu, Orthanc, /usr/bin/python3...) with their output.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace unibiomed::test {

// The reference numbers of the original UniBiomed code that the model tests compare against:
// tests/reference in the source tree (tests/reference/README.md), or $UNIBIOMED_REFERENCE_DIR.
// Never empty; reference_missing_reason() says whether the folder holds the set.
std::filesystem::path reference_dir();
// Empty when reference_dir() holds the reference set (its manifest.json), else a message naming
// the folder and the variable. Tests ASSERT on it: a missing reference set is a failure.
std::string reference_missing_reason();
inline bool have_reference() { return reference_missing_reason().empty(); }

// The real Qwen2.5 tokenizer files (vocab.json, merges.txt, tokenizer_config.json), which the
// project does not ship: $UNIBIOMED_QWEN2_TOKENIZER when set (even to a folder that does not
// exist), else ../shared/golden/qwen2-tokenizer beside the checkout. Empty when absent.
std::filesystem::path tokenizer_dir();
// Why tokenizer_dir() is empty, naming the variable (the one test input allowed to be absent).
std::string tokenizer_missing_reason();

// The message of a failure for a missing test dependency: "<what> is missing; <how> installs it
// (scripts/install-deps.sh installs every test dependency)".
std::string install_hint(const std::string& what, const std::string& how);

std::filesystem::path source_dir();  // the project's source root
std::filesystem::path binary_dir();  // the build folder
std::filesystem::path cli_path();    // the built `unibiomed` program
// Empty when cli_path() exists, else a message saying how to build it.
std::string cli_missing_reason();

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
