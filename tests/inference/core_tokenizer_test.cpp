// The Qwen2 tokenizer against the reference ids (tests/reference/tokenizer_goldens.json, made by the
// official slow Qwen2Tokenizer), its pre-tokenizer against Python's `regex` module, NFC against
// the Unicode conformance file, byte decoding against Python, and every broken file we can think of.
// The Qwen2.5 vocabulary itself is not shipped: RealTokenizer.* read it from test::tokenizer_dir()
// ($UNIBIOMED_QWEN2_TOKENIZER) and are skipped without it (tests/reference/README.md).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "inference/error.h"
#include "inference/safetensors_file.h"
#include "inference/tokenizer.h"
#include "inference/unicode_tables.h"
#include "tests/support/test_support.h"

namespace unibiomed::inference {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* const kPython = "/usr/bin/python3";

// The pattern of tokenization_qwen2.py (PRETOKENIZE_REGEX), independent of our implementation.
const char* const kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

json golden_json(const std::string& name) {
  return json::parse(test::read_file(test::reference_dir() / name));
}

std::string ids_string(const std::vector<int64_t>& ids) { return json(ids).dump(); }

// Expects `f` to throw InferenceError whose message contains every one of `parts`.
template <typename F>
void expect_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning " << parts.front();
  } catch (const InferenceError& e) {
    const std::string m = e.what();
    for (const auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "message: " << m << "\nmissing: " << p;
  }
}

class RealTokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (test::tokenizer_dir().empty()) return;
    tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::load(test::tokenizer_dir()));
  }
  static void TearDownTestSuite() { tokenizer_.reset(); }
  void SetUp() override {
    // The one input the project does not ship (the Qwen2.5 vocabulary is not ours to
    // redistribute): these tests skip, and CTest lists them as not run, when it is absent.
    ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
    if (!tokenizer_) GTEST_SKIP() << test::tokenizer_missing_reason();
  }
  static std::unique_ptr<Tokenizer> tokenizer_;
};
std::unique_ptr<Tokenizer> RealTokenizer::tokenizer_;

TEST_F(RealTokenizer, EncodesEveryReferenceStringToTheReferenceIds) {
  const json goldens = golden_json("tokenizer_goldens.json");
  ASSERT_EQ(goldens["cases"].size(), goldens["n_strings"].get<size_t>());
  ASSERT_FALSE(goldens["cases"].empty());
  int exact = 0;
  for (const auto& c : goldens["cases"]) {
    const std::string text = c["text"];
    const auto expected = c["ids"].get<std::vector<int64_t>>();
    const auto ids = tokenizer_->encode(text);
    EXPECT_EQ(ids_string(ids), ids_string(expected)) << "text: " << json(text).dump();
    EXPECT_EQ(tokenizer_->decode(expected), c["decoded"].get<std::string>()) << "text: " << json(text).dump();
    exact += ids == expected;
  }
  std::cout << "tokenizer: " << exact << " of " << goldens["cases"].size()
            << " reference strings give exactly the reference ids\n";
}

TEST_F(RealTokenizer, AddedTokensAndSizeMatchTheReference) {
  const json goldens = golden_json("tokenizer_goldens.json");
  const auto added = goldens["added_tokens"].get<std::map<std::string, int64_t>>();
  for (const auto& [token, id] : added) {
    EXPECT_EQ(tokenizer_->token_id(token), id) << token;
    EXPECT_TRUE(tokenizer_->is_added_token(id)) << token;
  }
  EXPECT_NO_THROW(tokenizer_->check_token_ids(added, "tokenizer_goldens.json"));
  EXPECT_EQ(tokenizer_->size(), 151679);  // len(tokenizer) = the LLM's vocab_size at export
  ASSERT_TRUE(tokenizer_->eos_token_id().has_value());
  EXPECT_EQ(*tokenizer_->eos_token_id(), goldens["eos_token_id"].get<int64_t>());
  EXPECT_EQ(tokenizer_->token_id("Ġthe"), 279);  // a regular token, from the golden case "... the liver."
  EXPECT_FALSE(tokenizer_->find_token_id("<|user|>").has_value());  // plain text for this tokenizer
  expect_error([&] { tokenizer_->token_id("<no such token>"); }, {"qwen2-tokenizer", "<no such token>"});
  expect_error([&] { tokenizer_->check_token_ids({{"[SEG]", 268}}, "config.json tiny_test.special_token_ids"); },
               {"config.json tiny_test.special_token_ids", "[SEG]", "268", "151674"});
}

