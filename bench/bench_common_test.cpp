// bench_common.h without libtorch: the argument parser, the median statistic and the bandwidth
// probe's bookkeeping.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "bench/bench_common.h"

#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

namespace {

using namespace unibiomed::bench;

std::vector<char*> argv_of(std::vector<std::string>& args) {
  std::vector<char*> out;
  for (auto& a : args) out.push_back(a.data());
  return out;
}

TEST(BenchCommon, MedianAndMedianSeconds) {
  EXPECT_EQ(median({}), 0);
  EXPECT_EQ(median({3, 1, 2}), 2);
  EXPECT_EQ(median({4, 1, 3, 2}), 3);  // the upper of the middle two
  int calls = 0;
  const double s = median_seconds([&] { ++calls; }, 2, 5);
  EXPECT_EQ(calls, 7);  // warm-up calls are made but not timed
  EXPECT_GE(s, 0);
}

TEST(BenchCommon, Integers) {
  EXPECT_EQ(parse_integer("12"), 12);
  EXPECT_EQ(parse_integer("-3"), -3);
  EXPECT_THROW(parse_integer("12x"), std::invalid_argument);
  EXPECT_THROW(parse_integer(""), std::invalid_argument);
  EXPECT_EQ(parse_integer_list("300,2600"), (std::vector<int64_t>{300, 2600}));
  EXPECT_THROW(parse_integer_list("3,,4"), std::invalid_argument);
  EXPECT_THROW(split_list("a,"), std::invalid_argument);
}

TEST(BenchCommon, CommandLineValues) {
  int n = 1;
  unsigned u = 2;
  std::string s = "x";
  bool f = false;
  CommandLine cl("prog", "what it does");
  cl.option("--n", "N", "a count", n)
      .option("--u", "N", "another", u)
      .option("--s", "S", "text", s)
      .flag("--f", "a flag", f);
  std::vector<std::string> args = {"prog", "--n", "5", "--u=7", "--s", "abc", "--f"};
  auto argv = argv_of(args);
  cl.parse(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(n, 5);
  EXPECT_EQ(u, 7u);
  EXPECT_EQ(s, "abc");
  EXPECT_TRUE(f);
  const std::string usage = cl.usage();
  EXPECT_NE(usage.find("usage: prog [--n N] [--u N] [--s S] [--f]"), std::string::npos) << usage;
  EXPECT_NE(usage.find("(default 1)"), std::string::npos) << usage;  // the value before parsing
}

TEST(BenchCommonDeathTest, CommandLineExits) {
  int n = 0;
  auto parse = [&](std::vector<std::string> args) {
    CommandLine cl("prog", "");
    cl.option("--n", "N", "a count", n);
    auto argv = argv_of(args);
    cl.parse(static_cast<int>(argv.size()), argv.data());
  };
  EXPECT_EXIT(parse({"prog", "--help"}), testing::ExitedWithCode(0), "");
  EXPECT_EXIT(parse({"prog", "--nope"}), testing::ExitedWithCode(2), "unknown argument '--nope'");
  EXPECT_EXIT(parse({"prog", "--n"}), testing::ExitedWithCode(2), "needs a value");
  EXPECT_EXIT(parse({"prog", "--n", "x"}), testing::ExitedWithCode(2), "bad value 'x' for --n");
  EXPECT_EXIT(parse({"prog", "--n=2", "stray"}), testing::ExitedWithCode(2), "unknown argument 'stray'");
}

TEST(BenchCommon, ResultLines) {
  const std::string line = ResultLine("vision_tiles_per_s")
                               .set("batch", 8)
                               .set("device", "cuda:0")
                               .set("dtype", std::string("bfloat16"))
                               .set("value", 123.4)
                               .set("unit", "tiles/s")
                               .set("peak_gpu_mib", int64_t{812})
                               .str();
  EXPECT_EQ(line,
            "RESULT name=vision_tiles_per_s batch=8 device=cuda:0 dtype=bfloat16 value=123.4 unit=tiles/s "
            "peak_gpu_mib=812");
  // Blanks and '=' never reach a field; an empty value stays a field.
  EXPECT_EQ(ResultLine("a b").set("k=x", "two words").set("e", "").str(), "RESULT name=a_b k_x=two_words e=-");
  EXPECT_EQ(result_number(0.000123456789), "0.000123457");
  EXPECT_EQ(result_number(-3), "-3");
  EXPECT_EQ(result_number(1234567.5), "1.23457e+06");
  EXPECT_EQ(result_number(std::numeric_limits<double>::quiet_NaN()), "nan");
  EXPECT_EQ(result_number(std::numeric_limits<double>::infinity()), "nan");
}

TEST(BenchCommon, BandwidthProbe) {
  const BandwidthProbe p = memory_read_probe(2, std::size_t{8} << 20, 1, 3);
  EXPECT_EQ(p.threads, 2);
  EXPECT_EQ(p.runs, 3);
  EXPECT_EQ(p.bytes, double(std::size_t{8} << 20));
  EXPECT_GT(p.gbps, 0);
  EXPECT_GT(memory_read_probe(0, std::size_t{1} << 20, 0, 1).threads, 0);  // 0: every core
}

}  // namespace
