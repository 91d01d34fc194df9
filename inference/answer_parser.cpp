// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/answer_parser.h"

#include <cctype>

namespace unibiomed::inference {

namespace {

const std::string kSeg = "[SEG]";
const std::string kOpen = "<p>";
const std::string kClose = "</p>";
// Tokens that end an answer and carry no meaning (eos and the phi3 template's stop word).
const char* const kEndMarkers[] = {"<|im_end|>", "<|end|>", "<|endoftext|>"};

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string collapse_spaces(const std::string& s) {
  std::string out;
  bool pending = false;
  for (char c : s) {
    if (is_space(c)) {
      pending = !out.empty();
      continue;
    }
    // No space before closing punctuation left behind by removed markup ("liver [SEG] ." ).
    if (pending && c != '.' && c != ',' && c != ';' && c != ':' && c != '!' && c != '?') out += ' ';
    pending = false;
    out += c;
  }
  return out;
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

// Leading and trailing spaces and sentence punctuation off a phrase: " pneumonia. " -> "pneumonia".
std::string phrase_of(const std::string& s) {
  std::string t = collapse_spaces(s);
  size_t b = 0, e = t.size();
  auto junk = [](char c) { return is_space(c) || c == '.' || c == ',' || c == ';' || c == ':'; };
  while (b < e && junk(t[b])) ++b;
  while (e > b && junk(t[e - 1])) --e;
  return t.substr(b, e - b);
}

std::string remove_all(std::string s, const std::string& what) {
  for (size_t p; (p = s.find(what)) != std::string::npos;) s.replace(p, what.size(), " ");
  return s;
}

std::string strip_markup(std::string s) {
  s = remove_all(std::move(s), kSeg);
  s = remove_all(std::move(s), kOpen);
  s = remove_all(std::move(s), kClose);
  return collapse_spaces(s);
}

// The first sentence of `s` (up to and including the first '.', '!' or '?' followed by a space
// or the end), markup removed.
std::string first_sentence(const std::string& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if ((s[i] == '.' || s[i] == '!' || s[i] == '?') && (i + 1 == s.size() || is_space(s[i + 1])))
      return s.substr(0, i + 1);
  }
  return s;
}

bool starts_with_ci(const std::string& s, const std::string& prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != std::tolower(static_cast<unsigned char>(prefix[i])))
      return false;
  return true;
}

}  // namespace

std::optional<std::string> segmentation_target(const std::string& question) {
  std::string q = trim(remove_all(question, "<image>"));
  const std::string lead = "please segment ";
  if (!starts_with_ci(q, lead)) return std::nullopt;
  std::string target = phrase_of(q.substr(lead.size()));
  if (target.empty()) return std::nullopt;
  return target;
}

ParsedAnswer parse_answer(const std::string& answer, const std::string& question) {
  std::string a = answer;
  for (const char* m : kEndMarkers) a = remove_all(std::move(a), m);
  a = trim(a);

  ParsedAnswer out;
  out.text = strip_markup(a);
  std::vector<size_t> segs;
  for (size_t p = a.find(kSeg); p != std::string::npos; p = a.find(kSeg, p + kSeg.size())) segs.push_back(p);
  out.seg_count = static_cast<int>(segs.size());

  if (segs.empty()) {
    if (!out.text.empty()) out.findings.push_back({phrase_of(out.text), out.text, -1});
    return out;
  }
  const std::optional<std::string> target = segmentation_target(question);
  for (size_t k = 0; k < segs.size(); ++k) {
    const size_t at = segs[k];
    AnswerFinding f;
    f.seg_index = static_cast<int>(k);
    // 1) "<p> phrase </p> [SEG]": the paragraph closed right before this [SEG].
    const std::string before = trim(a.substr(0, at));
    const size_t prev_end = k == 0 ? 0 : segs[k - 1] + kSeg.size();
    if (before.size() >= kClose.size() && before.compare(before.size() - kClose.size(), kClose.size(), kClose) == 0) {
      const size_t close_at = before.size() - kClose.size();
      const size_t open_at = before.rfind(kOpen, close_at);
      if (open_at != std::string::npos && open_at >= prev_end) {
        const std::string inner = before.substr(open_at + kOpen.size(), close_at - open_at - kOpen.size());
        f.text = strip_markup(inner);
        f.phrase = phrase_of(first_sentence(f.text));
      }
    }
    // 2) "It is [SEG]. disease.": the first sentence after this [SEG], up to the next markup.
    if (f.phrase.empty()) {
      size_t end = k + 1 < segs.size() ? segs[k + 1] : a.size();
      const size_t next_open = a.find(kOpen, at);
      if (next_open != std::string::npos && next_open < end) end = next_open;
      std::string after = a.substr(at + kSeg.size(), end - at - kSeg.size());
      size_t b = 0;  // skip the punctuation that closes "It is [SEG]."
      while (b < after.size() && (is_space(after[b]) || after[b] == '.' || after[b] == ',')) ++b;
      after = after.substr(b);
      const std::string sentence = strip_markup(first_sentence(after));
      // "It is [SEG]. It is [SEG]. ..." names nothing after the first.
      if (!starts_with_ci(sentence, "it is") && !starts_with_ci(sentence, "sure")) {
        f.phrase = phrase_of(sentence);
        f.text = sentence;
      }
    }
    // 3) "Sure, [SEG].": the question's target.
    if (f.phrase.empty() && target) f.phrase = *target;
    if (f.text.empty()) f.text = f.phrase;
    out.findings.push_back(std::move(f));
  }
  return out;
}

}  // namespace unibiomed::inference
