// `unibiomed model tokenize` and `unibiomed model generate` run as real programs on the tiny
// reference model (tests/reference: llm.safetensors text_input_ids -> text_greedy_ids, e2e prompt ids),
// and the exit codes and messages of the mistakes a user makes.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "inference/generation.h"
#include "tests/inference/llm_test_support.h"
#include "tests/inference/reference_answer_support.h"

namespace unibiomed::inference {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::golden_tensor;
using test::to_ids;

class ModelTextCommands : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
    ASSERT_TRUE(fs::exists(test::cli_path())) << test::cli_missing_reason();
    // A model folder: the reference config and weights plus the byte-level tokenizer.
    fs::create_symlink(test::reference_dir() / "config.json", model_ / "config.json");
    fs::create_symlink(test::reference_dir() / "model.safetensors", model_ / "model.safetensors");
    test::write_reference_tokenizer(model_.path());
  }
  test::CommandResult unibiomed(std::vector<std::string> args) {
    args.insert(args.begin(), test::cli_path().string());
    return test::run_command(args);
  }
  // The JSON document on the last line of the output (warnings go before it, on stderr).
  static json last_json(const std::string& output) {
    const size_t end = output.find_last_not_of('\n');
    const size_t begin = output.rfind('\n', end);
    return json::parse(output.substr(begin == std::string::npos ? 0 : begin + 1, end - (begin == std::string::npos ? 0 : begin + 1) + 1));
  }
  test::TempDir model_{"unibiomed-llm-model"};
};

TEST_F(ModelTextCommands, TokenizeGivesTheReferencePromptIds) {
  const json e2e = json::parse(test::read_file(test::reference_dir() / "e2e.json"));
  const auto r = unibiomed({"model", "tokenize", model_.path().string(), e2e["full_input_text"]});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(last_json(r.output).get<std::vector<int64_t>>(), to_ids(golden_tensor("e2e.safetensors", "prompt_input_ids")));
  const auto t = unibiomed({"model", "tokenize", "--tokens", model_.path().string(), "<img>ab"});
  ASSERT_EQ(t.exit_code, 0) << t.output;
  // "<img>" is a special token of tiny_vocab.json, "a" and "b" their bytes.
  EXPECT_EQ(last_json(t.output),
            (json{{"ids", {test::tiny_token_id("<img>"), 97, 98}}, {"tokens", {"<img>", "a", "b"}}}));
}

TEST_F(ModelTextCommands, GenerateFromIdsIsTheReferenceGreedyDecoding) {
  const auto prompt = to_ids(golden_tensor("llm.safetensors", "text_input_ids"));
  // The reference ran as many steps as it recorded, without stopping on eos or a stop word; the
  // program stops on both (eos of the tokenizer, the template's stop word): its answer is the
  // reference's up to where those would stop it (e2e.json holds the template's stop words).
  const auto reference = to_ids(golden_tensor("llm.safetensors", "text_greedy_ids"));
  const int steps = static_cast<int>(reference.size());
  const auto r = unibiomed({"model", "generate", model_.path().string(), "--prompt-ids", json(prompt).dump(),
                            "--max-new-tokens", std::to_string(steps)});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json out = last_json(r.output);
  test::TinyLlm tiny;
  const test::GreedyStop stop = test::first_stop(reference, *tiny.tokenizer, tiny.tokenizer->eos_token_id(),
                                                 test::E2eAnswer::load().stop_words, steps);
  const std::vector<int64_t> expected(reference.begin(), reference.begin() + static_cast<long>(stop.length));
  EXPECT_EQ(out["ids"].get<std::vector<int64_t>>(), expected);
  EXPECT_EQ(out["stop_reason"], stop.reason);
  EXPECT_EQ(out["text"].get<std::string>(), tiny.tokenizer->decode(expected));
  // Ids past the tiny vocabulary's (bytes and special tokens) decode as <unused_N>.
  const int64_t vocabulary =
      256 + static_cast<int64_t>(test::reference_json("tiny_vocab.json")["special_tokens"].size());
  for (int64_t id : expected) {
    if (id >= vocabulary) {
      EXPECT_NE(out["text"].get<std::string>().find("<unused_" + std::to_string(id) + ">"), std::string::npos)
          << out.dump();
    }
  }
  EXPECT_EQ(r.output.find("warning"), std::string::npos) << r.output;  // every LLM tensor was used
}

