// SPDX-License-Identifier: GPL-3.0-or-later
#include "seg-writer/dicom_uid.h"

#include <algorithm>
#include <random>

namespace unibiomed::seg {
namespace {

using u128 = unsigned __int128;

u128 fnv1a_128(const std::string& text) {
  // FNV-1a 128-bit parameters (offset basis and prime 2^88 + 2^8 + 0x3b).
  u128 hash = (static_cast<u128>(0x6c62272e07bb0142ULL) << 64) | 0x62b821756295c58dULL;
  const u128 prime = (static_cast<u128>(1) << 88) + (1u << 8) + 0x3b;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= prime;
  }
  return hash;
}

std::string to_decimal(u128 value) {
  if (value == 0) return "0";
  std::string digits;
  while (value > 0) {
    digits.push_back(static_cast<char>('0' + static_cast<int>(value % 10)));
    value /= 10;
  }
  std::reverse(digits.begin(), digits.end());
  return digits;
}

}  // namespace

std::string make_uid(const std::string& seed) {
  u128 value;
  if (!seed.empty()) {
    value = fnv1a_128("unibiomed-uid:" + seed);
  } else {
    std::random_device device;
    value = 0;
    for (int i = 0; i < 4; ++i) value = (value << 32) | device();
    // Mark it as a random (version 4, variant 1) UUID, as PS3.5 B.2 expects of 2.25 UIDs.
    value &= ~((static_cast<u128>(0xF) << 76) | (static_cast<u128>(0x3) << 62));
    value |= (static_cast<u128>(0x4) << 76) | (static_cast<u128>(0x2) << 62);
  }
  return "2.25." + to_decimal(value);  // at most 5 + 39 = 44 characters, within the 64 allowed
}

}  // namespace unibiomed::seg
