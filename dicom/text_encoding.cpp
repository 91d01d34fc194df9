// Text values to UTF-8 (text_encoding.h): DCMTK's converter for the sets it supports, an ISO 2022
// decoder of our own for the Japanese ones.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/text_encoding.h"

#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcelem.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcspchrs.h>
#include <iconv.h>

#include <cctype>
#include <cerrno>
#include <optional>
#include <vector>

namespace unibiomed::dicom {

namespace {

const char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

void append_code_point(std::string& out, uint32_t c) {
  if (c < 0x80) {
    out += char(c);
  } else if (c < 0x800) {
    out += char(0xC0 | (c >> 6));
    out += char(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += char(0xE0 | (c >> 12));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  } else {
    out += char(0xF0 | (c >> 18));
    out += char(0x80 | ((c >> 12) & 0x3F));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  }
}

// Length of the well-formed UTF-8 sequence at text[i], or 0 when there is none.
size_t utf8_sequence_length(const std::string& text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char b = byte(i);
  if (b < 0x80) return 1;
  size_t n;
  uint32_t c, min;
  if ((b & 0xE0) == 0xC0) {
    n = 2, c = b & 0x1F, min = 0x80;
  } else if ((b & 0xF0) == 0xE0) {
    n = 3, c = b & 0x0F, min = 0x800;
  } else if ((b & 0xF8) == 0xF0) {
    n = 4, c = b & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    c = (c << 6) | (byte(i + k) & 0x3F);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
  return n;
}

bool has_8bit_or_escape(const std::string& text) {
  for (const char ch : text) {
    const auto b = static_cast<unsigned char>(ch);
    if (b >= 0x80 || b == 0x1B) return true;
  }
  return false;
}

std::string latin1_to_utf8(const std::string& text) {
  std::string out;
  out.reserve(text.size() * 2);
  for (const char ch : text) append_code_point(out, static_cast<unsigned char>(ch));
  return out;
}

// Text whose declared set does not explain it: kept when it is UTF-8, else read as Latin-1.
std::string best_guess(const std::string& raw) {
  return is_valid_utf8(raw) ? raw : latin1_to_utf8(raw);
}

std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(' ');
  if (begin == std::string::npos) return {};
  return s.substr(begin, s.find_last_not_of(' ') - begin + 1);
}

// The defined term a spelling means: "ISO_IR100", "iso-ir 100" -> "ISO_IR 100";
// "ISO2022IR87" -> "ISO 2022 IR 87"; "UTF-8" -> "ISO_IR 192". Other text is kept.
std::string defined_term(const std::string& spelled) {
  const std::string term = trim(spelled);
  std::string key;
  for (const char ch : term)
    if (std::isalnum(static_cast<unsigned char>(ch))) key += char(std::toupper(static_cast<unsigned char>(ch)));
  const auto number_after = [&](const std::string& prefix) -> std::string {
    if (key.size() <= prefix.size() || key.compare(0, prefix.size(), prefix) != 0) return {};
    const std::string rest = key.substr(prefix.size());
    for (const char ch : rest)
      if (!std::isdigit(static_cast<unsigned char>(ch))) return {};
    return rest;
  };
  if (const auto n = number_after("ISO2022IR"); !n.empty()) return "ISO 2022 IR " + n;
  if (const auto n = number_after("ISOIR"); !n.empty()) return "ISO_IR " + n;
  if (key == "UTF8") return "ISO_IR 192";
  if (key == "GB18030" || key == "GBK") return key;
  return term;
}

// EUC-JP bytes to UTF-8 through iconv; nullopt when iconv cannot (an unmapped code point).
std::optional<std::string> euc_jp_to_utf8(const std::string& bytes) {
  iconv_t cd = iconv_open("UTF-8", "EUC-JP");
  if (cd == reinterpret_cast<iconv_t>(-1)) return std::nullopt;
  std::string out(bytes.size() * 2 + 8, '\0');
  std::string in = bytes;
  char* in_ptr = in.data();
  size_t in_left = in.size();
  char* out_ptr = out.data();
  size_t out_left = out.size();
  const size_t status = iconv(cd, &in_ptr, &in_left, &out_ptr, &out_left);
  iconv_close(cd);
  if (status == static_cast<size_t>(-1) || in_left != 0) return std::nullopt;
  out.resize(out.size() - out_left);
  return out;
}

// Two-byte characters of JIS X 0208 (prefix "") or JIS X 0212 (prefix "\x8F"), as 7-bit
// pairs, to UTF-8: whole when possible, else pair by pair with U+FFFD for unmapped ones.
void append_jis_pairs(std::string& out, const std::string& pairs, const std::string& prefix) {
  if (pairs.empty()) return;
  std::string euc;
  for (size_t i = 0; i + 1 < pairs.size(); i += 2) {
    euc += prefix;
    euc += char(static_cast<unsigned char>(pairs[i]) | 0x80);
    euc += char(static_cast<unsigned char>(pairs[i + 1]) | 0x80);
  }
  if (auto whole = euc_jp_to_utf8(euc)) {
    out += *whole;
    return;
  }
  const size_t step = prefix.size() + 2;  // one character's EUC-JP bytes
  for (size_t i = 0; i < euc.size(); i += step) {
    const auto c = euc_jp_to_utf8(euc.substr(i, step));
    out += c ? *c : std::string(kReplacement);
  }
}

// The graphic sets an ISO 2022 escape sequence may designate (PS3.3 Table C.12-4 and C.12-5).
enum class Graphic { Ascii, Romaji, Katakana, Jis0208, Jis0212, Latin1, Unsupported, None };

// ISO 2022 text in the Japanese sets DICOM defines (value 1 of (0008,0005): ISO 2022 IR 6 or
// ISO 2022 IR 13; further values: ISO 2022 IR 13, 87, 159, and Latin-1 as ISO 2022 IR 100).
// Escape sequences of other sets designate a set this decoder does not read: its characters
// become U+FFFD.
std::string decode_iso2022_japanese(const std::string& raw, TextKind kind, bool first_is_jis_x0201) {
  const Graphic initial_g0 = first_is_jis_x0201 ? Graphic::Romaji : Graphic::Ascii;
  const Graphic initial_g1 = first_is_jis_x0201 ? Graphic::Katakana : Graphic::None;
  Graphic g0 = initial_g0, g1 = initial_g1;
  std::string out, pairs;
  out.reserve(raw.size() * 2);
  const auto flush = [&] {
    append_jis_pairs(out, pairs, g0 == Graphic::Jis0212 ? "\x8F" : "");
    pairs.clear();
  };
  const auto byte = [&](size_t k) { return k < raw.size() ? static_cast<unsigned char>(raw[k]) : 0u; };
  const auto is_delimiter = [&](unsigned char b) {
    if (b == '\r' || b == '\n' || b == '\f' || b == '\t') return true;
    if (kind != TextKind::FreeText && b == '\\') return true;
    return kind == TextKind::PersonName && (b == '^' || b == '=');
  };
  for (size_t i = 0; i < raw.size();) {
    const unsigned char b = byte(i);
    if (b == 0x1B) {
      flush();
      const unsigned char b1 = byte(i + 1), b2 = byte(i + 2), b3 = byte(i + 3);
      size_t length = 3;
      if (b1 == '(' && b2 == 'B') {
        g0 = Graphic::Ascii;
      } else if (b1 == '(' && b2 == 'J') {
        g0 = Graphic::Romaji;
      } else if (b1 == '(' && b2 == 'I') {
        g0 = Graphic::Katakana;
      } else if (b1 == ')' && b2 == 'I') {
        g1 = Graphic::Katakana;
      } else if (b1 == '-' && b2 == 'A') {
        g1 = Graphic::Latin1;
      } else if (b1 == '$' && (b2 == 'B' || b2 == '@')) {
        g0 = Graphic::Jis0208;
      } else if (b1 == '$' && b2 == '(' && b3 == 'D') {
        g0 = Graphic::Jis0212, length = 4;
      } else if (b1 == '(' && b2 >= 0x30 && b2 <= 0x7E) {
        g0 = Graphic::Unsupported;
      } else if ((b1 == ')' || b1 == '-') && b2 >= 0x30 && b2 <= 0x7E) {
        g1 = Graphic::Unsupported;
      } else if (b1 == '$' && (b2 == '(' || b2 == ')') && b3 >= 0x30 && b3 <= 0x7E) {
        (b2 == '(' ? g0 : g1) = Graphic::Unsupported, length = 4;
      } else {
        out += kReplacement;  // a lone or malformed escape
        length = 1;
      }
      i += length;
      continue;
    }
    const bool two_byte = g0 == Graphic::Jis0208 || g0 == Graphic::Jis0212;
    if (two_byte && b >= 0x21 && b <= 0x7E) {
      const unsigned char next = byte(i + 1);
      if (next >= 0x21 && next <= 0x7E) {
        pairs += char(b);
        pairs += char(next);
        i += 2;
      } else {
        flush();
        out += kReplacement;
        i += 1;
      }
      continue;
    }
    flush();
    if (b < 0x80 && is_delimiter(b) && (!two_byte || b < 0x20)) {
      g0 = initial_g0, g1 = initial_g1;
      out += char(b);
    } else if (b < 0x21 || b == 0x7F) {
      out += char(b);  // space and controls are the same in every set
    } else if (b < 0x80) {
      if (g0 == Graphic::Ascii || g0 == Graphic::Romaji) {
        out += char(b);  // JIS X 0201 Romaji read as ASCII (yen and overline are rare; '\' delimits)
      } else if (g0 == Graphic::Katakana && b <= 0x5F) {
        append_code_point(out, 0xFF61 + (b - 0x21));
      } else {
        out += kReplacement;
      }
    } else if (g1 == Graphic::Katakana && b >= 0xA1 && b <= 0xDF) {
      append_code_point(out, 0xFF61 + (b - 0xA1));
    } else if (g1 == Graphic::Latin1 && b >= 0xA0) {
      append_code_point(out, b);
    } else {
      out += kReplacement;
    }
    ++i;
  }
  flush();
  return out;
}

std::string delimiters_of(TextKind kind) {
  switch (kind) {
    case TextKind::PersonName:
      return "\\^=";
    case TextKind::Value:
      return "\\";
    case TextKind::FreeText:
      return "";
  }
  return "";
}

std::string item_character_set(DcmItem& item) {
  OFString value;
  if (item.findAndGetOFStringArray(DCM_SpecificCharacterSet, value, OFFalse).bad()) return {};
  return value.c_str();
}

std::optional<TextKind> text_kind(DcmEVR vr) {
  switch (vr) {
    case EVR_PN:
      return TextKind::PersonName;
    case EVR_SH:
    case EVR_LO:
    case EVR_UC:
      return TextKind::Value;
    case EVR_ST:
    case EVR_LT:
    case EVR_UT:
      return TextKind::FreeText;
    default:
      return std::nullopt;
  }
}

void convert_item(DcmItem& item, const TextDecoder& inherited, std::vector<std::string>* guessed) {
  std::optional<TextDecoder> own;
  const bool declares = item.tagExists(DCM_SpecificCharacterSet);
  if (declares) own.emplace(item_character_set(item));
  const TextDecoder& decoder = own ? *own : inherited;
  for (unsigned long i = 0; i < item.card(); ++i) {
    DcmElement* element = item.getElement(i);
    if (!element) continue;
    if (element->ident() == EVR_SQ) {
      auto* sequence = static_cast<DcmSequenceOfItems*>(element);
      for (unsigned long k = 0; k < sequence->card(); ++k)
        if (DcmItem* nested = sequence->getItem(k)) convert_item(*nested, decoder, guessed);
      continue;
    }
    const auto kind = text_kind(element->ident());
    if (!kind || element->getLength() == 0) continue;
    OFString raw;
    if (element->getOFStringArray(raw, OFFalse).bad()) continue;
    const std::string text(raw.c_str(), raw.length());
    std::string doubt;
    const std::string utf8 = decoder.to_utf8(text, *kind, guessed ? &doubt : nullptr);
    if (utf8 != text) element->putOFStringArray(OFString(utf8.c_str(), utf8.size()));
    if (!doubt.empty()) {
      DcmTag tag(element->getTag());
      std::string shown = utf8.size() > 64 ? valid_utf8(utf8.substr(0, 64)) + "..." : utf8;
      guessed->push_back(std::string(tag.getTagName()) + " " + tag.toString().c_str() + " '" + shown + "': " + doubt);
    }
  }
  if (declares) item.putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 192");
}

}  // namespace

struct TextDecoder::Converter {
  DcmSpecificCharacterSet dcmtk;
};

TextDecoder::TextDecoder(const std::string& specific_character_set) {
  std::vector<std::string> terms;
  size_t start = 0;
  while (true) {
    const size_t end = specific_character_set.find('\\', start);
    terms.push_back(defined_term(specific_character_set.substr(start, end - start)));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  while (terms.size() > 1 && terms.back().empty()) terms.pop_back();
  for (size_t k = 0; k < terms.size(); ++k) {
    terms_ += (k ? "\\" : "") + terms[k];
    const std::string& t = terms[k];
    if (t == "ISO 2022 IR 87" || t == "ISO 2022 IR 159" || t == "ISO 2022 IR 13" || t == "ISO_IR 13") japanese_ = true;
  }
  first_is_jis_x0201_ = terms.front() == "ISO 2022 IR 13" || terms.front() == "ISO_IR 13";
  utf8_ = terms.size() == 1 && terms.front() == "ISO_IR 192";
}

TextDecoder::~TextDecoder() = default;

std::string TextDecoder::to_utf8(const std::string& raw, TextKind kind, std::string* doubt) const {
  std::string why;
  const std::string out = decode(raw, kind, why);
  // Bytes the set does not explain, each become U+FFFD (the Japanese sets, UTF-8, iconv's output).
  if (why.empty() && out.find(kReplacement) != std::string::npos && raw.find(kReplacement) == std::string::npos)
    why = "bytes that " + (terms_.empty() ? std::string("the default repertoire") : "'" + terms_ + "'") +
          " does not explain, each written as U+FFFD";
  if (doubt) *doubt = why;
  return out;
}

std::string TextDecoder::decode(const std::string& raw, TextKind kind, std::string& why) const {
  if (!has_8bit_or_escape(raw)) return raw;  // ASCII reads the same in every set
  if (japanese_) return decode_iso2022_japanese(raw, kind, first_is_jis_x0201_);
  if (utf8_) return valid_utf8(raw);
  auto guess = [&](const std::string& what) {
    why = what + ": read as " + (is_valid_utf8(raw) ? "UTF-8" : "Latin-1 (ISO_IR 100)");
    return best_guess(raw);
  };
  if (terms_.empty() || terms_ == "ISO_IR 6" || terms_ == "ISO 2022 IR 6")
    return guess("8-bit text where Specific Character Set (0008,0005) declares " +
                 std::string(terms_.empty() ? "none" : "only ASCII (" + terms_ + ")"));
  if (!converter_ && !converter_failed_) {
    converter_ = std::make_unique<Converter>();
    if (converter_->dcmtk.selectCharacterSet(terms_.c_str()).bad()) {
      converter_.reset();
      converter_failed_ = true;  // an unknown term: read as best we can
    }
  }
  if (!converter_) return guess("Specific Character Set (0008,0005) '" + terms_ + "' is not one this node knows");
  OFString out;
  if (converter_->dcmtk.convertString(raw.c_str(), raw.size(), out, delimiters_of(kind).c_str()).bad())
    return guess("bytes that '" + terms_ + "' does not explain");
  return valid_utf8(std::string(out.c_str(), out.length()));
}

bool is_valid_utf8(const std::string& text) {
  for (size_t i = 0; i < text.size();) {
    const size_t n = utf8_sequence_length(text, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string valid_utf8(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t n = utf8_sequence_length(text, i);
    if (n == 0) {
      out += kReplacement;
      ++i;
    } else {
      out.append(text, i, n);
      i += n;
    }
  }
  return out;
}

void convert_to_utf8(DcmItem& item, std::vector<std::string>* guessed) {
  const TextDecoder default_repertoire("");
  convert_item(item, default_repertoire, guessed);  // item's own (0008,0005), if any, is read there
  item.putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 192");
}

}  // namespace unibiomed::dicom
