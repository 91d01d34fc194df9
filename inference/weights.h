// Tensors of a checkpoint, converted on request to the compute dtype and device, with the
// checks llama.cpp made habitual: a missing tensor or a wrong shape is an error naming the
// file, the tensor, the expected and the found shape; tensors never requested are reported.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <torch/types.h>

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "inference/safetensors_file.h"

namespace unibiomed::inference {

struct ComputeOptions {
  torch::Device device = torch::kCPU;
  // bfloat16 on CUDA and on a CPU with bfloat16 dot products, float32 on other CPUs, unless set
  // otherwise.
  torch::ScalarType dtype = torch::kFloat32;

  // Parses "cpu", "cuda", "cuda:1" and "float32"/"bfloat16"/"float16"/"auto"; throws
  // InferenceError for anything else or for CUDA when libtorch has no CUDA device.
  static ComputeOptions from_strings(const std::string& device, const std::string& dtype = "auto");
  // What "auto" computes in on `device`: bfloat16 on a GPU and on a CPU with bfloat16 dot
  // products (there it computed a grounded answer 2.2x as fast as float32), float32 on other
  // CPUs, where libtorch's bfloat16 matrix product is many times slower than its float32 one.
  static torch::ScalarType auto_dtype(const torch::Device& device);
};

torch::ScalarType to_torch(DType dtype);

class Weights {
 public:
  Weights(std::shared_ptr<const Checkpoint> checkpoint, ComputeOptions options);
  // Weights made in memory (a random real-size model for a benchmark, without writing it to
  // disk). Each tensor is handed over (moved out) on its first get(), so the model does not
  // hold it twice; a second get() of the same name is an error.
  Weights(std::map<std::string, torch::Tensor> tensors, ComputeOptions options);

  const ComputeOptions& options() const { return options_; }
  const Checkpoint& checkpoint() const { return *checkpoint_; }  // empty for in-memory weights
  std::string describe() const;  // the checkpoint file(s), or "in-memory weights"

  bool has(const std::string& name) const;
  // The tensor in the compute dtype on the compute device; the shape must equal `shape`.
  torch::Tensor get(const std::string& name, const std::vector<int64_t>& shape);
  // Reads the tensor into `destination` (e.g. a slice of a fused weight), whose sizes are the
  // expected shape, converting to its dtype and device; no intermediate copy when the stored
  // dtype already matches on the CPU.
  void get_into(const std::string& name, torch::Tensor destination);
  // Same, keeping the stored dtype (integer buffers, or float parts meant to stay float32).
  torch::Tensor get_raw(const std::string& name, const std::vector<int64_t>& shape);
  // The shape as stored; throws when missing.
  std::vector<int64_t> shape_of(const std::string& name) const;

  // Tensors in the checkpoint that nothing asked for (sorted). Prefixes can be excluded for
  // parts this implementation does not run (e.g. SAM2's memory encoder used only for video).
  std::vector<std::string> unused(const std::vector<std::string>& ignored_prefixes = {}) const;

 private:
  const TensorView& view(const std::string& name, const std::vector<int64_t>& shape);
  torch::Tensor load(const TensorView& v, torch::ScalarType target);

  torch::Tensor take(const std::string& name, const std::vector<int64_t>& shape, bool convert);

  std::shared_ptr<const Checkpoint> checkpoint_;
  ComputeOptions options_;
  bool in_memory_ = false;
  std::map<std::string, torch::Tensor> memory_;                  // not yet handed over
  std::map<std::string, std::vector<int64_t>> memory_shapes_;   // every in-memory tensor
  mutable std::mutex mutex_;
  std::set<std::string> used_;
};

}  // namespace unibiomed::inference
