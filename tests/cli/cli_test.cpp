// The command line's contract with scripts: help, exit codes, argument errors.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

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
  r = run({"train", "--clip-frames", "1", out});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_NE(r.output.find("--clip-frames 2 to 24"), std::string::npos) << r.output;
  r = run({"train", "--phantoms", "0", out});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_NE(r.output.find("--phantoms 1 to 100"), std::string::npos) << r.output;
  r = run({"train", "--learning-rate", "1e-3x", out});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_NE(r.output.find("--learning-rate must be a number, not '1e-3x'"), std::string::npos) << r.output;
  r = run({"train", "--init", (dir / "nothing").string(), out});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_NE(r.output.find("is not a checkpoint folder"), std::string::npos) << r.output;
  r = run({"train", "--absent-targets", "1.5", out});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_NE(r.output.find("--absent-targets must be a share from 0 to 1, not '1.5'"), std::string::npos) << r.output;
  r = run({"train", "--clip-target-weight", "pancreas=x", out});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_NE(r.output.find("--clip-target-weight wants TARGET=W with a weight >= 0, not 'pancreas=x'"),
            std::string::npos)
      << r.output;
  r = run({"train", "--clip-target-weight", "lung=2", out});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_NE(r.output.find("'lung' is not a target of the clips (liver, kidney, spleen, pancreas, brain tumor)"),
            std::string::npos)
      << r.output;
  r = run({"train", "--fresh-memory-path", out});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_NE(r.output.find("--fresh-memory-path needs --init DIR"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(out)) << "nothing is written for a bad command line";
  r = run({"evaluate", "--video-phantoms", "-1", out});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_NE(r.output.find("--video-phantoms not negative"), std::string::npos) << r.output;
  r = run({"evaluate", "--video-phantoms", "101", out});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_NE(r.output.find("--video-phantoms at most 100"), std::string::npos) << r.output;
  r = run({"evaluate", "--examples", "0", out});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_NE(r.output.find("--examples must be positive"), std::string::npos) << r.output;
  // A folder without a checkpoint: the model error names the folder.
  r = run({"evaluate", out});
  EXPECT_EQ(r.exit_code, kExitModelError);
  EXPECT_NE(r.output.find(out), std::string::npos) << r.output;
  // The demo checkpoint's own training seed is not a held-out set.
  const std::string demo = (test::source_dir() / "samples" / "demo-checkpoint").string();
  r = run({"evaluate", "--seed", "1", "--examples", "1", demo});
  EXPECT_EQ(r.exit_code, kExitUsage) << r.output;
  EXPECT_NE(r.output.find("evaluation seed 1 is the seed"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("choose another --seed"), std::string::npos) << r.output;
  // Unless it is asked for as such: --training-set scores the training seed, and says so.
  r = run({"evaluate", "--training-set", "--examples", "1", "--video-phantoms", "0", demo});
  EXPECT_EQ(r.exit_code, kExitOk) << r.output;
  EXPECT_NE(r.output.find("training-set (seed 1, not held out) examples: 1"), std::string::npos) << r.output;
  r = run({"evaluate", "--training-set", "--seed", "5", demo});
  EXPECT_EQ(r.exit_code, kExitUsage) << r.output;
  EXPECT_NE(r.output.find("leave out --seed"), std::string::npos) << r.output;
  // Weights that `model train` did not write record no training seed.
  std::filesystem::create_directories(out);
  {
    std::ofstream f(std::filesystem::path(out) / "model.safetensors", std::ios::binary);
    const std::string header = "{}      ";
    const uint64_t size = header.size();
    f.write(reinterpret_cast<const char*>(&size), sizeof size);
    f << header;
  }
  r = run({"evaluate", "--training-set", out});
  EXPECT_EQ(r.exit_code, kExitUsage) << r.output;
  EXPECT_NE(r.output.find("records no training seed"), std::string::npos) << r.output;
}

// `unibiomed ask` checks the image before it loads the model (seconds), then goes through the
// pipeline's ask: the answer as a reader reads it, the model's own words kept, and a SEG coding
// the question's target as that target (here with the demo checkpoint on a sample CT slice).
TEST(CliProgram, AskChecksTheImageFirstAndCodesTheAskedTarget) {
  const test::TempDir dir("unibiomed-cli-ask");
  const std::string cli = test::cli_path().string();
  auto r = test::run_command({cli, "ask", "--model", (dir / "no-model").string(), (dir / "none.png").string(), "q"});
  EXPECT_EQ(r.exit_code, kExitBadInput) << r.output;
  EXPECT_NE(r.output.find("none.png does not exist"), std::string::npos) << r.output;
  ASSERT_EQ(test::run_command({cli, "samples", "write", (dir / "samples").string(), "--only", "ct", "--ct-slices", "4",
                               "--ct-size", "64"})
                .exit_code,
            kExitOk);
  std::vector<std::filesystem::path> slices;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir / "samples"))
    if (e.is_regular_file() && e.path().extension() == ".dcm") slices.push_back(e.path());
  ASSERT_FALSE(slices.empty());
  std::sort(slices.begin(), slices.end());
  const std::string slice = slices[slices.size() / 2].string();
  r = test::run_command({cli, "ask", "--model", (dir / "no-model").string(), "--view", "3", slice, "q"});
  EXPECT_EQ(r.exit_code, kExitBadInput) << r.output;
  EXPECT_NE(r.output.find("out of range"), std::string::npos) << r.output;

  const std::filesystem::path model = test::source_dir() / "samples" / "demo-checkpoint";
  ASSERT_TRUE(std::filesystem::exists(model / "model.safetensors")) << model;
  r = test::run_command({cli, "ask", "--model", model.string(), "--json", "--seg-out", (dir / "seg.dcm").string(), slice,
                         "Please segment liver in CT."});
  ASSERT_EQ(r.exit_code, kExitOk) << r.output;
  const auto json_start = r.output.find('{');
  ASSERT_NE(json_start, std::string::npos) << r.output;
  const auto j = nlohmann::json::parse(r.output.substr(json_start, r.output.rfind('}') + 1 - json_start));
  EXPECT_NE(j["text"].get<std::string>().find("[SEG]"), std::string::npos) << j.dump(2);  // the model's words
  EXPECT_EQ(j["answer"].get<std::string>().find("[SEG]"), std::string::npos) << j.dump(2);
  ASSERT_FALSE(j["findings"].empty()) << j.dump(2);
  EXPECT_EQ(j["findings"][0]["label"], "Liver");
  ASSERT_TRUE(std::filesystem::exists(dir / "seg.dcm")) << r.output;
  const auto codes = test::run_command(
      {"/usr/bin/python3", "-c",
       "import sys, pydicom\nd = pydicom.dcmread(sys.argv[1])\n"
       "print(' '.join(s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in d.SegmentSequence))",
       (dir / "seg.dcm").string()});
  ASSERT_EQ(codes.exit_code, 0) << codes.output;
  EXPECT_EQ(codes.output.substr(0, 8), "10200004") << codes.output;  // SNOMED CT Liver, not Lesion
}

