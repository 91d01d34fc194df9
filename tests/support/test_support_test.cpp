// Where the tests find their inputs: the reference set shipped in tests/reference (overridable),
// and the Qwen2.5 tokenizer, which is not shipped and may be absent.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "tests/support/test_support.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace unibiomed::test {
namespace {

namespace fs = std::filesystem;

// Sets (or, for nullptr, unsets) an environment variable for the lifetime of the object.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(ReferenceDir, IsTheRepositorysCopyByDefault) {
  const ScopedEnv env("UNIBIOMED_REFERENCE_DIR", nullptr);
  EXPECT_EQ(reference_dir(), source_dir() / "tests" / "reference");
  EXPECT_EQ(reference_missing_reason(), "");
  EXPECT_TRUE(fs::exists(reference_dir() / "model.safetensors"));
}

TEST(ReferenceDir, TheVariableOverridesItAndAWrongFolderIsReported) {
  TempDir dir;
  const ScopedEnv env("UNIBIOMED_REFERENCE_DIR", dir.path().c_str());
  EXPECT_EQ(reference_dir(), dir.path());
  EXPECT_FALSE(have_reference());
  EXPECT_NE(reference_missing_reason().find("UNIBIOMED_REFERENCE_DIR"), std::string::npos);
}

TEST(TokenizerDir, TheVariableWinsEvenWhenItPointsNowhere) {
  const ScopedEnv env("UNIBIOMED_QWEN2_TOKENIZER", "/nonexistent/qwen2-tokenizer");
  EXPECT_TRUE(tokenizer_dir().empty());
  EXPECT_NE(tokenizer_missing_reason().find("UNIBIOMED_QWEN2_TOKENIZER"), std::string::npos);
  EXPECT_NE(tokenizer_missing_reason().find("/nonexistent/qwen2-tokenizer"), std::string::npos);
}

TEST(TokenizerDir, AFolderWithTheVocabularyIsUsed) {
  TempDir dir;
  write_file(dir / "vocab.json", "{}");
  const ScopedEnv env("UNIBIOMED_QWEN2_TOKENIZER", dir.path().c_str());
  EXPECT_EQ(tokenizer_dir(), dir.path());
}

TEST(InstallHint, NamesTheMissingThingAndTheInstaller) {
  const std::string m = install_hint("dciodvfy", "Debian's dicom3tools");
  EXPECT_NE(m.find("dciodvfy is missing"), std::string::npos) << m;
  EXPECT_NE(m.find("dicom3tools"), std::string::npos) << m;
  EXPECT_NE(m.find("scripts/install-deps.sh"), std::string::npos) << m;
}

}  // namespace
}  // namespace unibiomed::test
