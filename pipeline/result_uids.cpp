// Deterministic result UIDs: SHA-256 -> UUIDv8 -> 2.25.<decimal>.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "pipeline/result_uids.h"

#include <openssl/evp.h>

#include <array>
#include <cstdint>
#include <memory>
#include <random>
#include <stdexcept>

namespace unibiomed::pipeline {

namespace {

std::array<uint8_t, 32> sha256(const std::string& data) {
  std::array<uint8_t, 32> digest{};
  unsigned int length = 0;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), digest.data(), &length) != 1 || length != digest.size())
    throw std::runtime_error("SHA-256 failed (OpenSSL)");
  return digest;
}

// Big-endian 128-bit number (16 bytes) in decimal, by long division on 32-bit limbs.
std::string to_decimal(const std::array<uint8_t, 16>& bytes) {
  std::array<uint32_t, 4> limbs{};
  for (int i = 0; i < 4; ++i)
    limbs[i] = (uint32_t(bytes[4 * i]) << 24) | (uint32_t(bytes[4 * i + 1]) << 16) | (uint32_t(bytes[4 * i + 2]) << 8) |
               uint32_t(bytes[4 * i + 3]);
  std::string digits;
  auto is_zero = [&] { return limbs[0] == 0 && limbs[1] == 0 && limbs[2] == 0 && limbs[3] == 0; };
  while (!is_zero()) {
    uint64_t remainder = 0;
    for (auto& limb : limbs) {
      const uint64_t value = (remainder << 32) | limb;
      limb = static_cast<uint32_t>(value / 10);
      remainder = value % 10;
    }
    digits.push_back(static_cast<char>('0' + remainder));
  }
  if (digits.empty()) digits = "0";
  return std::string(digits.rbegin(), digits.rend());
}

}  // namespace

std::string derive_uid(const std::string& seed, const std::string& series_instance_uid, const std::string& kind) {
  // Lengths in front of each part keep ("ab","c") and ("a","bc") apart.
  std::string message = "unibiomed result uid v1";
  for (const std::string* part : {&seed, &series_instance_uid, &kind})
    message += "\n" + std::to_string(part->size()) + ":" + *part;
  const auto digest = sha256(message);
  std::array<uint8_t, 16> uuid{};
  std::copy(digest.begin(), digest.begin() + 16, uuid.begin());
  uuid[6] = static_cast<uint8_t>((uuid[6] & 0x0F) | 0x80);  // version 8 (RFC 9562 section 5.8)
  uuid[8] = static_cast<uint8_t>((uuid[8] & 0x3F) | 0x80);  // variant 10
  return "2.25." + to_decimal(uuid);
}

std::string random_uid_seed() {
  std::random_device device;
  static const char* hex = "0123456789abcdef";
  std::string seed;
  for (int i = 0; i < 4; ++i) {
    uint32_t v = device();
    for (int j = 0; j < 8; ++j, v >>= 4) seed.push_back(hex[v & 15]);
  }
  return seed;
}

}  // namespace unibiomed::pipeline
