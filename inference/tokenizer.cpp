// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/tokenizer.h"

#include <algorithm>
#include <array>
#include <climits>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "inference/error.h"
#include "inference/unicode_tables.h"

namespace unibiomed::inference {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Ids above this are certainly a corrupt file (the real vocabulary has 151,679).
constexpr int64_t kMaxTokenId = 1 << 24;

// GPT-2 bytes_to_unicode (also Qwen2's): printable Latin-1 bytes stand for themselves, the
// other 68 bytes take U+0100 onwards in byte order, so that no token contains a space or a
// control character.
std::array<char32_t, 256> byte_alphabet() {
  std::array<char32_t, 256> table{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    table[static_cast<size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
  }
  return table;
}

json read_json(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw InferenceError("tokenizer file " + file.string() + ": cannot be opened");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw InferenceError("tokenizer file " + file.string() + ": not valid JSON: " + e.what());
  }
}

std::string token_content(const json& entry) {  // "x" or {"content": "x", ...}
  if (entry.is_string()) return entry.get<std::string>();
  if (entry.is_object() && entry.contains("content") && entry["content"].is_string())
    return entry["content"].get<std::string>();
  return {};
}

bool is_newline(char32_t c) { return c == U'\r' || c == U'\n'; }

// The one case-insensitive alternative of the regex: 's 't 're 've 'm 'll 'd. Python's `regex`
// module folds case simply; the only non-ASCII character folding to one of these letters is
// U+017F LATIN SMALL LETTER LONG S (-> s).
char32_t fold_ascii(char32_t c) {
  if (c >= U'A' && c <= U'Z') return c + 32;
  if (c == 0x17F) return U's';
  return c;
}

size_t contraction_length(const std::u32string& s, size_t i) {
  if (s[i] != U'\'' || i + 1 >= s.size()) return 0;
  const char32_t a = fold_ascii(s[i + 1]);
  if (a == U's' || a == U't') return 2;
  if (i + 2 < s.size()) {
    const char32_t b = fold_ascii(s[i + 2]);
    if ((a == U'r' && b == U'e') || (a == U'v' && b == U'e')) return 3;
  }
  if (a == U'm') return 2;
  if (i + 2 < s.size() && a == U'l' && fold_ascii(s[i + 2]) == U'l') return 3;
  if (a == U'd') return 2;
  return 0;
}

// Length of the regex match at `i` (the first alternative that matches, as a backtracking
// engine finds it). Every character is matched by some alternative, so the result is >= 1.
size_t match_length(const std::u32string& s, size_t i) {
  using unicode::CharClass;
  const size_t n = s.size();
  auto letter = [&](size_t k) { return unicode::char_class(s[k]) == CharClass::kLetter; };
  auto number = [&](size_t k) { return unicode::char_class(s[k]) == CharClass::kNumber; };
  auto space = [&](size_t k) { return unicode::is_white_space(s[k]); };

  if (size_t len = contraction_length(s, i)) return len;  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
  // [^\r\n\p{L}\p{N}]?\p{L}+
  size_t j = i;
  if (!is_newline(s[j]) && !letter(j) && !number(j) && j + 1 < n && letter(j + 1)) ++j;
  if (letter(j)) {
    while (j < n && letter(j)) ++j;
    return j - i;
  }
  if (number(i)) return 1;  // \p{N}
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  j = i;
  if (s[j] == U' ' && j + 1 < n) ++j;
  if (!space(j) && !letter(j) && !number(j)) {
    while (j < n && !space(j) && !letter(j) && !number(j)) ++j;
    while (j < n && is_newline(s[j])) ++j;
    return j - i;
  }
  // Only whitespace is left. The run [i, end) of whitespace:
  size_t end = i;
  while (end < n && space(end)) ++end;
  // \s*[\r\n]+ : up to and including the run's last newline.
  for (size_t k = end; k > i; --k)
    if (is_newline(s[k - 1])) return k - i;
  // \s+(?!\S) : the whole run at the end of the text, else all but its last character.
  if (end == n || end - i == 1) return end - i;  // (the latter is \s+ with one character)
  return end - i - 1;
}

std::vector<std::u32string> split_pieces(const std::u32string& s) {
  std::vector<std::u32string> out;
  for (size_t i = 0; i < s.size();) {
    const size_t len = match_length(s, i);
    out.push_back(s.substr(i, len));
    i += len;
  }
  return out;
}

}  // namespace

