// The command line's contract with scripts: help, exit codes, argument errors.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include "cli/arg_parser.h"
#include "cli/commands.h"
#include "tests/support/test_support.h"

namespace unibiomed::cli {
namespace {

TEST(ArgParserTest, OptionsFlagsAndPositionals) {
  ArgParser p("x [options] FILE...", "test");
  p.option("--model", "DIR", "model folder", "default-dir").option("--ask", "TEXT", "question", std::nullopt, true);
  p.flag("--json", "json output").positional("FILE", "inputs", 1, 3);
  ASSERT_TRUE(p.parse({"a.dcm", "--ask", "q1", "--ask=q2", "--json", "b.dcm"}));
  EXPECT_EQ(p.positionals(), (std::vector<std::string>{"a.dcm", "b.dcm"}));
  EXPECT_EQ(p.get_all("--ask"), (std::vector<std::string>{"q1", "q2"}));
  EXPECT_EQ(p.get("--model"), "default-dir");
  EXPECT_TRUE(p.is_set("--json"));
}

TEST(ArgParserTest, ErrorsNameTheOption) {
  auto fails_with = [](std::vector<std::string> args, const std::string& text) {
    ArgParser p("x", "test");
    p.option("--n", "N", "a number").positional("FILE", "inputs", 1, 1);
    try {
      p.parse(args);
      p.get_int("--n");
    } catch (const UsageError& e) {
      return std::string(e.what()).find(text) != std::string::npos;
    }
    return false;
  };
  EXPECT_TRUE(fails_with({"--bogus", "f"}, "unknown option '--bogus'"));
  EXPECT_TRUE(fails_with({"f", "--n"}, "needs a value"));
  EXPECT_TRUE(fails_with({"--n", "x1", "f"}, "needs an integer, got 'x1'"));
  EXPECT_TRUE(fails_with({"--n", "1"}, "missing FILE"));
  EXPECT_TRUE(fails_with({"--n", "1", "f", "g"}, "unexpected argument 'g'"));
}

TEST(ArgParserTest, SeedsAreUnsignedIntegers) {
  auto seed = [](const std::string& value) {
    ArgParser p("x", "test");
    p.option("--seed", "N", "a seed");
    p.parse({"--seed", value});
    return p.get_seed("--seed");
  };
  EXPECT_EQ(seed("0"), 0u);
  EXPECT_EQ(seed("18446744073709551"), 18446744073709551u);
  for (const std::string bad : {"-1", "1.5", "", "x", "12345678901234567890"})
    EXPECT_THROW(seed(bad), UsageError) << bad;
}

TEST(CliProgram, OverviewAndUnknownCommand) {
  auto help = test::run_command({test::cli_path().string(), "--help"});
  EXPECT_EQ(help.exit_code, kExitOk);
  EXPECT_NE(help.output.find("model tokenize"), std::string::npos);
  auto unknown = test::run_command({test::cli_path().string(), "frobnicate"});
  EXPECT_EQ(unknown.exit_code, kExitUsage);
  EXPECT_NE(unknown.output.find("unknown command 'frobnicate'"), std::string::npos);
  auto none = test::run_command({test::cli_path().string()});
  EXPECT_EQ(none.exit_code, kExitUsage);
}

TEST(CliProgram, ModelTrainAndEvaluateNameWhatIsWrong) {
  const test::TempDir dir("unibiomed-cli-train");
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {test::cli_path().string(), "model"});
    return test::run_command(args);
  };
  const std::string out = (dir / "out").string();
  auto r = run({"train", "--seed", "-3", out});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_NE(r.output.find("--seed must be an unsigned integer, not '-3'"), std::string::npos) << r.output;
  r = run({"train", "--steps", "0", out});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_NE(r.output.find("--steps"), std::string::npos) << r.output;
  r = run({"train", "--family", "diagnosis", out});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_NE(r.output.find("not 'diagnosis'"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(out)) << "nothing is written for a bad command line";
  r = run({"evaluate", "--examples", "0", out});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_NE(r.output.find("--examples must be positive"), std::string::npos) << r.output;
  // A folder without a checkpoint: the model error names the folder.
  r = run({"evaluate", out});
  EXPECT_EQ(r.exit_code, kExitModelError);
  EXPECT_NE(r.output.find(out), std::string::npos) << r.output;
}

}  // namespace
}  // namespace unibiomed::cli