TEST_F(RealTokenizer, DecodesInvalidBytesAndUnknownIdsLikeTheReference) {
  // "Ġ" (id 220) is byte 0x20; ids 2 and 3 are '#' and '$'. Byte 0xC3 alone is the token "Ã" (id 127).
  const int64_t lone_c3 = tokenizer_->token_id("Ã");
  EXPECT_EQ(tokenizer_->decode({lone_c3, 220}), "\xEF\xBF\xBD ");
  EXPECT_EQ(tokenizer_->decode({151674, lone_c3, 151645}), "[SEG]\xEF\xBF\xBD<|im_end|>");
  EXPECT_EQ(tokenizer_->decode({5501, 999999, -3}), "Please<unused_999999><unused_-3>");
  EXPECT_EQ(tokenizer_->decode({}), "");
}

TEST_F(RealTokenizer, RejectsTextThatIsNotUtf8) {
  expect_error([&] { tokenizer_->encode("abc\xC3("); }, {"not valid UTF-8", "byte 3"});
  expect_error([&] { tokenizer_->encode("\xED\xA0\x80"); }, {"not valid UTF-8", "byte 0"});  // a surrogate
  expect_error([&] { tokenizer_->encode("\xC0\xAF"); }, {"not valid UTF-8"});              // overlong '/'
}

TEST_F(RealTokenizer, TokenizerJsonGivesTheSameIds) {
  // The same vocabulary as a Hugging Face tokenizer.json, merges once as "a b" strings (older
  // files) and once as ["a", "b"] pairs (newer files), added tokens in its "added_tokens".
  const fs::path src = test::tokenizer_dir();
  json vocab = json::parse(test::read_file(src / "vocab.json"));
  std::vector<std::string> lines;
  {
    std::ifstream in(src / "merges.txt");
    std::string line;
    while (std::getline(in, line))
      if (!line.empty() && line.rfind("#version", 0) != 0) lines.push_back(line);
  }
  const json goldens = golden_json("tokenizer_goldens.json");
  json added = json::array();
  for (const auto& [token, id] : goldens["added_tokens"].items())
    added.push_back({{"id", id}, {"content", token}, {"special", true}});
  for (bool pairs : {false, true}) {
    json merges = json::array();
    for (const auto& l : lines) {
      const auto sp = l.find(' ');
      merges.push_back(pairs ? json::array({l.substr(0, sp), l.substr(sp + 1)}) : json(l));
    }
    test::TempDir dir;
    test::write_file(dir / "tokenizer.json",
                     json{{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}, {"added_tokens", added}}.dump());
    const Tokenizer t = Tokenizer::load(dir.path());
    for (const auto& c : goldens["cases"])
      EXPECT_EQ(ids_string(t.encode(c["text"])), ids_string(c["ids"].get<std::vector<int64_t>>()))
          << (pairs ? "pair merges: " : "string merges: ") << c["text"].dump();
    EXPECT_EQ(t.token_id("[SEG]"), 151674);
  }
}