struct Tokenizer::Tables {
  fs::path dir;
  std::array<std::string, 256> byte_chars;        // byte -> its character in the vocabulary (UTF-8)
  std::unordered_map<std::string, int64_t> vocab;  // regular token -> id
  std::unordered_map<std::string, int> merge_rank;  // "first second" -> rank (lower merges first)
  // Added tokens: content (code points) -> id, sorted so that longer ones are tried first.
  std::vector<std::pair<std::u32string, int64_t>> added;
  std::unordered_map<int64_t, std::string> added_by_id;
  std::vector<std::string> regular_bytes;  // id -> the raw bytes of a regular token
  std::vector<bool> is_regular;
  int64_t size = 0;
  std::optional<int64_t> eos;

  std::vector<std::string> bpe(const std::string& piece_bytes) const;
};

std::vector<std::string> Tokenizer::Tables::bpe(const std::string& piece_bytes) const {
  std::vector<std::string> word;
  word.reserve(piece_bytes.size());
  for (char c : piece_bytes) word.push_back(byte_chars[static_cast<unsigned char>(c)]);
  // Repeatedly merge every occurrence (left to right) of the adjacent pair with the lowest rank,
  // as tokenization_qwen2.py Qwen2Tokenizer.bpe does.
  while (word.size() > 1) {
    int best = INT_MAX;
    size_t best_at = 0;
    for (size_t k = 0; k + 1 < word.size(); ++k) {
      auto it = merge_rank.find(word[k] + " " + word[k + 1]);
      if (it != merge_rank.end() && it->second < best) {
        best = it->second;
        best_at = k;
      }
    }
    if (best == INT_MAX) break;
    const std::string first = word[best_at], second = word[best_at + 1];
    std::vector<std::string> merged;
    merged.reserve(word.size());
    for (size_t k = 0; k < word.size();) {
      if (k + 1 < word.size() && word[k] == first && word[k + 1] == second) {
        merged.push_back(first + second);
        k += 2;
      } else {
        merged.push_back(word[k++]);
      }
    }
    word.swap(merged);
  }
  return word;
}

std::string byte_to_unicode(uint8_t byte) {
  std::string out;
  unicode::append_utf8(out, byte_alphabet()[byte]);
  return out;
}

