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

}  // namespace
}  // namespace unibiomed::cli