TEST(Tokenizer, ByteLevelFolderReproducesTheTinyReferenceVocabulary) {
  ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  const json tiny = golden_json("tiny_vocab.json");
  const auto specials = tiny["special_tokens"].get<std::map<std::string, int64_t>>();
  test::TempDir dir;
  write_byte_level_tokenizer(dir.path(), specials);
  const Tokenizer t = Tokenizer::load(dir.path());
  EXPECT_EQ(*t.eos_token_id(), tiny["eos_token_id"].get<int64_t>());
  // The 256 byte tokens and the special tokens.
  EXPECT_EQ(t.size(), 256 + static_cast<int64_t>(specials.size()));
  const json config = golden_json("config.json");
  EXPECT_NO_THROW(t.check_token_ids(config["tiny_test"]["special_token_ids"], "config.json tiny_test"));

  // The reference prompt of the end-to-end run, and the decoded prediction with its invalid
  // bytes (U+FFFD) and unknown ids (<unused_442>).
  const json e2e = golden_json("e2e.json");
  const auto ids = t.encode(e2e["full_input_text"].get<std::string>());
  const SafetensorsFile e2e_tensors(test::reference_dir() / "e2e.safetensors");
  const TensorView& prompt = e2e_tensors.tensors().at("prompt_input_ids");
  ASSERT_EQ(prompt.dtype, DType::I64);
  std::vector<int64_t> expected_prompt(static_cast<size_t>(prompt.numel()));
  std::memcpy(expected_prompt.data(), prompt.data, prompt.nbytes);
  EXPECT_EQ(ids_string(ids), ids_string(expected_prompt));
  // prediction_text is predict_forward's decode(...).strip(): Python's str.isspace() is Unicode
  // White_Space plus the separators U+001C..U+001F (an answer may end in, e.g., a form feed).
  const auto generated = e2e["generated_ids"].get<std::vector<int64_t>>();
  const std::u32string decoded = unicode::decode_utf8(t.decode(generated));
  const auto space = [](char32_t c) { return unicode::is_white_space(c) || (c >= 0x1C && c <= 0x1F); };
  size_t begin = 0, end = decoded.size();
  while (begin < end && space(decoded[begin])) ++begin;
  while (end > begin && space(decoded[end - 1])) --end;
  EXPECT_EQ(unicode::encode_utf8(decoded.substr(begin, end - begin)), e2e["prediction_text"].get<std::string>());
  // Every byte value is one token, whatever the text.
  std::string all_bytes_valid = "\t\n\r !~\x7f" "\xC3\xA9\xE2\x82\xAC\xF0\x9F\xAB\x80";
  const auto byte_ids = t.encode(all_bytes_valid);
  ASSERT_EQ(byte_ids.size(), all_bytes_valid.size());
  for (size_t i = 0; i < byte_ids.size(); ++i) EXPECT_EQ(byte_ids[i], static_cast<unsigned char>(all_bytes_valid[i]));
  EXPECT_EQ(t.decode(byte_ids), all_bytes_valid);
}

TEST(Tokenizer, ByteLevelWriterRejectsIdsThatAreBytes) {
  test::TempDir dir;
  expect_error([&] { write_byte_level_tokenizer(dir.path(), {{"[SEG]", 255}}); }, {"[SEG]", "255"});
  expect_error([&] { write_byte_level_tokenizer(dir.path(), {{"<a>", 300}, {"<b>", 300}}); }, {"300", "<a>", "<b>"});
  expect_error([&] { write_byte_level_tokenizer(dir.path(), {{"<a>", 300}}, "<eos>"); }, {"<eos>"});
}

// A small valid folder (bytes + one merge "a b" -> "ab" + one added token) to break one file at a time.
void write_small_tokenizer(const fs::path& dir) {
  write_byte_level_tokenizer(dir, {{"<|im_end|>", 257}, {"<|endoftext|>", 256}});
  json vocab = json::parse(test::read_file(dir / "vocab.json"));
  vocab["ab"] = 258;
  test::write_file(dir / "vocab.json", vocab.dump());
  test::write_file(dir / "merges.txt", "#version: 0.2\na b\n");
}

TEST(Tokenizer, SmallFolderMergesByRank) {
  test::TempDir dir;
  write_small_tokenizer(dir.path());
  const Tokenizer t = Tokenizer::load(dir.path());
  EXPECT_EQ(ids_string(t.encode("abab<|im_end|>aab")), ids_string({258, 258, 257, 97, 258}));
  EXPECT_EQ(t.decode({258, 257, 97}), "ab<|im_end|>a");
}