TEST_F(ModelTextCommands, GenerateFromTextTokenizesItAsItIs) {
  const std::string text = "<|user|>\nPlease segment the liver.<|end|>\n<|assistant|>\n";
  const auto from_text = unibiomed({"model", "generate", model_.path().string(), "--text", text, "--max-new-tokens", "6"});
  ASSERT_EQ(from_text.exit_code, 0) << from_text.output;
  // The same ids given directly, and the same generation in this process.
  test::TinyLlm tiny;
  const auto ids = tiny.tokenizer->encode(text);
  const auto from_ids = unibiomed(
      {"model", "generate", model_.path().string(), "--prompt-ids", json(ids).dump(), "--max-new-tokens", "6"});
  ASSERT_EQ(from_ids.exit_code, 0) << from_ids.output;
  EXPECT_EQ(last_json(from_text.output), last_json(from_ids.output));
  GenerationOptions o;
  o.max_new_tokens = 6;
  const auto here = generate_greedy(*tiny.model, *tiny.tokenizer,
                                    tiny.model->embed(torch::tensor(ids, torch::kLong).view({1, -1})), o);
  EXPECT_EQ(last_json(from_text.output)["ids"].get<std::vector<int64_t>>(), here[0].ids);
  EXPECT_EQ(last_json(from_text.output)["text"].get<std::string>(), here[0].text);
}

TEST_F(ModelTextCommands, MistakesGiveTheirExitCodeAndSayWhat) {
  const std::string dir = model_.path().string();
  auto expect = [&](const std::vector<std::string>& args, int code, const std::string& says) {
    const auto r = unibiomed(args);
    EXPECT_EQ(r.exit_code, code) << r.output;
    EXPECT_NE(r.output.find(says), std::string::npos) << "expected \"" << says << "\" in: " << r.output;
  };
  expect({"model", "generate", dir}, 2, "exactly one of --prompt-ids and --text");
  expect({"model", "generate", dir, "--text", "a", "--prompt-ids", "[1]"}, 2, "exactly one of");
  expect({"model", "generate", dir, "--prompt-ids", "[1, \"x\"]"}, 2, "not an integer token id");
  expect({"model", "generate", dir, "--prompt-ids", "1,2"}, 2, "JSON array");
  expect({"model", "generate", dir, "--prompt-ids", "[1]", "--max-new-tokens", "0"}, 2, "--max-new-tokens");
  expect({"model", "generate", "/nonexistent/model", "--prompt-ids", "[1]"}, 3, "/nonexistent/model does not exist");
  const int64_t vocab = test::reference_json("config.json")["llm_config"]["vocab_size"].get<int64_t>();
  expect({"model", "generate", dir, "--prompt-ids", "[1, " + std::to_string(vocab + 88) + "]"}, 3,
         "prompt token id " + std::to_string(vocab + 88) + " is outside the vocabulary of " + std::to_string(vocab));
  expect({"model", "tokenize", "/nonexistent/tok", "x"}, 3, "/nonexistent/tok does not exist");
  expect({"model", "tokenize", dir, "bad \xC3("}, 3, "not valid UTF-8");

  // A folder without tokenizer files, one whose tokenizer disagrees with config.json, a truncated
  // checkpoint: the model cannot be loaded (exit 4), and the message names the culprit.
  test::TempDir bare;
  fs::create_symlink(test::reference_dir() / "config.json", bare / "config.json");
  fs::create_symlink(test::reference_dir() / "model.safetensors", bare / "model.safetensors");
  expect({"model", "generate", bare.path().string(), "--prompt-ids", "[1]"}, 4, "no vocab.json + merges.txt");
  auto specials = json::parse(test::read_file(test::reference_dir() / "tiny_vocab.json"))["special_tokens"]
                      .get<std::map<std::string, int64_t>>();
  const int64_t seg = specials.at("[SEG]");
  specials["[SEG]"] = 300;
  write_byte_level_tokenizer(bare.path(), specials);
  expect({"model", "generate", bare.path().string(), "--prompt-ids", "[1]"}, 4,
         "token \"[SEG]\" id " + std::to_string(seg));
  test::TempDir truncated;
  fs::create_symlink(test::reference_dir() / "config.json", truncated / "config.json");
  const std::string bytes = test::read_file(test::reference_dir() / "model.safetensors");
  test::write_file(truncated / "model.safetensors", bytes.substr(0, bytes.size() / 2));
  specials["[SEG]"] = seg;
  write_byte_level_tokenizer(truncated.path(), specials);
  expect({"model", "generate", truncated.path().string(), "--prompt-ids", "[1]"}, 4,
         (truncated / "model.safetensors").string());
}

}  // namespace
}  // namespace unibiomed::inference
