// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/weights_hash.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "inference/error.h"

namespace unibiomed::inference {

namespace fs = std::filesystem;

namespace {

// FIPS 180-4 section 4.2.2: the first 32 bits of the fractional parts of the cube roots of the
// first 64 primes.
constexpr uint32_t kRound[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

const char* const kCacheName = "unibiomed-weights-hash.json";

int64_t mtime_ns(const fs::path& p) {
  return static_cast<int64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(fs::last_write_time(p).time_since_epoch()).count());
}

nlohmann::json file_keys(const std::vector<fs::path>& files) {
  nlohmann::json keys = nlohmann::json::array();
  for (const auto& f : files)
    keys.push_back({{"name", f.filename().string()}, {"size", fs::file_size(f)}, {"mtime_ns", mtime_ns(f)}});
  return keys;
}

}  // namespace

Sha256::Sha256()
    : h_{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19} {}

void Sha256::block(const uint8_t* p) {
  uint32_t w[64];
  for (int i = 0; i < 16; ++i)
    w[i] = (uint32_t{p[4 * i]} << 24) | (uint32_t{p[4 * i + 1]} << 16) | (uint32_t{p[4 * i + 2]} << 8) | p[4 * i + 3];
  for (int i = 16; i < 64; ++i) {
    const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
  for (int i = 0; i < 64; ++i) {
    const uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kRound[i] + w[i];
    const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h_[0] += a;
  h_[1] += b;
  h_[2] += c;
  h_[3] += d;
  h_[4] += e;
  h_[5] += f;
  h_[6] += g;
  h_[7] += h;
}

void Sha256::update(const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  length_ += size;
  if (buffered_) {
    const size_t take = std::min(size, 64 - buffered_);
    std::memcpy(buffer_.data() + buffered_, p, take);
    buffered_ += take;
    p += take;
    size -= take;
    if (buffered_ < 64) return;
    block(buffer_.data());
    buffered_ = 0;
  }
  for (; size >= 64; p += 64, size -= 64) block(p);
  std::memcpy(buffer_.data(), p, size);
  buffered_ = size;
}

std::array<uint8_t, 32> Sha256::finish() {
  const uint64_t bits = length_ * 8;
  const uint8_t one = 0x80, zero = 0;
  update(&one, 1);
  while (buffered_ != 56) update(&zero, 1);
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(bits >> (56 - 8 * i));
  update(len, 8);
  std::array<uint8_t, 32> out{};
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 4; ++j) out[static_cast<size_t>(4 * i + j)] = static_cast<uint8_t>(h_[static_cast<size_t>(i)] >> (24 - 8 * j));
  return out;
}

std::string Sha256::hex(const std::array<uint8_t, 32>& digest) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (uint8_t b : digest) {
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

std::string Sha256::of(const std::string& bytes) {
  Sha256 h;
  h.update(bytes.data(), bytes.size());
  return hex(h.finish());
}

std::vector<fs::path> checkpoint_files(const fs::path& path) {
  if (fs::is_regular_file(path)) return {path};
  if (!fs::is_directory(path)) throw InferenceError("checkpoint " + path.string() + ": no such file or folder");
  const fs::path index = path / "model.safetensors.index.json";
  if (fs::exists(index)) {
    std::ifstream in(index);
    nlohmann::json j;
    try {
      in >> j;
    } catch (const std::exception& e) {
      throw InferenceError("checkpoint index " + index.string() + ": " + e.what());
    }
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw InferenceError("checkpoint index " + index.string() + ": no \"weight_map\" object");
    std::set<std::string> shards;
    for (const auto& item : j["weight_map"].items()) {
      if (!item.value().is_string())
        throw InferenceError("checkpoint index " + index.string() + ": weight_map entry '" + item.key() +
                             "' is not a file name");
      shards.insert(item.value().get<std::string>());
    }
    if (shards.empty()) throw InferenceError("checkpoint index " + index.string() + ": weight_map is empty");
    std::vector<fs::path> out;
    for (const auto& s : shards) out.push_back(path / s);
    return out;
  }
  if (fs::exists(path / "model.safetensors")) return {path / "model.safetensors"};
  throw InferenceError("checkpoint folder " + path.string() +
                       " has neither model.safetensors nor model.safetensors.index.json");
}

WeightsHash weights_hash(const fs::path& path, bool use_cache) {
  WeightsHash out;
  out.files = checkpoint_files(path);
  for (const auto& f : out.files)
    if (!fs::is_regular_file(f)) throw InferenceError("checkpoint file " + f.string() + " is missing");
  out.method = out.files.size() == 1
                   ? "sha256 of " + out.files[0].filename().string()
                   : "sha256 of " + std::to_string(out.files.size()) + " shards concatenated in name order";
  const fs::path cache = out.files[0].parent_path() / kCacheName;
  const nlohmann::json keys = file_keys(out.files);
  if (use_cache) {
    std::ifstream in(cache);
    if (in) {
      try {
        nlohmann::json j;
        in >> j;
        if (j.value("files", nlohmann::json()) == keys && j.value("method", "") == out.method) {
          const std::string h = j.value("sha256", "");
          if (h.size() == 64 && h.find_first_not_of("0123456789abcdef") == std::string::npos) {
            out.sha256 = h;
            out.from_cache = true;
            return out;
          }
        }
      } catch (const std::exception&) {
        // A damaged cache is recomputed.
      }
    }
  }
  Sha256 sha;
  std::vector<char> buf(size_t{4} << 20);
  for (const auto& f : out.files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) throw InferenceError("checkpoint file " + f.string() + " cannot be read");
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      const std::streamsize got = in.gcount();
      if (got > 0) sha.update(buf.data(), static_cast<size_t>(got));
    }
    if (in.bad()) throw InferenceError("checkpoint file " + f.string() + ": read error");
  }
  out.sha256 = Sha256::hex(sha.finish());
  if (use_cache) {
    nlohmann::json j = {{"sha256", out.sha256}, {"method", out.method}, {"files", keys}};
    const fs::path tmp = cache.string() + ".tmp";
    std::error_code ec;
    {
      std::ofstream o(tmp);
      if (o) o << j.dump(1) << "\n";
      if (!o) ec = std::make_error_code(std::errc::io_error);
    }
    if (!ec) fs::rename(tmp, cache, ec);
    if (ec) fs::remove(tmp, ec);  // a read-only model folder just means no cache
  }
  return out;
}

}  // namespace unibiomed::inference