TEST(Tokenizer, BrokenFilesGiveErrorsNamingTheFile) {
  {
    expect_error([] { Tokenizer::load("/nonexistent/tokenizer"); }, {"/nonexistent/tokenizer", "does not exist"});
  }
  {
    test::TempDir dir;
    expect_error([&] { Tokenizer::load(dir.path()); }, {"no vocab.json + merges.txt and no tokenizer.json"});
  }
  {
    test::TempDir dir;
    write_small_tokenizer(dir.path());
    fs::remove(dir / "merges.txt");
    expect_error([&] { Tokenizer::load(dir.path()); }, {"merges.txt is missing"});
  }
  {
    test::TempDir dir;
    write_small_tokenizer(dir.path());
    test::write_file(dir / "vocab.json", "{\"a\": 1, ");
    expect_error([&] { Tokenizer::load(dir.path()); }, {"vocab.json", "not valid JSON"});
  }
  {
    test::TempDir dir;
    write_small_tokenizer(dir.path());
    test::write_file(dir / "vocab.json", "{\"a\": \"one\"}");
    expect_error([&] { Tokenizer::load(dir.path()); }, {"vocab.json", "token \"a\" has id \"one\""});
  }
  {
    test::TempDir dir;
    write_small_tokenizer(dir.path());
    test::write_file(dir / "vocab.json", "{\"a\": 1, \"b\": 1}");
    expect_error([&] { Tokenizer::load(dir.path()); }, {"vocab.json", "id 1 is used by"});
  }
  {
    test::TempDir dir;
    write_small_tokenizer(dir.path());
    test::write_file(dir / "merges.txt", "#version: 0.2\na b\nabc\n");
    expect_error([&] { Tokenizer::load(dir.path()); }, {"merges.txt line 3", "two tokens", "abc"});
  }
  {
    test::TempDir dir;
    write_small_tokenizer(dir.path());
    test::write_file(dir / "merges.txt", "a b\nab zz\n");
    expect_error([&] { Tokenizer::load(dir.path()); }, {"merges.txt", "\"ab zz\"", "not in", "vocab.json"});
  }
  {
    test::TempDir dir;
    write_small_tokenizer(dir.path());
    test::write_file(dir / "added_tokens.json", "{\"<|im_end|>\": 300}");
    expect_error([&] { Tokenizer::load(dir.path()); }, {"<|im_end|>", "257", "300", "added_tokens.json"});
  }
  {
    test::TempDir dir;
    write_small_tokenizer(dir.path());
    test::write_file(dir / "added_tokens.json", "{\"[SEG]\": 258}");
    expect_error([&] { Tokenizer::load(dir.path()); }, {"[SEG]", "258", "\"ab\""});
  }
  {
    test::TempDir dir;
    write_small_tokenizer(dir.path());
    json config = json::parse(test::read_file(dir / "tokenizer_config.json"));
    config["eos_token"] = "<|end|>";
    test::write_file(dir / "tokenizer_config.json", config.dump());
    expect_error([&] { Tokenizer::load(dir.path()); }, {"tokenizer_config.json", "eos_token \"<|end|>\""});
  }
  {
    test::TempDir dir;
    write_small_tokenizer(dir.path());
    json config = json::parse(test::read_file(dir / "tokenizer_config.json"));
    config["added_tokens_decoder"]["x1"] = {{"content", "<x>"}};
    test::write_file(dir / "tokenizer_config.json", config.dump());
    expect_error([&] { Tokenizer::load(dir.path()); }, {"tokenizer_config.json", "\"x1\" is not an id"});
  }
  {
    test::TempDir dir;
    test::write_file(dir / "tokenizer.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}");
    expect_error([&] { Tokenizer::load(dir.path()); }, {"tokenizer.json", "not BPE"});
  }
}

