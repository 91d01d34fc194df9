// Prompt building against the reference's full input text (tests/reference e2e.json and the
// real-size prompts of tokenizer_goldens.json, both produced by predict_forward's own code).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "inference/error.h"
#include "inference/prompt.h"
#include "tests/support/test_support.h"

namespace unibiomed::inference {
namespace {

using nlohmann::json;

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(Prompt, MatchesTheReferenceFullInputText) {
  ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  const json e2e = json::parse(test::read_file(test::reference_dir() / "e2e.json"));
  EXPECT_EQ(build_prompt(e2e["prompt_text"], e2e["n_tiles_incl_thumbnail"].get<int>(),
                         e2e["image_tokens_per_tile"].get<int>()),
            e2e["full_input_text"].get<std::string>());
  // The real size, 256 tokens a tile: the whole phi3 prompts among the reference tokenizer
  // strings (one image block, the question after it), rebuilt from their tile count and question.
  const json tok = json::parse(test::read_file(test::reference_dir() / "tokenizer_goldens.json"));
  const std::string head = "<|user|>\n<img>", close = "</img>", tail = "<|end|>\n<|assistant|>\n";
  int rebuilt = 0;
  for (const auto& c : tok["cases"]) {
    const std::string expected = c["text"];
    const size_t end = expected.find(close);
    if (expected.rfind(head, 0) != 0 || end == std::string::npos || expected.size() < tail.size() ||
        expected.compare(expected.size() - tail.size(), tail.size(), tail) != 0)
      continue;
    const size_t tokens = count(expected, "<IMG_CONTEXT>");
    if (tokens == 0 || tokens % 256 != 0) continue;  // another token count than the real tile's
    const std::string question =
        expected.substr(end + close.size(), expected.size() - tail.size() - end - close.size());
    EXPECT_EQ(build_prompt("<image>" + question, static_cast<int>(tokens / 256), 256), expected) << question;
    ++rebuilt;
  }
  if (rebuilt == 0) GTEST_SKIP() << "tokenizer_goldens.json has no whole prompt with 256-token tiles to rebuild";
}

TEST(Prompt, ImageBlockAndTemplate) {
  EXPECT_EQ(image_block(1, 2), "<img><IMG_CONTEXT><IMG_CONTEXT></img>");
  const std::string p = build_prompt("<image>Please segment liver in CT.", 10, 256);
  EXPECT_EQ(count(p, "<IMG_CONTEXT>"), 2560u);
  EXPECT_EQ(p.rfind("<|user|>\n<img><IMG_CONTEXT>", 0), 0u);
  EXPECT_NE(p.find("</img>Please segment liver in CT.<|end|>\n<|assistant|>\n"), std::string::npos);
  // Text after and before the placeholder stays where it was.
  EXPECT_EQ(build_prompt("Look: <image> here", 1, 1), "<|user|>\nLook: <img><IMG_CONTEXT></img> here<|end|>\n<|assistant|>\n");
  // Video frames (one tile each): blocks joined by a newline, none after the last.
  EXPECT_EQ(build_prompt("<image>Q", std::vector<int>{1, 1}, 1),
            "<|user|>\n<img><IMG_CONTEXT></img>\n<img><IMG_CONTEXT></img>Q<|end|>\n<|assistant|>\n");
  // Without images the placeholder is dropped (the reference's text-only path).
  EXPECT_EQ(build_prompt("<image>Hello", std::vector<int>{}, 256), "<|user|>\nHello<|end|>\n<|assistant|>\n");
  // A "{input}" inside the user's text is not a template field.
  EXPECT_EQ(build_prompt("{input}", std::vector<int>{}, 1), "<|user|>\n{input}<|end|>\n<|assistant|>\n");
  EXPECT_EQ(build_prompt("<image>Q", 1, 1, "internlm2_chat"),
            "<|im_start|>user\n<img><IMG_CONTEXT></img>Q<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(chat_template("phi3_chat").stop_words, std::vector<std::string>{"<|end|>"});
}

TEST(Prompt, BadInputsAreErrors) {
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const InferenceError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(message([] { build_prompt("Please segment the liver.", 1, 256); }).find("exactly once (found 0)"),
            std::string::npos);
  EXPECT_NE(message([] { build_prompt("<image><image>Q", 1, 256); }).find("exactly once (found 2)"), std::string::npos);
  EXPECT_NE(message([] { build_prompt("<image>Q", 0, 256); }).find("0 tiles"), std::string::npos);
  EXPECT_NE(message([] { build_prompt("<image>Q", 1, -1); }).find("-1 tokens"), std::string::npos);
  EXPECT_NE(message([] { build_prompt("<image>Q", 1, 1, "vicuna"); }).find("\"vicuna\" is not supported"),
            std::string::npos);
}

}  // namespace
}  // namespace unibiomed::inference
