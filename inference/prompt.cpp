// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/prompt.h"

#include "inference/error.h"

namespace unibiomed::inference {

namespace {

size_t count_occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

std::string replace_all(std::string text, const std::string& what, const std::string& with) {
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + with.size()))
    text.replace(at, what.size(), with);
  return text;
}

}  // namespace

ChatTemplate chat_template(const std::string& name) {
  // templates.py PROMPT_TEMPLATE: INSTRUCTION and STOP_WORDS (SYSTEM is not used by predict_forward).
  if (name == "phi3_chat") return {name, "<|user|>\n{input}<|end|>\n<|assistant|>\n", {"<|end|>"}};
  if (name == "internlm2_chat")
    return {name, "<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n", {"<|im_end|>"}};
  if (name == "qwen_chat")
    return {name, "<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n", {"<|im_end|>", "<|endoftext|>"}};
  throw InferenceError("chat template \"" + name + "\" is not supported (phi3_chat, internlm2_chat, qwen_chat)");
}

std::string image_block(int tiles, int tokens_per_tile) {
  if (tiles <= 0 || tokens_per_tile <= 0)
    throw InferenceError("image block: " + std::to_string(tiles) + " tiles of " + std::to_string(tokens_per_tile) +
                         " tokens (both must be positive)");
  std::string out = kImageStartToken;
  const std::string context = kImageContextToken;
  out.reserve(out.size() + context.size() * static_cast<size_t>(tiles) * static_cast<size_t>(tokens_per_tile) + 8);
  for (long i = 0; i < static_cast<long>(tiles) * tokens_per_tile; ++i) out += context;
  return out + kImageEndToken;
}

std::string build_prompt(const std::string& user_text, const std::vector<int>& tiles_per_image, int tokens_per_tile,
                         const std::string& template_name) {
  const ChatTemplate tmpl = chat_template(template_name);
  std::string text;
  if (tiles_per_image.empty()) {
    text = replace_all(user_text, kImagePlaceholder, "");
  } else {
    const size_t n = count_occurrences(user_text, kImagePlaceholder);
    if (n != 1)
      throw InferenceError("prompt \"" + user_text + "\" must contain " + kImagePlaceholder + " exactly once (found " +
                           std::to_string(n) + ")");
    std::string images;
    for (size_t i = 0; i < tiles_per_image.size(); ++i)
      images += (i ? "\n" : "") + image_block(tiles_per_image[i], tokens_per_tile);
    text = replace_all(user_text, kImagePlaceholder, images);
  }
  return replace_all(tmpl.instruction, "{input}", text);
}

std::string build_prompt(const std::string& user_text, int tiles, int tokens_per_tile, const std::string& template_name) {
  return build_prompt(user_text, std::vector<int>{tiles}, tokens_per_tile, template_name);
}

}  // namespace unibiomed::inference
