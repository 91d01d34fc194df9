// Text of DICOM datasets in UTF-8, whatever their Specific Character Set (0008,0005) says.
//
// Everything the node shows or writes (summary.json, logs, the SEG's and SR's patient and study
// attributes, which are written in ISO_IR 192) needs UTF-8, while hospitals send Latin-1
// (ISO_IR 100), Cyrillic, Greek, Arabic, Hebrew, GB18030, Korean and Japanese with ISO 2022
// code extensions, and sometimes 8-bit text with no Specific Character Set at all.
//
// DCMTK's converter (GNU iconv underneath on Debian) does every set but the Japanese multi-byte
// ones: with iconv, DCMTK 3.6.7 refuses "ISO 2022 IR 87" (JIS X 0208) and "ISO 2022 IR 159"
// (JIS X 0212). Those, and JIS X 0201 ("ISO 2022 IR 13"), are decoded here: the ISO 2022 escape
// sequences of PS3.3 C.12.1.1.2 are followed, the two-byte characters are converted through
// EUC-JP (the same code points with the high bit set), half-width katakana map to U+FF61-U+FF9F,
// and Latin-1 designated next to them (ISO 2022 IR 100, ESC - A) is read too.
//
// Decoding never fails: a byte sequence that the declared set cannot explain becomes U+FFFD;
// 8-bit text whose declared set is the default repertoire or unknown is kept when it is valid
// UTF-8 and read as Latin-1 otherwise (the usual mistake of Western European sources).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <memory>
#include <string>
#include <vector>

class DcmItem;

namespace unibiomed::dicom {

// How a value's delimiters reset the character set to the default (PS3.5 6.1.2.5.3): every
// value resets at CR, LF, FF and TAB; multi-valued strings also at '\'; person names also at
// '^' and '='. ST, LT and UT are one free text each.
enum class TextKind { Value, PersonName, FreeText };

class TextDecoder {
 public:
  // The value of (0008,0005) as read: one or more defined terms separated by '\'; empty (or
  // absent) is the default repertoire (ASCII). Common misspellings ("ISO_IR100", "ISO-IR 100",
  // "UTF-8") are read as the defined term they mean.
  explicit TextDecoder(const std::string& specific_character_set);
  ~TextDecoder();
  TextDecoder(const TextDecoder&) = delete;
  TextDecoder& operator=(const TextDecoder&) = delete;

  // The value in UTF-8 (always valid UTF-8). Not thread-safe: one decoder per thread. `doubt`
  // (when given) is set to why the result is a guess, "" when it is not: 8-bit text without a
  // declared set, a set this decoder does not know, bytes the set does not explain (U+FFFD).
  std::string to_utf8(const std::string& raw, TextKind kind = TextKind::Value, std::string* doubt = nullptr) const;

  // The defined terms as understood, joined by '\' (e.g. "\ISO 2022 IR 87").
  const std::string& character_set() const { return terms_; }

 private:
  struct Converter;
  std::string decode(const std::string& raw, TextKind kind, std::string& why) const;
  std::string terms_;
  bool japanese_ = false;                         // decoded here (ISO 2022 IR 13 / 87 / 159)
  bool first_is_jis_x0201_ = false;               // value 1 is ISO 2022 IR 13 (or ISO_IR 13)
  bool utf8_ = false;                             // ISO_IR 192 alone
  mutable std::unique_ptr<Converter> converter_;  // DCMTK's, made on first 8-bit value
  mutable bool converter_failed_ = false;
};

// True when text is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool is_valid_utf8(const std::string& text);

// text with every byte that is not part of a well-formed UTF-8 sequence replaced by U+FFFD.
std::string valid_utf8(const std::string& text);

// Rewrites every text value (SH, LO, ST, LT, UT, PN, UC) of item and of the items of its
// sequences in UTF-8, each with the Specific Character Set in force there (a nested item may
// declare its own), and sets (0008,0005) to ISO_IR 192 on item and on every item that declared
// one. Never fails (see above). `guessed` (when given) gets one line per value whose text is a
// guess: "PatientName (0010,0010) 'Müller^Jörg': <why>" (TextDecoder::to_utf8's doubt).
void convert_to_utf8(DcmItem& item, std::vector<std::string>* guessed = nullptr);

}  // namespace unibiomed::dicom
