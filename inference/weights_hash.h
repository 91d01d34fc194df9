// A stable identity for a checkpoint's weights, for `unibiomed model info` and for the
// algorithm identification of the results (the SR's algorithm version): the SHA-256 of the
// bytes of the safetensors file(s). For a single model.safetensors it equals
// `sha256sum model.safetensors`; for a sharded checkpoint it is the SHA-256 of the shards
// concatenated in file-name order (`cat $(ls model-*.safetensors) | sha256sum`).
// Hashing 2.3 GB takes seconds, so the result is cached in the model folder
// (unibiomed-weights-hash.json, keyed by each file's name, size and modification time) and
// recomputed only when a file changes. Torch-free.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace unibiomed::inference {

// FIPS 180-4 SHA-256, incremental.
class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  std::array<uint8_t, 32> finish();  // the object must not be updated afterwards
  static std::string hex(const std::array<uint8_t, 32>& digest);
  static std::string of(const std::string& bytes);  // hex digest of a string

 private:
  void block(const uint8_t* p);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t length_ = 0;
};

struct WeightsHash {
  std::string sha256;  // 64 hex digits
  std::vector<std::filesystem::path> files;  // what was hashed, in order
  bool from_cache = false;
  // How it was computed, for reports: "sha256 of model.safetensors" or
  // "sha256 of 2 shards concatenated in name order".
  std::string method;
};

// The safetensors files of a checkpoint as Checkpoint::open finds them: the file itself, the
// shards named by model.safetensors.index.json (sorted, unique), or model.safetensors.
// Throws InferenceError when there are none.
std::vector<std::filesystem::path> checkpoint_files(const std::filesystem::path& path);

// The hash of the checkpoint at `path` (folder or .safetensors file). With `use_cache`, it comes
// from the cache file when that is still valid, and a computed hash is stored there for next
// time (a read-only folder is not an error); without, the folder is only read.
// Throws InferenceError naming the file that cannot be read.
WeightsHash weights_hash(const std::filesystem::path& path, bool use_cache = true);

}  // namespace unibiomed::inference