Tokenizer Tokenizer::load(const fs::path& dir) {
  if (!fs::is_directory(dir)) throw InferenceError("tokenizer folder " + dir.string() + " does not exist");
  auto t = std::make_shared<Tables>();
  t->dir = dir;
  const auto alphabet = byte_alphabet();
  std::unordered_map<char32_t, uint8_t> char_to_byte;
  for (int b = 0; b < 256; ++b) {
    t->byte_chars[static_cast<size_t>(b)].clear();
    unicode::append_utf8(t->byte_chars[static_cast<size_t>(b)], alphabet[static_cast<size_t>(b)]);
    char_to_byte[alphabet[static_cast<size_t>(b)]] = static_cast<uint8_t>(b);
  }

  // Regular vocabulary and merges.
  json vocab_json;
  std::vector<std::pair<std::string, std::string>> merges;
  std::string vocab_origin, merges_origin;
  json tokenizer_json;
  const bool have_tokenizer_json = fs::exists(dir / "tokenizer.json");
  if (have_tokenizer_json) tokenizer_json = read_json(dir / "tokenizer.json");
  if (fs::exists(dir / "vocab.json")) {
    vocab_origin = (dir / "vocab.json").string();
    vocab_json = read_json(dir / "vocab.json");
    merges_origin = (dir / "merges.txt").string();
    std::ifstream in(dir / "merges.txt", std::ios::binary);
    if (!in) throw InferenceError("tokenizer folder " + dir.string() + ": vocab.json is there but merges.txt is missing");
    std::string line;
    for (size_t line_no = 1; std::getline(in, line); ++line_no) {
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
      if (line.empty() || (line_no == 1 && line.rfind("#version:", 0) == 0)) continue;
      const size_t sp = line.find(' ');
      if (sp == std::string::npos || sp == 0 || line.find(' ', sp + 1) != std::string::npos)
        throw InferenceError("tokenizer file " + merges_origin + " line " + std::to_string(line_no) +
                             ": expected two tokens separated by one space, found \"" + line + "\"");
      merges.emplace_back(line.substr(0, sp), line.substr(sp + 1));
    }
  } else if (have_tokenizer_json) {
    vocab_origin = merges_origin = (dir / "tokenizer.json").string();
    const json& model = tokenizer_json.contains("model") ? tokenizer_json["model"] : json();
    if (!model.is_object() || !model.contains("vocab") || !model["vocab"].is_object())
      throw InferenceError("tokenizer file " + vocab_origin + ": no model.vocab object");
    if (model.contains("type") && model["type"] != "BPE")
      throw InferenceError("tokenizer file " + vocab_origin + ": model type " + model["type"].dump() +
                           " is not BPE");
    vocab_json = model["vocab"];
    if (model.contains("merges")) {
      for (const auto& m : model["merges"]) {
        if (m.is_string()) {
          const std::string s = m.get<std::string>();
          const size_t sp = s.find(' ');
          if (sp == std::string::npos)
            throw InferenceError("tokenizer file " + vocab_origin + ": merge \"" + s + "\" is not two tokens");
          merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
          merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
        } else {
          throw InferenceError("tokenizer file " + vocab_origin + ": merge " + m.dump() + " is not two tokens");
        }
      }
    }
  } else {
    throw InferenceError("tokenizer folder " + dir.string() + ": no vocab.json + merges.txt and no tokenizer.json");
  }
  if (!vocab_json.is_object()) throw InferenceError("tokenizer file " + vocab_origin + ": the vocabulary is not a JSON object");
  std::vector<std::string> by_id;
  for (auto it = vocab_json.begin(); it != vocab_json.end(); ++it) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() >= kMaxTokenId)
      throw InferenceError("tokenizer file " + vocab_origin + ": token \"" + it.key() + "\" has id " + it->dump() +
                           " (expected an integer in [0, " + std::to_string(kMaxTokenId) + "))");
    const int64_t id = it->get<int64_t>();
    if (static_cast<size_t>(id) >= by_id.size()) {
      by_id.resize(static_cast<size_t>(id) + 1);
      t->is_regular.resize(static_cast<size_t>(id) + 1, false);
    }
    if (t->is_regular[static_cast<size_t>(id)])
      throw InferenceError("tokenizer file " + vocab_origin + ": id " + std::to_string(id) + " is used by \"" +
                           by_id[static_cast<size_t>(id)] + "\" and \"" + it.key() + "\"");
    t->is_regular[static_cast<size_t>(id)] = true;
    by_id[static_cast<size_t>(id)] = it.key();
    t->vocab.emplace(it.key(), id);
  }
  t->regular_bytes.resize(by_id.size());
  for (size_t id = 0; id < by_id.size(); ++id) {
    if (!t->is_regular[id]) continue;
    // A token's characters stand for bytes; a character outside the byte alphabet (not in a
    // byte-level vocabulary) keeps its own UTF-8.
    std::string bytes;
    for (char32_t c : unicode::decode_utf8(by_id[id], "token " + std::to_string(id) + " of " + vocab_origin)) {
      auto b = char_to_byte.find(c);
      if (b != char_to_byte.end())
        bytes.push_back(static_cast<char>(b->second));
      else
        unicode::append_utf8(bytes, c);
    }
    t->regular_bytes[id] = std::move(bytes);
  }
  t->merge_rank.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    if (!t->vocab.count(a) || !t->vocab.count(b) || !t->vocab.count(a + b))
      throw InferenceError("tokenizer file " + merges_origin + ": merge \"" + a + " " + b +
                           "\" uses or makes a token that is not in " + vocab_origin +
                           " (vocabulary and merges do not belong together)");
    // A repeated pair takes its last rank, as dict(zip(merges, range(n))) does.
    t->merge_rank.insert_or_assign(a + " " + b, static_cast<int>(rank));
  }

  // Added tokens, from every file that lists them; they must agree.
  std::map<int64_t, std::pair<std::string, std::string>> added;  // id -> content, origin
  auto add = [&](int64_t id, const std::string& content, const std::string& origin) {
    if (content.empty() || id < 0 || id >= kMaxTokenId)
      throw InferenceError("tokenizer file " + origin + ": added token id " + std::to_string(id) +
                           " has no content or an id out of range");
    auto it = added.find(id);
    if (it != added.end() && it->second.first != content)
      throw InferenceError("tokenizer folder " + dir.string() + ": id " + std::to_string(id) + " is \"" +
                           it->second.first + "\" in " + it->second.second + " but \"" + content + "\" in " + origin);
    for (const auto& [other_id, other] : added)
      if (other.first == content && other_id != id)
        throw InferenceError("tokenizer folder " + dir.string() + ": added token \"" + content + "\" has id " +
                             std::to_string(other_id) + " in " + other.second + " but " + std::to_string(id) +
                             " in " + origin);
    if (static_cast<size_t>(id) < by_id.size() && t->is_regular[static_cast<size_t>(id)] &&
        by_id[static_cast<size_t>(id)] != content)
      throw InferenceError("tokenizer file " + origin + ": added token \"" + content + "\" takes id " +
                           std::to_string(id) + ", which " + vocab_origin + " gives to \"" +
                           by_id[static_cast<size_t>(id)] + "\"");
    added[id] = {content, origin};
  };
  json config;
  if (fs::exists(dir / "tokenizer_config.json")) {
    const std::string origin = (dir / "tokenizer_config.json").string();
    config = read_json(dir / "tokenizer_config.json");
    if (config.contains("added_tokens_decoder")) {
      const json& decoder = config["added_tokens_decoder"];
      if (!decoder.is_object()) throw InferenceError("tokenizer file " + origin + ": added_tokens_decoder is not an object");
      for (auto it = decoder.begin(); it != decoder.end(); ++it) {
        int64_t id = -1;
        try {
          size_t used = 0;
          id = std::stoll(it.key(), &used);
          if (used != it.key().size()) id = -1;
        } catch (const std::exception&) {
        }
        if (id < 0) throw InferenceError("tokenizer file " + origin + ": added_tokens_decoder key \"" + it.key() + "\" is not an id");
        add(id, token_content(*it), origin);
      }
    }
  }
  if (fs::exists(dir / "added_tokens.json")) {
    const std::string origin = (dir / "added_tokens.json").string();
    json a = read_json(dir / "added_tokens.json");
    if (!a.is_object()) throw InferenceError("tokenizer file " + origin + ": not a JSON object");
    for (auto it = a.begin(); it != a.end(); ++it) {
      if (!it->is_number_integer()) throw InferenceError("tokenizer file " + origin + ": \"" + it.key() + "\" has no integer id");
      add(it->get<int64_t>(), it.key(), origin);
    }
  }
  if (have_tokenizer_json && tokenizer_json.contains("added_tokens")) {
    const std::string origin = (dir / "tokenizer.json").string();
    for (const auto& a : tokenizer_json["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer())
        throw InferenceError("tokenizer file " + origin + ": added token " + a.dump() + " has no integer id");
      add(a["id"].get<int64_t>(), token_content(a), origin);
    }
  }
  t->size = static_cast<int64_t>(by_id.size());
  for (const auto& [id, entry] : added) {
    t->added.emplace_back(unicode::decode_utf8(entry.first, "added token in " + entry.second), id);
    t->added_by_id[id] = entry.first;
    t->size = std::max(t->size, id + 1);
  }
  std::stable_sort(t->added.begin(), t->added.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });

  if (config.contains("eos_token")) {
    const std::string eos = token_content(config["eos_token"]);
    if (!eos.empty()) {
      for (const auto& [id, content] : t->added_by_id)
        if (content == eos) t->eos = id;
      if (!t->eos) {
        auto it = t->vocab.find(eos);
        if (it != t->vocab.end()) t->eos = it->second;
      }
      if (!t->eos)
        throw InferenceError("tokenizer file " + (dir / "tokenizer_config.json").string() + ": eos_token \"" + eos +
                             "\" is not a token of this tokenizer");
    }
  }
  return Tokenizer(std::move(t));
}

