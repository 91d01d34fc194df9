// The validator wrappers must never read "no errors" into a validator that did not check the
// file: a missing program, a missing file, a file that is not DICOM and a program that printed
// nothing all come back as errors; a real clean file (from pydicom's test set) as none.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "tests/support/validators.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/support/test_support.h"

namespace unibiomed::test {
namespace {

namespace fs = std::filesystem;

const fs::path kPydicomFiles = "/usr/lib/python3/dist-packages/pydicom/data/test_files";

// Sets PATH for the lifetime of the object.
class ScopedPath {
 public:
  explicit ScopedPath(const std::string& value) : old_(std::getenv("PATH") ? std::getenv("PATH") : "") {
    ::setenv("PATH", value.c_str(), 1);
  }
  ~ScopedPath() { ::setenv("PATH", old_.c_str(), 1); }

 private:
  std::string old_;
};

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

fs::path pydicom_file(const std::string& name) {
  const fs::path p = kPydicomFiles / name;
  if (!fs::exists(p)) ADD_FAILURE() << install_hint(p.string() + " (pydicom's test files)", "Debian's python3-pydicom");
  return p;
}

TEST(Dciodvfy, CleanOnARealImageWithOnlyWarnings) {
  ASSERT_TRUE(have_program("dciodvfy")) << install_hint("dciodvfy", "Debian's dicom3tools");
  std::string output;
  const auto errors = dciodvfy_errors(pydicom_file("CT_small.dcm"), &output);
  EXPECT_TRUE(errors.empty()) << joined(errors) << output;
  EXPECT_NE(output.find("CTImage"), std::string::npos) << output;
}

TEST(Dciodvfy, ReportsTheErrorsOfAFileWithErrors) {
  // pydicom's test-SR.dcm references an image with an illegal UID root.
  const auto errors = dciodvfy_errors(pydicom_file("test-SR.dcm"));
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors.front().rfind("Error - ", 0), 0u) << joined(errors);
}

TEST(Dciodvfy, AMissingFileIsAnError) {
  TempDir dir;
  const auto errors = dciodvfy_errors(dir / "none.dcm");
  ASSERT_FALSE(errors.empty());
  EXPECT_NE(joined(errors).find("none.dcm"), std::string::npos) << joined(errors);
}

TEST(Dciodvfy, AFileThatIsNotDicomIsAnError) {
  TempDir dir;
  write_file(dir / "text.dcm", "not a DICOM file\n");
  const auto errors = dciodvfy_errors(dir / "text.dcm");
  EXPECT_FALSE(errors.empty());
  write_file(dir / "empty.dcm", "");
  EXPECT_FALSE(dciodvfy_errors(dir / "empty.dcm").empty());
}

TEST(Dciodvfy, AMissingProgramIsAnErrorNamingThePackage) {
  const ScopedPath path("/nonexistent");
  const auto errors = dciodvfy_errors(kPydicomFiles / "CT_small.dcm");
  ASSERT_EQ(errors.size(), 1u) << joined(errors);
  EXPECT_EQ(errors[0].rfind("dciodvfy did not run", 0), 0u) << errors[0];
  EXPECT_NE(errors[0].find("dicom3tools"), std::string::npos) << errors[0];
}

TEST(Dciodvfy, AProgramThatPrintsNothingIsAnError) {
  // A stand-in "dciodvfy" that exits 0 silently, as a broken installation might.
  TempDir dir;
  write_file(dir / "dciodvfy", "#!/bin/sh\nexit 0\n");
  fs::permissions(dir / "dciodvfy", fs::perms::owner_all);
  const ScopedPath path(dir.path().string());
  const auto errors = dciodvfy_errors(kPydicomFiles / "CT_small.dcm");
  ASSERT_EQ(errors.size(), 1u) << joined(errors);
  EXPECT_EQ(errors[0].rfind("dciodvfy did not check", 0), 0u) << errors[0];
}

TEST(PixelmedSr, CleanOnARealSr) {
  ASSERT_TRUE(have_program("java")) << install_hint("java", "Debian's default-jre-headless");
  ASSERT_TRUE(fs::exists(pixelmed_jar())) << install_hint(pixelmed_jar().string(), "Debian's pixelmed-apps");
  std::string output;
  const auto errors = pixelmed_sr_errors(pydicom_file("reportsi.dcm"), &output);
  EXPECT_TRUE(errors.empty()) << joined(errors) << output;
  EXPECT_NE(output.find("Found BasicTextSR IOD"), std::string::npos) << output;
}

TEST(PixelmedSr, AMissingFileOrANonSrIsAnError) {
  // pixelmed exits 0 in all three cases; only its output tells that nothing was validated.
  TempDir dir;
  auto errors = pixelmed_sr_errors(dir / "none.dcm");
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors[0].rfind("pixelmed did not check", 0), 0u) << joined(errors);
  write_file(dir / "text.dcm", "not a DICOM file\n");
  errors = pixelmed_sr_errors(dir / "text.dcm");
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors[0].rfind("pixelmed did not check", 0), 0u) << joined(errors);
  errors = pixelmed_sr_errors(pydicom_file("CT_small.dcm"));  // DICOM, but not an SR
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors[0].rfind("pixelmed did not check", 0), 0u) << joined(errors);
}

TEST(PixelmedSr, AMissingJavaIsAnErrorNamingThePackage) {
  const ScopedPath path("/nonexistent");
  const auto errors = pixelmed_sr_errors(kPydicomFiles / "reportsi.dcm");
  ASSERT_EQ(errors.size(), 1u) << joined(errors);
  EXPECT_EQ(errors[0].rfind("pixelmed did not run", 0), 0u) << errors[0];
  EXPECT_NE(errors[0].find("default-jre-headless"), std::string::npos) << errors[0];
}

}  // namespace
}  // namespace unibiomed::test
