// The fuzz target's code path, without libFuzzer: deterministic mutations (truncations, byte
// flips, length fields set to huge values) of real files run through fuzz_dicom_replay in a
// separate process, which must survive all of them. The libFuzzer run itself is the CTest test
// fuzz_dicom_read_60s of a -DUNIBIOMED_FUZZ=ON clang build.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include "tests/dicom/dicom_test_support.h"
#include "tests/dicom/sample_fixture.h"

namespace unibiomed::dicom {
namespace {

TEST(FuzzReplay, MutatedFilesNeverCrashTheReader) {
  const auto replay = test::binary_dir() / "dicom" / "fuzz" / "fuzz_dicom_replay";
  ASSERT_TRUE(std::filesystem::exists(replay))
      << replay << " is not built: build it with cmake --build " << test::binary_dir() << " --target fuzz_dicom_replay";
  std::vector<std::filesystem::path> seeds = {test::sample_file("mr", 3), test::sample_file("us"),
                                              test::sample_file("wsi", 3)};
  for (const char* name : {"MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm", "MR_small_jp2klossless.dcm",
                           "MR_small_jpeg_ls_lossless.dcm", "JPEG2000.dcm", "rtdose.dcm", "ExplVR_BigEnd.dcm"}) {
    if (auto f = test::pydicom_test_file(name); !f.empty()) seeds.push_back(f);
  }
  test::TempDir dir("fuzz-replay");
  std::vector<std::string> argv = {replay.string()};
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto next = [&] {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;  // xorshift64
    return state;
  };
  int count = 0;
  for (const auto& seed : seeds) {
    const std::string original = test::read_file(seed);
    for (int m = 0; m < 24; ++m) {
      std::string bytes = original;
      if (m < 6) {
        bytes.resize(size_t(next() % bytes.size()));  // truncated anywhere
      } else if (m < 18) {
        for (int k = 0; k < 1 + m % 5; ++k) bytes[size_t(next() % bytes.size())] = char(next());
      } else {
        // A 32-bit length field somewhere in the header set to about 4 GiB.
        const size_t at = 132 + size_t(next() % std::min<size_t>(2000, bytes.size() - 140));
        for (int k = 0; k < 4; ++k) bytes[at + size_t(k)] = char(0xF0 + k);
      }
      const auto path = dir / ("m" + std::to_string(count++) + ".dcm");
      test::write_file(path, bytes);
      argv.push_back(path.string());
    }
  }
  auto r = test::run_command(argv);
  EXPECT_EQ(r.exit_code, 0) << r.output.substr(r.output.size() > 4000 ? r.output.size() - 4000 : 0);
  size_t ok = 0;
  for (size_t p = r.output.find("ok "); p != std::string::npos; p = r.output.find("ok ", p + 1)) ++ok;
  EXPECT_EQ(ok, size_t(count));
}

}  // namespace
}  // namespace unibiomed::dicom
