// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/safetensors_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "inference/error.h"

namespace unibiomed::inference {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Headers above this size are certainly corrupt (the real UniBiomed header is ~150 kB).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

bool parse_dtype(const std::string& s, DType& out) {
  static const std::pair<const char*, DType> kTable[] = {
      {"F64", DType::F64}, {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16},
      {"I64", DType::I64}, {"I32", DType::I32}, {"I16", DType::I16}, {"I8", DType::I8},
      {"U8", DType::U8},   {"BOOL", DType::BOOL}};
  for (const auto& [name, dt] : kTable)
    if (s == name) {
      out = dt;
      return true;
    }
  return false;
}

[[noreturn]] void fail(const fs::path& file, const std::string& what) {
  throw InferenceError("checkpoint " + file.string() + ": " + what);
}

}  // namespace

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F64: return "F64";
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::BOOL: return "BOOL";
  }
  return "?";
}

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F64:
    case DType::I64: return 8;
    case DType::F32:
    case DType::I32: return 4;
    case DType::F16:
    case DType::BF16:
    case DType::I16: return 2;
    case DType::I8:
    case DType::U8:
    case DType::BOOL: return 1;
  }
  return 0;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::shape_string() const {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << "]";
  return s.str();
}

SafetensorsFile::SafetensorsFile(const fs::path& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail(path, std::string("cannot stat: ") + std::strerror(errno));
  }
  map_size_ = static_cast<size_t>(st.st_size);
  if (map_size_ < 8) {
    ::close(fd);
    fail(path, "truncated: " + std::to_string(map_size_) + " bytes, shorter than the 8-byte header length");
  }
  map_ = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    fail(path, std::string("cannot memory-map: ") + std::strerror(errno));
  }
  try {
    const auto* bytes = static_cast<const unsigned char*>(map_);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
    if (header_len > kMaxHeaderBytes || 8 + header_len > map_size_)
      fail(path, "truncated or corrupt: header length " + std::to_string(header_len) + " but the file has " +
                     std::to_string(map_size_) + " bytes");
    json header;
    try {
      header = json::parse(reinterpret_cast<const char*>(bytes + 8), reinterpret_cast<const char*>(bytes + 8 + header_len));
    } catch (const json::exception& e) {
      fail(path, std::string("corrupt header (not JSON): ") + e.what());
    }
    if (!header.is_object()) fail(path, "corrupt header: not a JSON object");
    const std::byte* data = static_cast<const std::byte*>(map_) + 8 + header_len;
    const size_t data_size = map_size_ - 8 - header_len;
    std::vector<std::pair<size_t, size_t>> ranges;
    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      if (name == "__metadata__") {
        if (it->is_object())
          for (auto m = it->begin(); m != it->end(); ++m)
            if (m->is_string()) metadata_[m.key()] = m->get<std::string>();
        continue;
      }
      const json& t = *it;
      if (!t.is_object() || !t.contains("dtype") || !t.contains("shape") || !t.contains("data_offsets"))
        fail(path, "tensor '" + name + "': header entry lacks dtype, shape or data_offsets");
      TensorView v;
      v.name = name;
      v.file = path.string();
      if (!t["dtype"].is_string() || !parse_dtype(t["dtype"].get<std::string>(), v.dtype))
        fail(path, "tensor '" + name + "': unsupported dtype " + t["dtype"].dump());
      if (!t["shape"].is_array()) fail(path, "tensor '" + name + "': shape is not an array");
      for (const auto& d : t["shape"]) {
        if (!d.is_number_integer() || d.get<int64_t>() < 0)
          fail(path, "tensor '" + name + "': bad dimension " + d.dump() + " in shape");
        v.shape.push_back(d.get<int64_t>());
      }
      const json& off = t["data_offsets"];
      if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
        fail(path, "tensor '" + name + "': data_offsets must be two non-negative integers");
      const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
      if (begin > end || end > data_size)
        fail(path, "tensor '" + name + "': data offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                       ") outside the data block of " + std::to_string(data_size) + " bytes (truncated file?)");
      const uint64_t expected = static_cast<uint64_t>(v.numel()) * dtype_size(v.dtype);
      if (end - begin != expected)
        fail(path, "tensor '" + name + "': " + std::to_string(end - begin) + " bytes for shape " + v.shape_string() +
                       " of " + dtype_name(v.dtype) + " (expected " + std::to_string(expected) + ")");
      v.data = data + begin;
      v.nbytes = end - begin;
      if (v.nbytes) ranges.emplace_back(begin, end);
      tensors_.emplace(name, std::move(v));
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i)
      if (ranges[i].first < ranges[i - 1].second)
        fail(path, "corrupt header: tensor data ranges overlap at byte " + std::to_string(ranges[i].first));
  } catch (...) {
    ::munmap(map_, map_size_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

void SafetensorsFile::release(const TensorView& view) const {
  if (!map_ || view.nbytes == 0) return;
  const long page = ::sysconf(_SC_PAGESIZE);
  auto base = reinterpret_cast<uintptr_t>(map_);
  auto begin = reinterpret_cast<uintptr_t>(view.data);
  auto end = begin + view.nbytes;
  // Only whole pages inside the tensor: neighbours may still be needed.
  uintptr_t first = ((begin - base + page - 1) / page) * page + base;
  uintptr_t last = ((end - base) / page) * page + base;
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

std::shared_ptr<Checkpoint> Checkpoint::open(const fs::path& path) {
  auto ck = std::make_shared<Checkpoint>();
  std::vector<fs::path> shard_paths;
  std::map<std::string, std::string> weight_map;  // from the index, to check against the shards
  fs::path index_path;
  if (fs::is_directory(path)) {
    if (fs::exists(path / "model.safetensors.index.json")) {
      index_path = path / "model.safetensors.index.json";
    } else if (fs::exists(path / "model.safetensors")) {
      shard_paths.push_back(path / "model.safetensors");
    } else {
      throw InferenceError("checkpoint " + path.string() +
                           ": no model.safetensors or model.safetensors.index.json in this folder");
    }
  } else if (path.extension() == ".json") {
    index_path = path;
  } else if (fs::exists(path)) {
    shard_paths.push_back(path);
  } else {
    throw InferenceError("checkpoint " + path.string() + ": no such file or folder");
  }
  if (!index_path.empty()) {
    std::ifstream in(index_path);
    json index;
    try {
      in >> index;
    } catch (const json::exception& e) {
      throw InferenceError("checkpoint index " + index_path.string() + ": not valid JSON: " + e.what());
    }
    if (!index.contains("weight_map") || !index["weight_map"].is_object())
      throw InferenceError("checkpoint index " + index_path.string() + ": no \"weight_map\" object");
    std::vector<std::string> shards;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it->is_string()) throw InferenceError("checkpoint index " + index_path.string() + ": bad entry for " + it.key());
      weight_map[it.key()] = it->get<std::string>();
      if (std::find(shards.begin(), shards.end(), it->get<std::string>()) == shards.end())
        shards.push_back(it->get<std::string>());
    }
    for (const auto& s : shards) shard_paths.push_back(index_path.parent_path() / s);
  }
  for (const auto& p : shard_paths) {
    ck->files_.push_back(std::make_unique<SafetensorsFile>(p));
    const SafetensorsFile* f = ck->files_.back().get();
    for (const auto& [name, view] : f->tensors()) {
      if (ck->index_.count(name))
        throw InferenceError("checkpoint " + p.string() + ": tensor '" + name + "' also appears in " +
                             ck->index_[name].second->path().string());
      ck->index_[name] = {&view, f};
    }
  }
  for (const auto& [name, shard] : weight_map) {
    auto it = ck->index_.find(name);
    if (it == ck->index_.end())
      throw InferenceError("checkpoint index " + index_path.string() + ": tensor '" + name + "' is listed in shard " +
                           shard + " but no shard contains it");
  }
  return ck;
}

const TensorView* Checkpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second.first;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& kv : index_) out.push_back(kv.first);
  return out;
}

