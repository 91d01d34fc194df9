// Reading safetensors checkpoints without copying them: the file is memory-mapped and each
// tensor is a view (dtype, shape, bytes) into the mapping. No libtorch here, so the format
// checks are testable in a binary that does not link torch.
//
// Format (huggingface/safetensors): u64 little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data
// block; offsets are relative to the data block.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace unibiomed::inference {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

const char* dtype_name(DType dtype);  // the safetensors spelling, e.g. "BF16"
size_t dtype_size(DType dtype);       // bytes per element

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;  // into the mapping; valid while the file is open
  size_t nbytes = 0;
  std::string file;  // the file it lives in, for error messages

  int64_t numel() const;
  std::string shape_string() const;  // "[896, 4864]"
};

// One memory-mapped .safetensors file. Throws InferenceError naming the file on a missing or
// truncated file, a malformed header, an unsupported dtype, a size that does not match the
// shape, or offsets outside the data block or overlapping each other.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Tells the kernel the pages of this tensor are no longer needed (after they were copied),
  // so that a loaded model does not keep the file resident as well.
  void release(const TensorView& view) const;

 private:
  std::filesystem::path path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint: one model.safetensors, or shards listed by model.safetensors.index.json
// ({"weight_map": {tensor: shard file}}), or a single .safetensors file given directly.
class Checkpoint {
 public:
  // `path` is a checkpoint directory or a .safetensors file.
  static std::shared_ptr<Checkpoint> open(const std::filesystem::path& path);

  const TensorView* find(const std::string& name) const;  // nullptr when absent
  std::vector<std::string> names() const;                 // sorted
  size_t size() const { return index_.size(); }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  void release(const TensorView& view) const;
  std::string describe() const;  // the file(s), for messages

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<const TensorView*, const SafetensorsFile*>> index_;
};

// One tensor to write: raw little-endian bytes of the given dtype and shape.
struct TensorBlob {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;
};

// Writes a .safetensors file (tensors in name order, 8-byte aligned data as the reference
// writer does). Throws InferenceError when a blob's size disagrees with its shape.
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorBlob>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace unibiomed::inference