// A question about a paired organ: one finding per side, each with its `side` in the JSON (the
// demo checkpoint on the sample chest PA, whose PatientOrientation says where left is).
TEST(CliProgram, AskAboutThePairedLungsAnswersPerSide) {
  const test::TempDir dir("unibiomed-cli-ask-sides");
  const std::string cli = test::cli_path().string();
  ASSERT_EQ(test::run_command({cli, "samples", "write", (dir / "samples").string(), "--only", "xray"}).exit_code,
            kExitOk);
  std::string image;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir / "samples"))
    if (e.is_regular_file() && e.path().extension() == ".dcm") image = e.path().string();
  ASSERT_FALSE(image.empty());
  const std::filesystem::path model = test::source_dir() / "samples" / "demo-checkpoint";
  const auto r = test::run_command(
      {cli, "ask", "--model", model.string(), "--json", image, "Please segment lung in chest X-ray."});
  ASSERT_EQ(r.exit_code, kExitOk) << r.output;
  const auto json_start = r.output.find('{');
  ASSERT_NE(json_start, std::string::npos) << r.output;
  const auto j = nlohmann::json::parse(r.output.substr(json_start, r.output.rfind('}') + 1 - json_start));
  std::map<std::string, std::string> side_of;
  for (const auto& f : j["findings"]) side_of[f["label"].get<std::string>()] = f.value("side", "");
  EXPECT_EQ(side_of, (std::map<std::string, std::string>{{"Left lung", "left"}, {"Right lung", "right"}})) << j.dump(2);
  // The findings of each [SEG]: every finding once, both sides of one [SEG] listed with it.
  std::vector<int> listed;
  for (const auto& s : j["segments"])
    for (const auto& n : s["findings"]) listed.push_back(n.get<int>());
  std::sort(listed.begin(), listed.end());
  EXPECT_EQ(listed, (std::vector<int>{0, 1})) << j.dump(2);
  // Both measured in mm; the notes may only say what was dropped (specks under the minimum size).
  ASSERT_TRUE(j["notes"].is_array()) << j.dump(2);
  for (const auto& note : j["notes"])
    EXPECT_NE(note.get<std::string>().find("dropped as noise"), std::string::npos) << note;
}

