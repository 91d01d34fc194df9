// Sentences from the model's answers.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "pipeline/report_text.h"

#include <cctype>
#include <map>

namespace unibiomed::pipeline {

namespace {

const std::string kSeg = "[SEG]";

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string remove_all(std::string s, const std::string& what) {
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p)) s.replace(p, what.size(), " ");
  return s;
}

std::string collapse_spaces(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (is_space(c)) {
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
    } else {
      // No space before punctuation ("lesion ." -> "lesion.").
      if ((c == '.' || c == ',' || c == '!' || c == '?' || c == ';' || c == ':') && !out.empty() && out.back() == ' ')
        out.pop_back();
      out.push_back(c);
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

bool starts_with_word_ci(const std::string& s, const std::string& word) {
  if (s.size() < word.size()) return false;
  for (size_t i = 0; i < word.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != word[i]) return false;
  return s.size() == word.size() || !std::isalnum(static_cast<unsigned char>(s[word.size()]));
}

// Sentences ending at '.', '!' or '?' followed by a space or the end ("3.5 cm" stays whole).
std::vector<std::string> sentences(const std::string& text) {
  std::vector<std::string> out;
  std::string current;
  for (size_t i = 0; i < text.size(); ++i) {
    current.push_back(text[i]);
    const char c = text[i];
    if ((c == '.' || c == '!' || c == '?') && (i + 1 == text.size() || is_space(text[i + 1]))) {
      out.push_back(current);
      current.clear();
    }
  }
  out.push_back(current);
  return out;
}

// The words the model puts around a [SEG] that say nothing by themselves.
const char* const kFiller[] = {"the segmentation result is", "the segmentation is", "sure", "yes", "it is",
                               "this is", "here is", "there is", "here it is"};

// A sentence that held a [SEG]: the placeholder and the leading filler off.
std::string without_filler(std::string s) {
  s = remove_all(std::move(s), kSeg);
  bool changed = true;
  while (changed) {
    changed = false;
    size_t b = 0;
    while (b < s.size() && (is_space(s[b]) || s[b] == ',' || s[b] == '.' || s[b] == ':')) ++b;
    s = s.substr(b);
    for (const char* f : kFiller) {
      const std::string filler = f;
      if (starts_with_word_ci(s, filler)) {
        s = s.substr(filler.size());
        changed = true;
        break;
      }
    }
  }
  // Nothing but punctuation left: nothing said.
  bool content = false;
  for (char c : s) content |= std::isalnum(static_cast<unsigned char>(c)) != 0;
  if (!content) return "";
  s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

std::string strip_trailing_stop(std::string s) {
  while (!s.empty() && (s.back() == '.' || is_space(s.back()))) s.pop_back();
  return s;
}

bool equal_ci(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

}  // namespace

std::string finding_sentence(const std::string& answer, const std::string& fallback) {
  std::string a = answer;
  for (const char* marker : {"<|im_end|>", "<|end|>", "<|endoftext|>", "<p>", "</p>"}) a = remove_all(std::move(a), marker);
  // A [SEG] glued to the next word ("[SEG]Liver") still separates sentences' words.
  for (size_t p = a.find(kSeg); p != std::string::npos; p = a.find(kSeg, p + kSeg.size() + 2)) a.replace(p, kSeg.size(), " " + kSeg + " ");
  std::string out;
  for (const std::string& sentence : sentences(a)) {
    const std::string kept = sentence.find(kSeg) == std::string::npos ? sentence : without_filler(sentence);
    if (!kept.empty()) out += " " + kept;
  }
  out = collapse_spaces(out);
  if (!out.empty() && std::isalnum(static_cast<unsigned char>(out.back()))) out.push_back('.');
  if (out.empty() && !fallback.empty()) out = strip_trailing_stop(fallback) + ".";
  return out;
}

std::string model_answer(const std::string& answer) {
  std::string a = answer;
  for (const char* marker : {"<|im_end|>", "<|end|>", "<|endoftext|>"})
    for (size_t p = a.find(marker); p != std::string::npos; p = a.find(marker, p)) a.erase(p, std::string(marker).size());
  const size_t b = a.find_first_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : a.substr(b, a.find_last_not_of(" \t\r\n") - b + 1);
}

std::string reported_text(const std::string& label, const std::string& sentence) {
  if (sentence.empty() || equal_ci(strip_trailing_stop(sentence), strip_trailing_stop(label))) return label;
  return label + ": " + sentence;
}

std::optional<ChosenAnswer> choose_answer(const std::vector<std::pair<size_t, std::string>>& texts,
                                          std::optional<size_t> key_frame) {
  ChosenAnswer chosen;
  if (key_frame) {
    for (const auto& [frame, text] : texts)
      if (frame == *key_frame) chosen = {text, frame};
  } else {
    std::map<std::string, size_t> count;
    for (const auto& [frame, text] : texts)
      if (!text.empty() && ++count[text] > count[chosen.text]) chosen = {text, frame};
    if (!chosen.text.empty() && count.size() > 1) chosen.frame = texts.front().first;
  }
  if (chosen.text.empty()) return std::nullopt;
  return chosen;
}

}  // namespace unibiomed::pipeline