TEST(Tokenizer, PreTokenizerAgreesWithPythonRegexOnRandomUnicode) {
  // Python's `regex` module running the reference pattern on NFC-normalised text (what
  // tokenization_qwen2.py does), on random strings drawn from characters of every class that
  // matters: letters of several scripts, digits and other numbers, marks that compose, the
  // whitespace family (incl. U+001C, which str.isspace() accepts but \s does not), newlines,
  // apostrophes with case-folded contractions (U+017F folds to 's'), punctuation and emoji.
  ASSERT_TRUE(test::have_program(kPython)) << test::install_hint(kPython, "Debian's python3");
  auto probe = test::run_command({kPython, "-c", "import regex"});
  ASSERT_EQ(probe.exit_code, 0) << test::install_hint("the regex module of /usr/bin/python3", "Debian's python3-regex")
                                << "\n" << probe.output;
  const std::u32string pool =
      U"aZ09 \t\n\r'sStTrReEvVmMlLdD.,!?-_/()<>[]\u017F\u00E9\u0301\u0308\u00DF\u03BB\u0436\u4E2D\u306E\uD55C"
      U"\u1112\u1161\u11A8\u0639\u0915\u094D\u0968\u00BD\u216B\u00B2\u00A0\u2009\u3000\u0085\u2028\u000B\u000C"
      U"\u001C\U0001F600\u200D\uFFFD\u212A\u212B\u0041\u030A";
  std::mt19937 rng(20240521);
  std::vector<std::string> texts;
  for (int i = 0; i < 3000; ++i) {
    std::u32string s;
    const int len = 1 + static_cast<int>(rng() % 12);
    for (int k = 0; k < len; ++k) s.push_back(pool[rng() % pool.size()]);
    texts.push_back(unicode::encode_utf8(s));
  }
  const std::string script = std::string(
                                 "import sys, json, regex, unicodedata\n"
                                 "pat = regex.compile(") +
                             json(kQwen2Pattern).dump() +
                             ")\n"
                             "texts = json.loads(sys.stdin.buffer.read().decode('utf-8'))\n"
                             "print(json.dumps([pat.findall(unicodedata.normalize('NFC', t)) for t in texts]))\n";
  auto result = test::run_command({kPython, "-c", script}, json(texts).dump(-1, ' ', true));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const json expected = json::parse(result.output);
  ASSERT_EQ(expected.size(), texts.size());
  int agree = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto pieces = Tokenizer::pre_tokenize(texts[i]);
    const auto want = expected[i].get<std::vector<std::string>>();
    EXPECT_EQ(json(pieces).dump(-1, ' ', true), json(want).dump(-1, ' ', true)) << "text: " << json(texts[i]).dump(-1, ' ', true);
    agree += pieces == want;
  }
  std::cout << "pre-tokenizer: " << agree << " of " << texts.size() << " random strings split as Python regex does\n";
}

TEST(Unicode, NfcPassesTheConformanceFile) {
  // NormalizationTest.txt: for every line c1;c2;c3;c4;c5, NFC(c1) = NFC(c2) = NFC(c3) = c2 and
  // NFC(c4) = NFC(c5) = c4 (UAX #15, section on conformance testing).
  const fs::path file = "/usr/share/unicode/NormalizationTest.txt.bz2";
  ASSERT_TRUE(fs::exists(file)) << test::install_hint(file.string(), "Debian's unicode-data");
  ASSERT_TRUE(test::have_program("bzcat")) << test::install_hint("bzcat", "Debian's bzip2");
  auto text = test::run_command({"bzcat", file.string()});
  ASSERT_EQ(text.exit_code, 0);
  std::istringstream in(text.output);
  std::string line;
  int checked = 0, failed = 0;
  auto parse = [](const std::string& field) {
    std::u32string s;
    std::istringstream f(field);
    std::string hex;
    while (f >> hex) s.push_back(static_cast<char32_t>(std::stoul(hex, nullptr, 16)));
    return s;
  };
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line[0] == '@') continue;
    std::vector<std::u32string> c;
    std::istringstream fields(line);
    std::string field;
    for (int k = 0; k < 5 && std::getline(fields, field, ';'); ++k) c.push_back(parse(field));
    ASSERT_EQ(c.size(), 5u) << line;
    const bool ok = unicode::nfc(c[0]) == c[1] && unicode::nfc(c[1]) == c[1] && unicode::nfc(c[2]) == c[1] &&
                    unicode::nfc(c[3]) == c[3] && unicode::nfc(c[4]) == c[3];
    if (!ok && ++failed <= 10) ADD_FAILURE() << "NFC differs on: " << line;
    ++checked;
  }
  EXPECT_GT(checked, 15000);
  EXPECT_EQ(failed, 0);
  std::cout << "NFC: " << checked - failed << " of " << checked << " conformance lines pass (Unicode "
            << unicode::version() << ")\n";
}