// Several IMAGEs are the frames of one video: checked before the model loads (a frame of
// another size is named), then asked in video mode; --mask-out writes one PNG per [SEG] and
// frame, --json lists them per segment in frame order with area, IoU and object score.
TEST(CliProgram, AskWithSeveralImagesIsOneVideo) {
  const test::TempDir dir("unibiomed-cli-ask-video");
  const std::string cli = test::cli_path().string();
  auto dicom_files = [&](const std::string& folder, const std::string& size) {
    EXPECT_EQ(test::run_command({cli, "samples", "write", (dir / folder).string(), "--only", "ct", "--ct-slices", "4",
                                 "--ct-size", size})
                  .exit_code,
              kExitOk);
    std::vector<std::string> files;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir / folder))
      if (e.is_regular_file() && e.path().extension() == ".dcm") files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    return files;
  };
  const auto frames = dicom_files("a", "64");
  const auto other = dicom_files("b", "48");
  ASSERT_EQ(frames.size(), 4u);
  ASSERT_FALSE(other.empty());
  const std::string no_model = (dir / "no-model").string();
  auto r = test::run_command({cli, "ask", "--model", no_model, frames[0], frames[1], other[0], "q"});
  EXPECT_EQ(r.exit_code, kExitBadInput) << r.output;
  EXPECT_NE(r.output.find("frame 3 (" + other[0] + ") is 48x48"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("frame 1 (" + frames[0] + ") is 64x64"), std::string::npos) << r.output;
  r = test::run_command({cli, "ask", "--model", no_model, frames[0], (dir / "absent.png").string(), "q"});
  EXPECT_EQ(r.exit_code, kExitBadInput) << r.output;
  EXPECT_NE(r.output.find("absent.png does not exist"), std::string::npos) << r.output;
  r = test::run_command({cli, "ask", "--model", no_model, "--seg-out", (dir / "x.dcm").string(), frames[0], frames[1], "q"});
  EXPECT_EQ(r.exit_code, kExitUsage) << r.output;
  r = test::run_command({cli, "ask", "--model", no_model, "--view", "1", frames[0], frames[1], "q"});
  EXPECT_EQ(r.exit_code, kExitUsage) << r.output;
  r = test::run_command({cli, "ask", "--model", no_model, frames[0]});
  EXPECT_EQ(r.exit_code, kExitUsage) << r.output;

  // The 4 slices as one video, asked of a checkpoint whose language model always answers
  // "Sure, [SEG]." (make-random --answer): the demo checkpoint's language model never saw
  // several images at once, so whether it answers with a [SEG] there is luck, not a test.
  const std::filesystem::path model = dir / "answer-fixture";
  ASSERT_EQ(test::run_command({cli, "model", "make-random", "--config", "tiny", "--answer", "Sure, [SEG].", model.string()})
                .exit_code,
            kExitOk);
  const auto masks = dir / "masks";
  std::vector<std::string> command = {cli, "ask", "--model", model.string(), "--json", "--mask-out", masks.string()};
  command.insert(command.end(), frames.begin(), frames.end());
  command.push_back("Please segment liver in CT.");
  r = test::run_command(command);
  ASSERT_EQ(r.exit_code, kExitOk) << r.output;
  const auto json_start = r.output.find('{');
  ASSERT_NE(json_start, std::string::npos) << r.output;
  const auto j = nlohmann::json::parse(r.output.substr(json_start, r.output.rfind('}') + 1 - json_start));
  EXPECT_EQ(j["mode"], "video");
  EXPECT_EQ(j["key_frames"], nlohmann::json::parse("[0, 1, 2, 3]"));  // the reference: first min(5, N)
  ASSERT_FALSE(j["segments"].empty()) << j.dump(2);
  for (size_t k = 0; k < j["segments"].size(); ++k) {
    const auto& list = j["segments"][k]["masks"];
    ASSERT_EQ(list.size(), 4u) << j.dump(2);
    for (size_t t = 0; t < 4; ++t) {
      char name[64];
      std::snprintf(name, sizeof name, "mask-%03zu-frame-%03zu.png", k, t);
      EXPECT_EQ(list[t]["frame"], t);
      EXPECT_EQ(list[t]["mask"], name);
      EXPECT_TRUE(list[t].contains("area") && list[t].contains("iou") && list[t].contains("object_score"));
      EXPECT_TRUE(std::filesystem::exists(masks / name)) << name;
    }
  }
  // One IMAGE keeps its file names.
  r = test::run_command({cli, "ask", "--model", model.string(), "--mask-out", (dir / "one").string(), frames[1],
                         "Please segment liver in CT."});
  ASSERT_EQ(r.exit_code, kExitOk) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir / "one" / "mask-000.png")) << r.output;

  // A checkpoint whose targets.json turns its video mode off is not asked about a video; one
  // image still is.
  {
    std::ofstream targets(model / "targets.json");
    targets << R"({"video": false, "modalities": {"CT": ["liver"]}})";
  }
  r = test::run_command(command);
  EXPECT_EQ(r.exit_code, kExitFailure) << r.output;
  EXPECT_NE(r.output.find("video mode (SAM2 memory path) is not to be used"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find((model / "targets.json").string()), std::string::npos) << r.output;
  r = test::run_command({cli, "ask", "--model", model.string(), frames[1], "Please segment liver in CT."});
  EXPECT_EQ(r.exit_code, kExitOk) << r.output;
}


