// SPDX-License-Identifier: GPL-3.0-or-later
#include "tests/support/test_support.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace unibiomed::test {

namespace fs = std::filesystem;

fs::path source_dir() { return fs::path(UNIBIOMED_SOURCE_DIR); }
fs::path binary_dir() { return fs::path(UNIBIOMED_BINARY_DIR); }
fs::path cli_path() { return binary_dir() / "cli" / "unibiomed"; }

std::string cli_missing_reason() {
  if (fs::exists(cli_path())) return {};
  return "the unibiomed program is not built (" + cli_path().string() + "): build it with cmake --build " +
         binary_dir().string() + " --target unibiomed";
}

fs::path reference_dir() {
  if (const char* env = std::getenv("UNIBIOMED_REFERENCE_DIR"); env && *env) return fs::path(env);
  return source_dir() / "tests" / "reference";
}

std::string reference_missing_reason() {
  const fs::path dir = reference_dir();
  if (fs::exists(dir / "manifest.json")) return {};
  const char* env = std::getenv("UNIBIOMED_REFERENCE_DIR");
  return "the reference data is missing: " + (dir / "manifest.json").string() + " does not exist" +
         (env && *env ? " (UNIBIOMED_REFERENCE_DIR is set; unset it to use the copy in tests/reference)"
                      : " (the repository ships it in tests/reference; see tests/reference/README.md)");
}

fs::path tokenizer_dir() {
  fs::path dir;
  if (const char* env = std::getenv("UNIBIOMED_QWEN2_TOKENIZER"); env && *env)
    dir = env;
  else
    dir = source_dir().parent_path() / "shared" / "golden" / "qwen2-tokenizer";
  return fs::exists(dir / "vocab.json") ? dir : fs::path();
}

std::string tokenizer_missing_reason() {
  const char* env = std::getenv("UNIBIOMED_QWEN2_TOKENIZER");
  const std::string where = env && *env ? std::string(env) + " (UNIBIOMED_QWEN2_TOKENIZER)"
                                        : (source_dir().parent_path() / "shared" / "golden" / "qwen2-tokenizer").string();
  return "the Qwen2.5 tokenizer files (vocab.json, merges.txt, tokenizer_config.json) are not in " + where +
         ": the project does not ship them; set UNIBIOMED_QWEN2_TOKENIZER to a folder holding them "
         "(tests/reference/README.md)";
}

std::string install_hint(const std::string& what, const std::string& how) {
  return what + " is missing; " + how + " installs it (scripts/install-deps.sh installs every test dependency)";
}

TempDir::TempDir(const std::string& prefix) {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    fs::path p = fs::temp_directory_path() / (prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(rd() % 1000000));
    std::error_code ec;
    if (fs::create_directory(p, ec)) {
      path_ = p;
      return;
    }
  }
  throw std::runtime_error("cannot create a temporary folder");
}

TempDir::~TempDir() {
  if (std::getenv("UNIBIOMED_KEEP_TEST_FILES")) return;
  std::error_code ec;
  fs::remove_all(path_, ec);
}

CommandResult run_command(const std::vector<std::string>& argv, const std::optional<std::string>& stdin_text) {
  CommandResult result;
  int out_pipe[2], in_pipe[2];
  if (::pipe(out_pipe) != 0 || ::pipe(in_pipe) != 0) throw std::runtime_error("pipe failed");
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::dup2(in_pipe[0], 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(out_pipe[1], 2);
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    ::close(in_pipe[0]);
    ::close(in_pipe[1]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "cannot run %s\n", args[0]);
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(in_pipe[0]);
  if (stdin_text) {
    const char* p = stdin_text->data();
    size_t left = stdin_text->size();
    while (left > 0) {
      ssize_t n = ::write(in_pipe[1], p, left);
      if (n <= 0) break;
      p += n;
      left -= static_cast<size_t>(n);
    }
  }
  ::close(in_pipe[1]);
  char buf[65536];
  ssize_t n;
  while ((n = ::read(out_pipe[0], buf, sizeof buf)) > 0) result.output.append(buf, static_cast<size_t>(n));
  ::close(out_pipe[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

bool have_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':'))
    if (!dir.empty() && ::access((fs::path(dir) / name).c_str(), X_OK) == 0) return true;
  return false;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

}  // namespace unibiomed::test