void Checkpoint::release(const TensorView& view) const {
  auto it = index_.find(view.name);
  if (it != index_.end()) it->second.second->release(view);
}

std::string Checkpoint::describe() const {
  if (files_.size() == 1) return files_[0]->path().string();
  return files_.empty() ? std::string("(empty)")
                        : files_[0]->path().parent_path().string() + " (" + std::to_string(files_.size()) + " shards)";
}

void write_safetensors(const fs::path& path, const std::vector<TensorBlob>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorBlob*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const TensorBlob* a, const TensorBlob* b) { return a->name < b->name; });
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorBlob* t : order) {
    int64_t n = 1;
    for (int64_t d : t->shape) n *= d;
    if (static_cast<uint64_t>(n) * dtype_size(t->dtype) != t->bytes.size())
      throw InferenceError("write_safetensors " + path.string() + ": tensor '" + t->name + "' has " +
                           std::to_string(t->bytes.size()) + " bytes, not matching its shape");
    header[t->name] = {{"dtype", dtype_name(t->dtype)}, {"shape", t->shape},
                       {"data_offsets", {offset, offset + t->bytes.size()}}};
    offset += t->bytes.size();
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8) text.push_back(' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw InferenceError("write_safetensors: cannot create " + path.string());
  uint64_t len = text.size();
  unsigned char le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<unsigned char>((len >> (8 * i)) & 0xff);
  out.write(reinterpret_cast<const char*>(le), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const TensorBlob* t : order)
    out.write(reinterpret_cast<const char*>(t->bytes.data()), static_cast<std::streamsize>(t->bytes.size()));
  if (!out) throw InferenceError("write_safetensors: write failed for " + path.string());
}

}  // namespace unibiomed::inference