// Every --dtype the command offers, on the demo checkpoint: float32 and bfloat16 answer (on a CPU
// without bfloat16 arithmetic slowly, but the same way), and a dtype this libtorch cannot run on
// the CPU ends in one line saying what to use, not a libtorch stack trace.
TEST(CliProgram, AskRunsInEveryDtypeOrSaysWhyNot) {
  const test::TempDir dir("unibiomed-cli-ask-dtype");
  const std::string cli = test::cli_path().string();
  ASSERT_EQ(test::run_command({cli, "samples", "write", (dir / "s").string(), "--only", "ct", "--ct-slices", "2",
                               "--ct-size", "64"})
                .exit_code,
            kExitOk);
  std::string slice;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir / "s"))
    if (e.is_regular_file() && e.path().extension() == ".dcm") slice = e.path().string();
  ASSERT_FALSE(slice.empty());
  const std::string model = (test::source_dir() / "samples" / "demo-checkpoint").string();
  std::map<std::string, nlohmann::json> answers;
  for (const std::string dtype : {"float32", "bfloat16", "float16"}) {
    const auto r = test::run_command({cli, "ask", "--model", model, "--dtype", dtype, "--json", slice,
                                      "Please segment liver in CT."});
    EXPECT_EQ(r.output.find("frame #"), std::string::npos) << dtype << ": " << r.output;
    EXPECT_EQ(r.output.find("Exception raised from"), std::string::npos) << dtype << ": " << r.output;
    if (dtype == "float16" && r.exit_code != kExitOk) {
      EXPECT_EQ(r.exit_code, kExitModelError) << r.output;
      EXPECT_NE(r.output.find("\"float16\" cannot run on the CPU with this libtorch"), std::string::npos) << r.output;
      EXPECT_NE(r.output.find("use float32 or bfloat16"), std::string::npos) << r.output;
      continue;
    }
    ASSERT_EQ(r.exit_code, kExitOk) << dtype << ": " << r.output;
    const auto start = r.output.find('{');
    ASSERT_NE(start, std::string::npos) << r.output;
    answers[dtype] = nlohmann::json::parse(r.output.substr(start, r.output.rfind('}') + 1 - start));
  }
  // The demo checkpoint's liver answer is the same text in bfloat16; its mask area within 2%.
  ASSERT_TRUE(answers.count("float32") && answers.count("bfloat16"));
  const auto& f = answers["float32"];
  const auto& b = answers["bfloat16"];
  EXPECT_EQ(f["text"], b["text"]) << f.dump() << "\n" << b.dump();
  ASSERT_EQ(f["segments"].size(), 1u) << f.dump();
  ASSERT_EQ(b["segments"].size(), 1u) << b.dump();
  const double fa = f["segments"][0]["area"].get<double>(), ba = b["segments"][0]["area"].get<double>();
  EXPECT_GT(fa, 0);
  EXPECT_NEAR(ba, fa, 0.02 * fa) << f.dump() << "\n" << b.dump();
}