TEST(Unicode, CharacterClassesOfTheRegex) {
  using unicode::CharClass;
  EXPECT_EQ(unicode::char_class(U'a'), CharClass::kLetter);
  EXPECT_EQ(unicode::char_class(0x4E2D), CharClass::kLetter);  // CJK (a range in UnicodeData.txt)
  EXPECT_EQ(unicode::char_class(0xD55C), CharClass::kLetter);  // Hangul syllable (a range too)
  EXPECT_EQ(unicode::char_class(0x0301), CharClass::kOther);   // combining mark (Mn)
  EXPECT_EQ(unicode::char_class(U'7'), CharClass::kNumber);
  EXPECT_EQ(unicode::char_class(0x00BD), CharClass::kNumber);  // VULGAR FRACTION ONE HALF (No)
  EXPECT_EQ(unicode::char_class(0x216B), CharClass::kNumber);  // ROMAN NUMERAL TWELVE (Nl)
  EXPECT_EQ(unicode::char_class(U'_'), CharClass::kOther);
  EXPECT_TRUE(unicode::is_white_space(0x3000));
  EXPECT_TRUE(unicode::is_white_space(0x0085));
  EXPECT_FALSE(unicode::is_white_space(0x001C));  // str.isspace() but not White_Space
  EXPECT_FALSE(unicode::is_white_space(0x200B));  // ZERO WIDTH SPACE is not White_Space
}

TEST(Unicode, ReplacementDecodingMatchesPython) {
  // bytes.decode("utf-8", errors="replace") is what the reference tokenizer's decode runs.
  std::mt19937 rng(7);
  const std::vector<unsigned char> interesting = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1,
                                                  0xC2, 0xDF, 0xE0, 0xE1, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5,
                                                  0xFF};
  std::vector<std::string> samples;
  json hex = json::array();
  for (int i = 0; i < 4000; ++i) {
    std::string s;
    const int len = static_cast<int>(rng() % 9);
    for (int k = 0; k < len; ++k)
      s.push_back(static_cast<char>(rng() % 3 ? interesting[rng() % interesting.size()] : rng() % 256));
    samples.push_back(s);
    std::string h;
    for (unsigned char c : s) {
      static const char* digits = "0123456789abcdef";
      h.push_back(digits[c >> 4]);
      h.push_back(digits[c & 15]);
    }
    hex.push_back(h);
  }
  auto result = test::run_command(
      {kPython, "-c",
       "import sys, json\n"
       "data = json.load(sys.stdin)\n"
       "print(json.dumps([bytes.fromhex(h).decode('utf-8', 'replace') for h in data]))\n"},
      hex.dump());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const json expected = json::parse(result.output);
  int agree = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const std::string got = unicode::decode_utf8_replacing(samples[i]);
    EXPECT_EQ(got, expected[i].get<std::string>()) << "bytes (hex): " << hex[i];
    agree += got == expected[i].get<std::string>();
  }
  std::cout << "UTF-8 replacement decoding: " << agree << " of " << samples.size() << " byte strings as Python\n";
}

}  // namespace
}  // namespace unibiomed::inference
