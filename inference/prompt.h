// The text the language model reads: the chat template of the checkpoint (config.json
// "template"; UniBiomed uses phi3_chat) around the user's text, with `<image>` replaced by the
// image block <img><IMG_CONTEXT>x(tokens per tile x tiles)</img>. Follows predict_forward in
// UniBiomed's modeling_sa2va_chat.py and templates.py. No torch here.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <string>
#include <vector>

namespace unibiomed::inference {

// Token strings of InternVL / UniBiomed (added tokens of the tokenizer).
inline constexpr const char* kImageStartToken = "<img>";
inline constexpr const char* kImageEndToken = "</img>";
inline constexpr const char* kImageContextToken = "<IMG_CONTEXT>";
inline constexpr const char* kSegToken = "[SEG]";
inline constexpr const char* kImagePlaceholder = "<image>";

struct ChatTemplate {
  std::string name;
  std::string instruction;              // contains "{input}"
  std::vector<std::string> stop_words;  // generation also stops when the text ends with one
};

// The templates of templates.py that InternVL-family checkpoints use: phi3_chat
// ("<|user|>\n{input}<|end|>\n<|assistant|>\n", stop word "<|end|>"), internlm2_chat and
// qwen_chat. Throws InferenceError for any other name.
ChatTemplate chat_template(const std::string& name);

// "<img>" + "<IMG_CONTEXT>" x (tiles x tokens_per_tile) + "</img>".
std::string image_block(int tiles, int tokens_per_tile);

// The full prompt for one question about images. `tiles_per_image` has one entry per image (a
// video's frames are several images, one tile each); their blocks are joined by "\n" and replace
// the single `<image>` of `user_text` (predict_forward: (block + "\n") x n, then strip()).
// Without images `<image>` is removed (the reference's text-only path). Throws InferenceError
// when images are given and `user_text` does not contain `<image>` exactly once, or on
// non-positive counts.
std::string build_prompt(const std::string& user_text, const std::vector<int>& tiles_per_image, int tokens_per_tile,
                         const std::string& template_name = "phi3_chat");
// One image of `tiles` tiles (including the thumbnail).
std::string build_prompt(const std::string& user_text, int tiles, int tokens_per_tile,
                         const std::string& template_name = "phi3_chat");

}  // namespace unibiomed::inference
