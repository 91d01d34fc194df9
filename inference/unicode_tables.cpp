// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/unicode_tables.h"

#include <algorithm>
#include <iterator>

#include "inference/error.h"

namespace unibiomed::inference::unicode {

namespace {

struct ClassRange {
  char32_t first, last;
  CharClass value;
};
struct CodeRange {
  char32_t first, last;
};
struct CombiningClassRange {
  char32_t first, last;
  uint8_t value;
};
struct Decomposition {  // canonical: cp -> first (+ second, 0 for a singleton)
  char32_t cp, first, second;
};
struct Composition {  // primary composite: first + second -> composite
  char32_t first, second, composite;
};
constexpr CharClass kL = CharClass::kLetter;
constexpr CharClass kN = CharClass::kNumber;

#include "inference/unicode_tables.inc"

// Hangul syllables are composed arithmetically (Unicode 15.0, section 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

template <typename Range>
const Range* find_range(const Range* begin, const Range* end, char32_t cp) {
  const Range* it = std::upper_bound(begin, end, cp, [](char32_t c, const Range& r) { return c < r.first; });
  if (it == begin) return nullptr;
  --it;
  return cp <= it->last ? it : nullptr;
}

void decompose(char32_t cp, std::u32string& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  const auto* end = std::end(kDecompositions);
  const auto* it = std::lower_bound(std::begin(kDecompositions), end, cp,
                                    [](const Decomposition& d, char32_t c) { return d.cp < c; });
  if (it == end || it->cp != cp) {
    out.push_back(cp);
    return;
  }
  decompose(it->first, out);
  if (it->second) decompose(it->second, out);
}

char32_t compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  const auto* end = std::end(kCompositions);
  const auto* it = std::lower_bound(std::begin(kCompositions), end, std::make_pair(a, b),
                                    [](const Composition& c, const std::pair<char32_t, char32_t>& key) {
                                      return std::make_pair(c.first, c.second) < key;
                                    });
  return (it != end && it->first == a && it->second == b) ? it->composite : 0;
}

[[noreturn]] void bad_utf8(const std::string& what, size_t offset, const char* why) {
  throw InferenceError(what + " is not valid UTF-8: " + why + " at byte " + std::to_string(offset));
}

// Length of the well-formed sequence starting with lead byte `b0` (0 if `b0` cannot start one)
// and the allowed range of its second byte (Unicode 15.0, table 3-7).
int sequence_length(unsigned char b0, unsigned char& lo, unsigned char& hi) {
  lo = 0x80;
  hi = 0xBF;
  if (b0 < 0x80) return 1;
  if (b0 < 0xC2) return 0;
  if (b0 < 0xE0) return 2;
  if (b0 < 0xF0) {
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
    return 3;
  }
  if (b0 < 0xF5) {
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
    return 4;
  }
  return 0;
}

}  // namespace

CharClass char_class(char32_t cp) {
  const ClassRange* r = find_range(std::begin(kClassRanges), std::end(kClassRanges), cp);
  return r ? r->value : CharClass::kOther;
}

bool is_white_space(char32_t cp) {
  return find_range(std::begin(kWhiteSpaceRanges), std::end(kWhiteSpaceRanges), cp) != nullptr;
}

uint8_t combining_class(char32_t cp) {
  if (cp < 0x300) return 0;
  const CombiningClassRange* r =
      find_range(std::begin(kCombiningClassRanges), std::end(kCombiningClassRanges), cp);
  return r ? r->value : 0;
}

const char* version() { return kUnicodeVersion; }

std::u32string nfc(const std::u32string& text) {
  // Below U+0300 nothing decomposes into something that does not recompose to itself.
  if (std::all_of(text.begin(), text.end(), [](char32_t c) { return c < 0x300; })) return text;

  std::u32string d;
  d.reserve(text.size() + 8);
  for (char32_t cp : text) decompose(cp, d);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < d.size();) {
    if (combining_class(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && combining_class(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + static_cast<long>(i), d.begin() + static_cast<long>(j),
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  // Canonical composition: a character joins the last starter unless something between them
  // blocks it (a starter, or a mark of the same or higher class).
  std::u32string out;
  out.reserve(d.size());
  size_t starter = std::u32string::npos;
  int last_class = 0;
  for (char32_t cp : d) {
    const int cc = combining_class(cp);
    if (starter != std::u32string::npos) {
      const bool adjacent = out.size() == starter + 1;
      if (adjacent || (last_class != 0 && last_class < cc)) {
        if (char32_t c = compose(out[starter], cp)) {
          out[starter] = c;
          continue;
        }
      }
    }
    if (cc == 0) starter = out.size();
    out.push_back(cp);
    last_class = cc;
  }
  return out;
}

std::u32string decode_utf8(std::string_view bytes, const std::string& what) {
  std::u32string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    const auto b0 = static_cast<unsigned char>(bytes[i]);
    unsigned char lo, hi;
    const int n = sequence_length(b0, lo, hi);
    if (n == 0) bad_utf8(what, i, "a byte that cannot start a character");
    if (i + static_cast<size_t>(n) > bytes.size()) bad_utf8(what, i, "a truncated sequence");
    char32_t cp = n == 1 ? b0 : n == 2 ? (b0 & 0x1F) : n == 3 ? (b0 & 0x0F) : (b0 & 0x07);
    for (int k = 1; k < n; ++k) {
      const auto b = static_cast<unsigned char>(bytes[i + static_cast<size_t>(k)]);
      if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF))
        bad_utf8(what, i, "an invalid continuation byte (or overlong form or surrogate)");
      cp = (cp << 6) | (b & 0x3F);
    }
    out.push_back(cp);
    i += static_cast<size_t>(n);
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(const std::u32string& text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : text) append_utf8(out, cp);
  return out;
}

std::string decode_utf8_replacing(std::string_view bytes) {
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    const auto b0 = static_cast<unsigned char>(bytes[i]);
    unsigned char lo, hi;
    const int n = sequence_length(b0, lo, hi);
    if (n == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    // Count the valid bytes of the sequence; a shortfall replaces exactly that maximal subpart.
    int valid = 1;
    while (valid < n && i + static_cast<size_t>(valid) < bytes.size()) {
      const auto b = static_cast<unsigned char>(bytes[i + static_cast<size_t>(valid)]);
      if (b < (valid == 1 ? lo : 0x80) || b > (valid == 1 ? hi : 0xBF)) break;
      ++valid;
    }
    if (valid == n)
      out.append(bytes.data() + i, static_cast<size_t>(n));
    else
      out += kReplacement;
    i += static_cast<size_t>(valid);
  }
  return out;
}

}  // namespace unibiomed::inference::unicode