// Runs argv with its stderr in a file of its own (run_command mixes the two): exit code, stdout,
// and the stderr lines.
struct SplitResult {
  int exit_code = -1;
  std::string out;
  std::vector<std::string> err_lines;
};
SplitResult run_split(const std::vector<std::string>& argv, const std::filesystem::path& err_file) {
  std::vector<std::string> sh = {"/bin/sh", "-c", "f=$1; shift; exec \"$@\" 2>\"$f\"", "sh", err_file.string()};
  sh.insert(sh.end(), argv.begin(), argv.end());
  const auto r = test::run_command(sh);
  SplitResult s{r.exit_code, r.output, {}};
  const std::string err = test::read_file(err_file);
  size_t start = 0;
  while (start < err.size()) {
    size_t end = err.find('\n', start);
    if (end == std::string::npos) end = err.size();
    if (end > start) s.err_lines.push_back(err.substr(start, end - start));
    start = end + 1;
  }
  return s;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

// Every --dtype of `ask` and `analyze` end to end on the CPU, with the tiny random checkpoint
// whose language model always answers "Sure, [SEG]." (make-random --answer), so that every run
// goes through SAM2 and makes a mask: float32 and bfloat16 answer with a mask (bfloat16 through
// the mask decoder's transposed convolutions, which libtorch 1.13 lacks in bfloat16 on the CPU),
// and the summary says the dtype was used. float16, which libtorch 1.13 cannot multiply on the
// CPU, and values that are no dtype end with a nonzero exit and one error line on stderr naming
// the value and what to use, never a libtorch stack trace. (A libtorch with float16 CPU kernels
// runs float16 instead; then it must answer like the others.)
TEST(CliProgram, AskAndAnalyzeInEveryDtypeMakeAMaskOrSayWhyNot) {
  const test::TempDir dir("unibiomed-cli-dtypes");
  const std::string cli = test::cli_path().string();
  const std::string model = (dir / "m").string();
  auto r = test::run_command({cli, "model", "make-random", "--config", "tiny", "--answer", "Sure, [SEG].", model});
  ASSERT_EQ(r.exit_code, kExitOk) << r.output;
  ASSERT_EQ(test::run_command({cli, "samples", "write", (dir / "s").string(), "--only", "ct", "--ct-slices", "2",
                               "--ct-size", "64"})
                .exit_code,
            kExitOk);
  std::vector<std::string> slices;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir / "s"))
    if (e.is_regular_file() && e.path().extension() == ".dcm") slices.push_back(e.path().string());
  ASSERT_EQ(slices.size(), 2u);
  std::sort(slices.begin(), slices.end());
  const std::string question = "Please segment liver in CT.";
  const auto err_file = dir / "stderr.txt";
  auto ask = [&](const std::string& dtype) {
    return run_split({cli, "ask", "--model", model, "--dtype", dtype, "--json", "--mask-out",
                      (dir / ("masks-" + dtype)).string(), slices[1], question},
                     err_file);
  };
  auto analyze = [&](const std::string& dtype) {
    return run_split({cli, "analyze", (dir / "s").string(), "-o", (dir / ("out-" + dtype)).string(), "--model", model,
                      "--dtype", dtype, "--no-rules", "--ask", question, "--seed", "1", "--no-previews"},
                     err_file);
  };
  // What a run that answers must show.
  auto check_answers = [&](const std::string& dtype, const std::string& torch_name) {
    const auto a = ask(dtype);
    ASSERT_EQ(a.exit_code, kExitOk) << dtype << ": " << a.out << joined(a.err_lines);
    const auto j = nlohmann::json::parse(a.out);
    EXPECT_EQ(j["text"], "Sure, [SEG].") << dtype;
    ASSERT_EQ(j["segments"].size(), 1u) << dtype << ": " << j.dump(2);
    EXPECT_GT(j["segments"][0]["area"].get<int64_t>(), 0) << dtype << ": the random SAM2 weights gave an empty mask";
    EXPECT_TRUE(std::filesystem::exists(dir / ("masks-" + dtype) / "mask-000.png")) << dtype;
    std::cout << "[ dtype    ] ask " << dtype << ": mask area " << j["segments"][0]["area"] << " of 4096\n";

    const auto b = analyze(dtype);
    ASSERT_EQ(b.exit_code, kExitOk) << dtype << ": " << b.out << joined(b.err_lines);
    const auto s = nlohmann::json::parse(test::read_file(dir / ("out-" + dtype) / "summary.json"));
    ASSERT_FALSE(s["findings"].empty()) << dtype << ": " << s.dump(2);
    EXPECT_EQ(s["findings"][0]["model_answer"], "Sure, [SEG].") << dtype;
    EXPECT_NE(s["model"]["description"].get<std::string>().find("cpu " + torch_name + ")"), std::string::npos)
        << dtype << ": " << s["model"].dump();
  };
  check_answers("float32", "Float");
  check_answers("bfloat16", "BFloat16");

  // Refused: one error line, "unibiomed <command>: ...", naming the value; the rest of stderr is
  // the progress lines analyze prints before it loads the model.
  auto check_refused = [&](const std::string& command, const SplitResult& x, const std::string& needle) {
    const std::string all = x.out + joined(x.err_lines);
    EXPECT_NE(x.exit_code, kExitOk) << command << ": " << all;
    EXPECT_EQ(x.exit_code, kExitModelError) << command << ": " << all;
    for (const char* trace : {"frame #", "Exception raised from", "terminate called", "what():"})
      EXPECT_EQ(all.find(trace), std::string::npos) << command << ": " << all;
    std::vector<std::string> errors;
    for (const auto& l : x.err_lines)
      if (l.rfind("unibiomed " + command + ":", 0) == 0) errors.push_back(l);
    ASSERT_EQ(errors.size(), 1u) << command << ": " << all;
    EXPECT_NE(errors[0].find(needle), std::string::npos) << errors[0];
    for (const auto& l : x.err_lines)
      EXPECT_TRUE(l == errors[0] || l.rfind("loading the model", 0) == 0) << command << ": unexpected stderr line: " << l;
  };
  for (const std::string command : {"ask", "analyze"}) {
    const auto half = command == "ask" ? ask("float16") : analyze("float16");
    if (half.exit_code == kExitOk) {
      std::cout << "[ dtype    ] " << command << " float16 runs on this libtorch's CPU\n";
      if (command == "ask") {
        const auto j = nlohmann::json::parse(half.out);
        ASSERT_EQ(j["segments"].size(), 1u) << j.dump(2);
        EXPECT_GT(j["segments"][0]["area"].get<int64_t>(), 0);
      }
    } else {
      check_refused(command, half, "\"float16\" cannot run on the CPU");
      EXPECT_NE(joined(half.err_lines).find("use float32 or bfloat16"), std::string::npos) << joined(half.err_lines);
    }
    for (const std::string bad : {"float64", "int8"})
      check_refused(command, command == "ask" ? ask(bad) : analyze(bad), "\"" + bad + "\" is not supported");
  }
}

}  // namespace
}  // namespace unibiomed::cli
