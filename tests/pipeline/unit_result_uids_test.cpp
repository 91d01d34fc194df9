// Result UIDs: deterministic, distinct, valid DICOM UIDs, and the same number Python's hashlib
// computes from the documented construction.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "pipeline/result_uids.h"
#include "tests/support/test_support.h"

namespace unibiomed::pipeline {
namespace {

TEST(ResultUids, SameInputsSameUidOtherInputsOtherUid) {
  const std::string a = derive_uid("seed-1", "1.2.3.4", "SEG instance");
  EXPECT_EQ(a, derive_uid("seed-1", "1.2.3.4", "SEG instance"));
  std::set<std::string> all;
  for (const char* seed : {"seed-1", "seed-2", ""})
    for (const char* series : {"1.2.3.4", "1.2.3.5"})
      for (const char* kind : {"SEG instance", "SEG series", "SR instance", "tracking 1"})
        all.insert(derive_uid(seed, series, kind));
  EXPECT_EQ(all.size(), 3u * 2u * 4u);
  // Concatenation ambiguity: the parts are length-prefixed.
  EXPECT_NE(derive_uid("ab", "c", "k"), derive_uid("a", "bc", "k"));
}

TEST(ResultUids, AreValidDicomUidsUnder2_25) {
  // PS3.5 9.1: components of digits without leading zeros, at most 64 characters.
  const std::regex uid(R"(2\.25\.(0|[1-9][0-9]*))");
  for (int i = 0; i < 200; ++i) {
    const std::string u = derive_uid(std::to_string(i), "1.2.840.1", "k");
    EXPECT_TRUE(std::regex_match(u, uid)) << u;
    EXPECT_LE(u.size(), 64u) << u;
  }
}

TEST(ResultUids, MatchAnIndependentPythonComputation) {
  ASSERT_TRUE(test::have_program("/usr/bin/python3")) << test::install_hint("/usr/bin/python3", "Debian's python3");
  const std::string script = R"PY(
import hashlib, sys
def uid(seed, series, kind):
    msg = "unibiomed result uid v1"
    for part in (seed, series, kind):
        msg += "\n" + str(len(part.encode())) + ":" + part
    b = bytearray(hashlib.sha256(msg.encode()).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x80
    b[8] = (b[8] & 0x3F) | 0x80
    return "2.25." + str(int.from_bytes(b, "big"))
for line in sys.stdin.read().splitlines():
    seed, series, kind = line.split("|")
    print(uid(seed, series, kind))
)PY";
  const std::vector<std::array<std::string, 3>> inputs = {{"seed", "1.2.3", "SEG instance"},
                                                          {"", "", ""},
                                                          {"x", "1.2.840.113619.2.55", "tracking 17"},
                                                          {"orthanc-abc", "9", "SR series"}};
  std::string stdin_text;
  for (const auto& in : inputs) stdin_text += in[0] + "|" + in[1] + "|" + in[2] + "\n";
  const auto result = test::run_command({"/usr/bin/python3", "-c", script}, stdin_text);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::istringstream lines(result.output);
  for (const auto& in : inputs) {
    std::string expected;
    std::getline(lines, expected);
    EXPECT_EQ(derive_uid(in[0], in[1], in[2]), expected);
  }
}

TEST(ResultUids, RandomSeedsDiffer) {
  EXPECT_NE(random_uid_seed(), random_uid_seed());
  EXPECT_EQ(random_uid_seed().size(), 32u);
}

}  // namespace
}  // namespace unibiomed::pipeline