std::vector<std::string> Tokenizer::pre_tokenize(const std::string& text) {
  std::vector<std::string> out;
  for (const auto& piece : split_pieces(unicode::nfc(unicode::decode_utf8(text))))
    out.push_back(unicode::encode_utf8(piece));
  return out;
}

std::vector<int64_t> Tokenizer::encode(const std::string& text) const {
  const Tables& t = *tables_;
  // prepare_for_tokenization normalises the whole text before added tokens are split out.
  const std::u32string s = unicode::nfc(unicode::decode_utf8(text, "text to tokenize"));
  std::vector<int64_t> ids;
  auto encode_plain = [&](size_t begin, size_t end) {
    if (begin >= end) return;
    for (const auto& piece : split_pieces(s.substr(begin, end - begin))) {
      for (const std::string& token : t.bpe(unicode::encode_utf8(piece))) {
        auto it = t.vocab.find(token);
        if (it == t.vocab.end())
          throw InferenceError("tokenizer " + t.dir.string() + ": BPE produced \"" + token +
                               "\", which is not in the vocabulary (incomplete byte alphabet?)");
        ids.push_back(it->second);
      }
    }
  };
  size_t plain_start = 0;
  for (size_t i = 0; i < s.size();) {
    const std::pair<std::u32string, int64_t>* hit = nullptr;
    for (const auto& a : t.added)  // longest first
      if (s.compare(i, a.first.size(), a.first) == 0) {
        hit = &a;
        break;
      }
    if (!hit) {
      ++i;
      continue;
    }
    encode_plain(plain_start, i);
    ids.push_back(hit->second);
    i += hit->first.size();
    plain_start = i;
  }
  encode_plain(plain_start, s.size());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids) const {
  const Tables& t = *tables_;
  std::string out, pending;  // pending: bytes of consecutive regular tokens
  auto flush = [&] {
    out += unicode::decode_utf8_replacing(pending);
    pending.clear();
  };
  for (int64_t id : ids) {
    if (auto it = t.added_by_id.find(id); it != t.added_by_id.end()) {
      flush();
      out += it->second;
    } else if (id >= 0 && static_cast<size_t>(id) < t.is_regular.size() && t.is_regular[static_cast<size_t>(id)]) {
      pending += t.regular_bytes[static_cast<size_t>(id)];
    } else {
      flush();
      out += "<unused_" + std::to_string(id) + ">";
    }
  }
  flush();
  return out;
}

