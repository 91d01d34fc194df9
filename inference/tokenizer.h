// The Qwen2 byte-level BPE tokenizer, as the slow transformers Qwen2Tokenizer (tokenization_qwen2.py
// + tokenization_utils.py, transformers 4.44) behaves, which is what UniBiomed's predict_forward
// runs:
//   encode: NFC-normalise; split out the added tokens (<img>, <IMG_CONTEXT>, [SEG], <|im_end|>...)
//           atomically, leftmost then longest first; split the rest with the Qwen2 pre-tokenizer
//           regex; map each piece's UTF-8 bytes to the byte-level alphabet; merge by rank. No BOS.
//   decode: added tokens give their text; runs of ordinary tokens give their bytes, decoded as
//           UTF-8 with U+FFFD for invalid bytes (errors="replace"); ids the tokenizer does not
//           know give "<unused_{id}>". Special tokens are kept, no spaces are inserted.
// Files (a Hugging Face tokenizer folder): vocab.json + merges.txt, or tokenizer.json; added
// tokens from tokenizer_config.json ("added_tokens_decoder"), added_tokens.json and/or
// tokenizer.json ("added_tokens"). Immutable once loaded; copies share the tables; thread-safe.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace unibiomed::inference {

class Tokenizer {
 public:
  // Reads the tokenizer files of `dir`; throws InferenceError naming the file and what is wrong.
  static Tokenizer load(const std::filesystem::path& dir);

  // Text (UTF-8) -> ids. Throws InferenceError when the text is not valid UTF-8.
  std::vector<int64_t> encode(const std::string& text) const;
  // Ids -> text (see above); never throws for unknown ids.
  std::string decode(const std::vector<int64_t>& ids) const;

  // The id of a token (added or regular), or an InferenceError naming the tokenizer folder.
  int64_t token_id(const std::string& token) const;
  std::optional<int64_t> find_token_id(const std::string& token) const;
  bool is_added_token(int64_t id) const;
  // len(tokenizer): one past the largest id (151679 for UniBiomed).
  int64_t size() const;
  // eos_token of tokenizer_config.json, when it names a known token.
  std::optional<int64_t> eos_token_id() const;
  const std::filesystem::path& dir() const;

  // Throws InferenceError when one of `expected` (token -> id, e.g. config.json's
  // tiny_test.special_token_ids) is missing or has another id here; `origin` names their source.
  void check_token_ids(const std::map<std::string, int64_t>& expected, const std::string& origin) const;

  // NFC + the Qwen2 pre-tokenizer regex on text without added tokens (exposed for tests):
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|
  // \s*[\r\n]+|\s+(?!\S)|\s+
  static std::vector<std::string> pre_tokenize(const std::string& text);

  struct Tables;

 private:
  explicit Tokenizer(std::shared_ptr<const Tables> tables) : tables_(std::move(tables)) {}
  std::shared_ptr<const Tables> tables_;
};

// GPT-2's byte-to-unicode map (byte b -> the character that stands for it in the vocabulary),
// as UTF-8. Bytes that are printable keep their own character; the others map to U+0100...
std::string byte_to_unicode(uint8_t byte);

// Writes a byte-level tokenizer folder in the standard file format: vocab.json with the 256
// single-byte tokens (byte_to_unicode(b) -> b), an empty merges.txt, and tokenizer_config.json
// listing `added_tokens` (content -> id, ids >= 256) in "added_tokens_decoder" with eos_token.
// This is the vocabulary of the small reference checkpoints (tests/reference/tiny_vocab.json).
void write_byte_level_tokenizer(const std::filesystem::path& dir, const std::map<std::string, int64_t>& added_tokens,
                                const std::string& eos_token = "<|im_end|>",
                                const std::string& pad_token = "<|endoftext|>");

}  // namespace unibiomed::inference