std::optional<int64_t> Tokenizer::find_token_id(const std::string& token) const {
  for (const auto& [id, content] : tables_->added_by_id)
    if (content == token) return id;
  auto it = tables_->vocab.find(token);
  if (it != tables_->vocab.end()) return it->second;
  return std::nullopt;
}

int64_t Tokenizer::token_id(const std::string& token) const {
  if (auto id = find_token_id(token)) return *id;
  throw InferenceError("tokenizer " + tables_->dir.string() + " has no token \"" + token + "\"");
}

bool Tokenizer::is_added_token(int64_t id) const { return tables_->added_by_id.count(id) != 0; }
int64_t Tokenizer::size() const { return tables_->size; }
std::optional<int64_t> Tokenizer::eos_token_id() const { return tables_->eos; }
const fs::path& Tokenizer::dir() const { return tables_->dir; }

void Tokenizer::check_token_ids(const std::map<std::string, int64_t>& expected, const std::string& origin) const {
  for (const auto& [token, id] : expected) {
    auto found = find_token_id(token);
    if (!found)
      throw InferenceError(origin + " names token \"" + token + "\" (id " + std::to_string(id) + "), which tokenizer " +
                           tables_->dir.string() + " does not have");
    if (*found != id)
      throw InferenceError(origin + " gives token \"" + token + "\" id " + std::to_string(id) + " but tokenizer " +
                           tables_->dir.string() + " has it as " + std::to_string(*found));
  }
}

void write_byte_level_tokenizer(const fs::path& dir, const std::map<std::string, int64_t>& added_tokens,
                                const std::string& eos_token, const std::string& pad_token) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw InferenceError("cannot create tokenizer folder " + dir.string() + ": " + ec.message());
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_to_unicode(static_cast<uint8_t>(b))] = b;
  json decoder = json::object();
  std::map<int64_t, std::string> seen;
  for (const auto& [content, id] : added_tokens) {
    if (id < 256 || id >= kMaxTokenId)
      throw InferenceError("byte-level tokenizer for " + dir.string() + ": added token \"" + content + "\" has id " +
                           std::to_string(id) + ", but ids 0..255 are the bytes");
    if (!seen.emplace(id, content).second)
      throw InferenceError("byte-level tokenizer for " + dir.string() + ": id " + std::to_string(id) +
                           " given to both \"" + seen[id] + "\" and \"" + content + "\"");
    decoder[std::to_string(id)] = {{"content", content}, {"lstrip", false}, {"normalized", false},
                                   {"rstrip", false},    {"single_word", false}, {"special", true}};
  }
  auto named = [&](const std::string& token) -> json {
    if (token.empty()) return nullptr;
    if (!added_tokens.count(token))
      throw InferenceError("byte-level tokenizer for " + dir.string() + ": \"" + token + "\" is not an added token");
    return token;
  };
  json config = {{"tokenizer_class", "Qwen2Tokenizer"},
                 {"added_tokens_decoder", decoder},
                 {"add_bos_token", false},
                 {"add_prefix_space", false},
                 {"bos_token", nullptr},
                 {"eos_token", named(eos_token)},
                 {"pad_token", named(pad_token)},
                 {"clean_up_tokenization_spaces", false},
                 {"errors", "replace"}};
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw InferenceError("cannot write " + (dir / name).string());
  };
  write("vocab.json", vocab.dump(1));
  write("merges.txt", "#version: 0.2\n");
  write("tokenizer_config.json", config.dump(2));
}

}  // namespace unibiomed::inference
